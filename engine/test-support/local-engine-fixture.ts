import { after, before } from 'node:test'
import { loadLocalEngine, type LocalEngine } from '../local-engine.js'
import { writeTestModel, type TestModel } from './write-test-model.js'

/** The local engine on a fresh synthetic model, shared by the tests of one suite. */
export interface LocalEngineFixture {
  readonly engine: LocalEngine
  readonly model: TestModel
}

/**
 * Registers hooks in the calling suite that write a synthetic model and load the local engine on
 * it before the suite's tests, and free both after them. Read the fields inside tests and hooks:
 * they exist only once the suite's `before` hooks have run.
 */
export function useLocalEngine (): LocalEngineFixture {
  let model: TestModel | undefined
  let engine: LocalEngine | undefined
  before(async () => {
    model = await writeTestModel()
    engine = await loadLocalEngine({ modelPath: model.path })
  })
  after(async () => {
    await engine?.dispose()
    await model?.remove()
  })
  return {
    get engine () { return ready(engine) },
    get model () { return ready(model) }
  }
}

function ready<T> (value: T | undefined): T {
  if (value === undefined) throw new Error('the local engine fixture is read before its before() hook ran')
  return value
}

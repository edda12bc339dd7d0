import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ChatTemplate, ChatTemplateError, NoChatTemplateError, readChatTemplate } from './chat-template.js'
import { writeGgufFile } from './gguf/index.js'
import { DEFAULT_SYNTHETIC_MODEL_OPTIONS, SPECIAL_TOKENS, syntheticModelContent } from './synthetic-model/index.js'
import { writeTestModel, type TestModel } from './test-support/write-test-model.js'

describe('chat template', () => {
  let model: TestModel

  before(async () => { model = await writeTestModel() })
  after(async () => { await model?.remove() })

  it('renders a conversation with the model\'s template, ending where the assistant replies', async () => {
    const template = await readChatTemplate(model.path)
    const prompt = template.render([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi!' }])
    assert.equal(prompt, '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n')
  })

  it('gives the template the model\'s BOS and EOS texts', () => {
    const template = new ChatTemplate('{{ bos_token }}{{ messages[0].content }}{{ eos_token }}', { bos: SPECIAL_TOKENS.bos, eos: SPECIAL_TOKENS.eos })
    assert.equal(template.render([{ role: 'user', content: 'x' }]), `${SPECIAL_TOKENS.bos}x${SPECIAL_TOKENS.eos}`)
  })

  it('refuses a model without a template, a template that does not compile, and a conversation the template rejects', async () => {
    const content = syntheticModelContent(DEFAULT_SYNTHETIC_MODEL_OPTIONS)
    const bare = join(model.dir, 'no-template.gguf')
    await writeGgufFile(bare, { metadata: new Map([...content.metadata].filter(([key]) => key !== 'tokenizer.chat_template')), tensors: [] })
    await assert.rejects(readChatTemplate(bare), (err: Error) => err instanceof NoChatTemplateError && err.message.includes(bare))

    assert.throws(() => new ChatTemplate('{% for %}', { bos: '', eos: '' }), ChatTemplateError)
    const strict = new ChatTemplate("{% if messages[0]['role'] != 'user' %}{{ raise_exception('the first message must be from the user') }}{% endif %}", { bos: '', eos: '' })
    assert.throws(() => strict.render([{ role: 'assistant', content: 'x' }]), (err: Error) => err instanceof ChatTemplateError && err.message.includes('first message must be from the user'))
  })
})

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HERMES_TOOLS_TEMPLATE } from '../engine/synthetic-model/tokenizer.js'
import { parseToolCalls, ToolCallStream, toolCallFormat } from './tool-calls.js'

const calls = (text: string, format: Parameters<typeof parseToolCalls>[1]): unknown =>
  parseToolCalls(text, format)?.calls.map(call => [call.function.name, JSON.parse(call.function.arguments)])

describe('tool calls in model output', () => {
  it('tells the format from the chat template', () => {
    assert.equal(toolCallFormat(HERMES_TOOLS_TEMPLATE), 'hermes')
    assert.equal(toolCallFormat('{{ "[TOOL_CALLS]" }}'), 'mistral')
    assert.equal(toolCallFormat('{{ "<|python_tag|>" }}'), 'llama3')
    assert.equal(toolCallFormat('{{ messages }}'), 'generic')
  })

  it('reads the calls of the Hermes/Qwen, Mistral, Llama 3.x and generic formats, and text that holds none as none', () => {
    assert.deepEqual(calls('Let me look.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n<tool_call>{"name": "g", "arguments": {}}</tool_call>', 'hermes'), [['f', { a: 1 }], ['g', {}]])
    assert.equal(parseToolCalls('Let me look.\n<tool_call>{"name": "f", "arguments": {}}</tool_call>', 'hermes')?.content, 'Let me look.')
    assert.deepEqual(calls('[TOOL_CALLS][{"name": "f", "arguments": {"a": "x"}}, {"name": "g", "arguments": {}}]', 'mistral'), [['f', { a: 'x' }], ['g', {}]])
    assert.deepEqual(calls('<|python_tag|>{"name": "f", "parameters": {"a": true}}', 'llama3'), [['f', { a: true }]])
    assert.deepEqual(calls(' {"name": "f", "parameters": {}}', 'llama3'), [['f', {}]])
    assert.deepEqual(calls('{"name": "f", "arguments": {"a": null}}', 'generic'), [['f', { a: null }]])
    for (const [text, format] of [['no call here', 'hermes'], ['<tool_call>{"name": "f", "arguments": {</tool_call>', 'hermes'], ['{"a": 1}', 'generic'], ['Sure: {"name": "f", "arguments": {}}', 'generic']] as const) {
      assert.equal(parseToolCalls(text, format), undefined, text)
    }
    const ids = parseToolCalls('<tool_call>{"name": "f", "arguments": {}}</tool_call><tool_call>{"name": "f", "arguments": {}}</tool_call>', 'hermes')?.calls.map(call => call.id)
    assert.equal(new Set(ids).size, 2)
  })

  it('streams the content before a call and holds the call until the reply ends', () => {
    const stream = new ToolCallStream('hermes')
    const passed = ['Checking', ' <tool', '_call>\n{"name": "f", ', '"arguments": {"a": 2}}\n</tool_call>'].map(text => stream.push(text))
    assert.deepEqual(passed, ['Checking', ' ', '', ''])
    const ended = stream.end()
    assert.equal(ended.content, '')
    assert.deepEqual(ended.calls.map(call => [call.function.name, call.function.arguments]), [['f', '{"a":2}']])

    const plain = new ToolCallStream('hermes')
    assert.equal(plain.push('a <'), 'a ')
    assert.equal(plain.push('b'), '<b')
    assert.deepEqual(plain.end(), { content: '', calls: [] })
  })
})

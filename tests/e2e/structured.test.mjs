// Structured output and tool calls through the official openai client, on the project's own
// model (models/troupe-py-7m): every schema of tests/runtime/structured/data/schemas.json at
// temperature 0 and 1 gives output that Python's jsonschema (Debian's python3-jsonschema)
// validates; json_object gives an object; unsupported keywords are 400s naming them; tool_choice
// "required" and a named function give well-formed calls, streamed as delta.tool_calls that join
// into the same calls; a tool-result turn renders and continues; n > 1 with seeds.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { start, freePort } from './harness.mjs';

const MODEL = 'troupe-py-7m';
const root = new URL('../..', import.meta.url).pathname;
const schemasFile = join(root, 'tests/runtime/structured/data/schemas.json');
const schemas = JSON.parse(readFileSync(schemasFile, 'utf8'));
const python = process.env.TROUPE_PYTHON ?? '/usr/bin/python3';

// Validates outputs with python3-jsonschema; returns its report.
function validate(outputs, schemaFile = schemasFile) {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-structured-'));
  const file = join(dir, 'outputs.jsonl');
  writeFileSync(file, outputs.map((o) => JSON.stringify(o)).join('\n') + '\n');
  return execFileSync(python, [join(root, 'scripts/validate_structured.py'), schemaFile, file], { encoding: 'utf8' });
}

const weather = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'The weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 20 }, unit: { enum: ['c', 'f'] } },
                  required: ['city', 'unit'], additionalProperties: false },
  },
};
const clock = { type: 'function', function: { name: 'now', description: 'The time', parameters: { type: 'object', properties: {} } } };

describe('structured output and tools with the openai client', () => {
  let server, client;
  before(async () => {
    const port = await freePort();
    server = await start(['serve', '--model', join(root, 'models', MODEL), '--host', '127.0.0.1', '--port', String(port),
                          '--kv-cache-memory', '256MiB', '--threads', '1'],
                         // Streamed = one body is asserted token for token while the other schemas' requests
                         // share the batch: that holds on the f32 reference path only (the fast path's sums
                         // depend on the rows beside a row; see troupe_test EXACT in cmake/TroupeHelpers.cmake).
                         { env: { TROUPE_PRECISION: 'f32' } });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
  });
  after(async () => { await server?.stop(); });

  it('every schema feature validates, at temperature 0 and 1, streamed as not', async () => {
    const outputs = [];
    await Promise.all(schemas.map(async (s) => {
      for (const [temperature, seed] of [[0, 1], [1, 7], [1, 8]]) {
        const r = await client.chat.completions.create({
          model: MODEL, messages: [{ role: 'user', content: `# ${s.name} as JSON\ndata = ` }], max_tokens: 400,
          temperature, seed, response_format: { type: 'json_schema', json_schema: { name: s.name, schema: s.schema, strict: true } },
        });
        outputs.push({ schema: s.name, id: `${s.name}/${temperature}/${seed}`, finish: r.choices[0].finish_reason,
                       text: r.choices[0].message.content });
      }
      // Streaming gives the same text as one body under greedy sampling.
      const req = { model: MODEL, messages: [{ role: 'user', content: `# ${s.name} as JSON\ndata = ` }], max_tokens: 400,
                    temperature: 0, response_format: { type: 'json_schema', json_schema: { name: s.name, schema: s.schema } } };
      const full = await client.chat.completions.create(req);
      let text = '';
      for await (const chunk of await client.chat.completions.create({ ...req, stream: true }))
        for (const c of chunk.choices) text += c.delta.content ?? '';
      assert.equal(text, full.choices[0].message.content, s.name);
    }));
    const ended = outputs.filter((o) => o.finish === 'stop').length;
    assert.ok(ended * 10 >= outputs.length * 8, `only ${ended} of ${outputs.length} outputs ended before max_tokens`);
    const report = validate(outputs);
    assert.match(report, new RegExp(`^${ended} passed, 0 failed$`, 'm'), report);
  });

  it('completions take response_format, and n > 1 with a seed gives n valid choices', async () => {
    const s = schemas.find((x) => x.name === 'enum_const');
    const r = await client.completions.create({ model: MODEL, prompt: 'config = ', max_tokens: 200, temperature: 1, seed: 3, n: 3,
                                                response_format: { type: 'json_schema', json_schema: { name: 'x', schema: s.schema } } });
    assert.equal(r.choices.length, 3);
    const report = validate(r.choices.map((c, i) => ({ schema: s.name, id: `n${i}`, finish: c.finish_reason, text: c.text })));
    assert.match(report, /^3 passed, 0 failed$/m, report);
  });

  it('json_object gives a JSON object', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'settings = ' }],
                                                     max_tokens: 300, temperature: 0, response_format: { type: 'json_object' } });
    assert.equal(r.choices[0].finish_reason, 'stop');
    const v = JSON.parse(r.choices[0].message.content);
    assert.equal(typeof v, 'object');
    assert.ok(v !== null && !Array.isArray(v));
  });

  it('refuses what it cannot honour with a 400 naming it', async () => {
    for (const [schema, word] of [[{ type: 'string', pattern: '^a' }, "'pattern'"],
                                  [{ type: 'object', properties: { d: { type: 'string', format: 'date' } } }, "'format'"],
                                  [{ oneOf: [{ type: 'number' }, { type: 'integer' }] }, "'oneOf'"]]) {
      await assert.rejects(
        client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }],
                                         response_format: { type: 'json_schema', json_schema: { name: 'bad', schema } } }),
        (e) => e.status === 400 && e.param === 'response_format.json_schema.schema' && e.message.includes(word));
    }
    await assert.rejects(
      client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], tools: [weather],
                                       tool_choice: 'required', response_format: { type: 'json_object' } }),
      (e) => e.status === 400 && e.param === 'tool_choice');
  });

  it('tool_choice required gives well-formed calls, streamed into the same calls', async () => {
    for (const parallel of [true, false]) {
      const req = { model: MODEL, messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
                    tools: [weather, clock], tool_choice: 'required', parallel_tool_calls: parallel, max_tokens: 300, temperature: 0 };
      const r = await client.chat.completions.create(req);
      const m = r.choices[0].message;
      assert.equal(r.choices[0].finish_reason, 'tool_calls');
      assert.equal(m.content, null);
      assert.ok(m.tool_calls.length >= 1);
      if (!parallel) assert.equal(m.tool_calls.length, 1);
      for (const call of m.tool_calls) {
        assert.match(call.id, /^call_[0-9a-f]{24}$/);
        assert.equal(call.type, 'function');
        assert.ok(['get_weather', 'now'].includes(call.function.name));
        const args = JSON.parse(call.function.arguments);
        if (call.function.name === 'get_weather') {
          assert.equal(typeof args.city, 'string');
          assert.ok(['c', 'f'].includes(args.unit));
        }
      }
      // The stream's delta.tool_calls join into the same calls.
      const calls = [];
      let finish = null;
      for await (const chunk of await client.chat.completions.create({ ...req, stream: true })) {
        for (const c of chunk.choices) {
          for (const t of c.delta.tool_calls ?? []) {
            if (t.id) calls[t.index] = { id: t.id, name: t.function.name, arguments: '' };
            calls[t.index].arguments += t.function.arguments ?? '';
          }
          if (c.finish_reason) finish = c.finish_reason;
        }
      }
      assert.equal(finish, 'tool_calls');
      assert.deepEqual(calls.map((c) => [c.name, c.arguments]), m.tool_calls.map((c) => [c.function.name, c.function.arguments]));
    }
  });

  it('a named function is called with arguments that fit its parameters, and its result turn continues', async () => {
    const r = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools: [weather, clock],
      tool_choice: { type: 'function', function: { name: 'get_weather' } }, max_tokens: 200, temperature: 1, seed: 5 });
    const m = r.choices[0].message;
    assert.equal(m.tool_calls.length, 1);
    assert.equal(m.tool_calls[0].function.name, 'get_weather');
    const schemaFile = join(mkdtempSync(join(tmpdir(), 'troupe-tool-')), 'schemas.json');
    writeFileSync(schemaFile, JSON.stringify([{ name: 'get_weather', schema: weather.function.parameters }]));
    const report = validate([{ schema: 'get_weather', id: 'named', finish: 'stop', text: m.tool_calls[0].function.arguments }],
                            schemaFile);
    assert.match(report, /^1 passed, 0 failed$/m, report);
    // The tool's answer goes back and the conversation continues.
    const next = await client.chat.completions.create({
      model: MODEL, tools: [weather, clock], max_tokens: 8, temperature: 0,
      messages: [{ role: 'user', content: 'Weather in Oslo?' }, m,
                 { role: 'tool', tool_call_id: m.tool_calls[0].id, content: '{"temp": 3}' }] });
    assert.equal(next.choices[0].message.role, 'assistant');
    assert.ok(next.usage.completion_tokens > 0);
  });
});

// Embeddings and prompt logprobs through the official openai client, on the project's own model
// (models/troupe-py-7m), on the f32 reference path's micro-kernels (so that a vector cannot
// depend on the requests beside it in a batch): one vector per input, of the width /v1/models states,
// normalised (cosine(x, x) = 1); a batch equals single calls; base64 (the client's default)
// decodes to the same floats; token-array input equals the text it tokenizes to; errors are
// 400s with OpenAI's error body naming the field. Completions with echo and logprobs give every
// prompt token's logprob, the first null, streamed as not, and with max_tokens 0 the prompt's alone.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI from 'openai';
import { start, freePort } from './harness.mjs';

const MODEL = 'troupe-py-7m';
const root = new URL('../..', import.meta.url).pathname;
const texts = ['The quick brown fox', 'jumps over the lazy dog.', 'def f(x):\n    return x + 1', 'a'];

const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);

// The model's token ids by their text (GPT-2 byte-level BPE: bytes map to printable characters).
function tokenIds() {
  const tok = JSON.parse(readFileSync(join(root, 'models', MODEL, 'tokenizer.json'), 'utf8'));
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  for (let b = 0, n = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const enc = new Map(bs.map((b, i) => [b, String.fromCodePoint(cs[i])]));
  const added = new Map(tok.added_tokens.map((t) => [t.content, t.id]));
  return (text) => added.get(text) ?? tok.model.vocab[[...Buffer.from(text, 'utf8')].map((b) => enc.get(b)).join('')];
}

describe('embeddings and prompt logprobs with the openai client', () => {
  let server, client, card;
  before(async () => {
    const port = await freePort();
    server = await start(['serve', '--model', join(root, 'models', MODEL), '--host', '127.0.0.1', '--port', String(port),
                          '--kv-cache-memory', '256MiB', '--threads', '1'],
                         // f32 with its micro-kernels at every row count (from 48 rows the f32 path would
                         // use OpenBLAS, whose sums are ordered differently): a row's sums then cannot
                         // depend on the rows beside it, so a batch must equal single calls bit for bit.
                         { env: { TROUPE_PRECISION: 'f32', TROUPE_BLAS_ROWS: '1000000000' } });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
    card = await client.models.retrieve(MODEL);
  });
  after(async () => { await server?.stop(); });

  const floats = (input) => client.embeddings.create({ model: MODEL, input, encoding_format: 'float' });

  it('/v1/models states the pooling and the width', () => {
    assert.equal(card.embedding.pooling, 'mean');
    assert.equal(card.embedding.normalized, true);
    assert.ok(card.embedding.dimensions > 0);
  });

  it('answers one normalised vector per input, of the stated width, with usage', async () => {
    const r = await floats(texts);
    assert.equal(r.object, 'list');
    assert.equal(r.model, MODEL);
    assert.equal(r.data.length, texts.length);
    r.data.forEach((d, i) => {
      assert.equal(d.object, 'embedding');
      assert.equal(d.index, i);
      assert.equal(d.embedding.length, card.embedding.dimensions);
      assert.ok(Math.abs(dot(d.embedding, d.embedding) - 1) < 1e-5, `cosine(x, x) of input ${i}`);
    });
    assert.ok(dot(r.data[0].embedding, r.data[1].embedding) < 0.9999, 'different texts, different vectors');
    assert.ok(r.usage.prompt_tokens >= texts.length);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens);
    const same = await floats(texts[0]);
    assert.equal(same.data.length, 1);
    assert.equal(same.usage.prompt_tokens, (await floats([texts[0]])).usage.prompt_tokens);
  });

  it('a batch equals single calls, sent one by one or all at once', async () => {
    const batch = await floats(texts);
    for (let i = 0; i < texts.length; i++) assert.deepEqual((await floats(texts[i])).data[0].embedding, batch.data[i].embedding);
    const together = await Promise.all(texts.map((t) => floats(t)));
    together.forEach((r, i) => assert.deepEqual(r.data[0].embedding, batch.data[i].embedding));
  });

  it('base64 decodes to the same floats (the client asks for it by default)', async () => {
    const batch = await floats(texts);
    const asFloat32 = (v) => v.map(Math.fround);
    const dflt = await client.embeddings.create({ model: MODEL, input: texts });
    dflt.data.forEach((d, i) => assert.deepEqual(asFloat32(Array.from(d.embedding)), asFloat32(batch.data[i].embedding)));
    const raw = await (await fetch(`${server.url}/v1/embeddings`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, input: texts, encoding_format: 'base64' }),
    })).json();
    raw.data.forEach((d, i) => {
      assert.equal(typeof d.embedding, 'string');
      const bytes = Buffer.from(d.embedding, 'base64');
      assert.equal(bytes.length, 4 * card.embedding.dimensions);
      const f = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      assert.deepEqual(Array.from(f), asFloat32(batch.data[i].embedding));
    });
  });

  it('token-array input equals the text it tokenizes to; echo with logprobs names the tokens', async () => {
    const idOf = tokenIds();
    const arrays = [];
    for (const text of texts) {
      const c = await client.completions.create({ model: MODEL, prompt: text, max_tokens: 1, temperature: 0, echo: true, logprobs: 0 });
      const n = c.usage.prompt_tokens;
      const ids = c.choices[0].logprobs.tokens.slice(0, n).map(idOf);
      assert.ok(ids.every(Number.isInteger), `every echoed token of ${JSON.stringify(text)} is in the vocabulary`);
      arrays.push(ids);
    }
    const byText = await floats(texts);
    const byIds = await floats(arrays);
    byIds.data.forEach((d, i) => assert.deepEqual(d.embedding, byText.data[i].embedding, `input ${i}`));
    assert.equal(byIds.usage.prompt_tokens, byText.usage.prompt_tokens);
    assert.deepEqual((await floats(arrays[1])).data[0].embedding, byText.data[1].embedding);
  });

  it('echo with logprobs: every prompt token has its logprob, the first null, streamed as not', async () => {
    const prompt = 'def add(a, b):\n    return';
    const body = { model: MODEL, prompt, max_tokens: 4, temperature: 0, echo: true, logprobs: 3 };
    const c = await client.completions.create(body);
    const lp = c.choices[0].logprobs;
    const n = c.usage.prompt_tokens;
    assert.ok(c.choices[0].text.startsWith(prompt));
    assert.equal(lp.tokens.length, n + c.usage.completion_tokens);
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    for (let i = 1; i < lp.tokens.length; i++) {
      assert.ok(lp.token_logprobs[i] <= 0, `token ${i}`);
      const top = lp.top_logprobs[i];
      assert.ok(Object.keys(top).length >= 3, `top_logprobs of token ${i}`);
      assert.ok(Math.max(...Object.values(top)) >= lp.token_logprobs[i] - 1e-6);
    }
    assert.equal(lp.text_offset[0], 0);
    // The completion's part equals what the same request without echo gives.
    const plain = await client.completions.create({ ...body, echo: false });
    assert.deepEqual(lp.tokens.slice(n), plain.choices[0].logprobs.tokens);
    assert.deepEqual(lp.token_logprobs.slice(n), plain.choices[0].logprobs.token_logprobs);
    // Streamed: the same tokens and logprobs, the prompt's in the first chunk.
    const chunks = [];
    for await (const ch of await client.completions.create({ ...body, stream: true })) chunks.push(ch);
    const streamed = chunks.flatMap((ch) => ch.choices.map((x) => x.logprobs?.tokens ?? [])).flat();
    const streamedLp = chunks.flatMap((ch) => ch.choices.map((x) => x.logprobs?.token_logprobs ?? [])).flat();
    assert.deepEqual(streamed, lp.tokens);
    assert.deepEqual(streamedLp, lp.token_logprobs);
    assert.equal(chunks.map((ch) => ch.choices.map((x) => x.text).join('')).join(''), c.choices[0].text);
    // max_tokens 0 scores the prompt alone (as lm-evaluation-harness asks for loglikelihoods).
    const scored = await client.completions.create({ ...body, max_tokens: 0 });
    assert.equal(scored.choices[0].text, prompt);
    assert.equal(scored.usage.completion_tokens, 0);
    assert.equal(scored.choices[0].finish_reason, 'length');
    assert.deepEqual(scored.choices[0].logprobs.tokens, lp.tokens.slice(0, n));
    assert.deepEqual(scored.choices[0].logprobs.token_logprobs, lp.token_logprobs.slice(0, n));
  });

  it('refuses what it cannot do with a 400 and an OpenAI error body naming the field', async () => {
    const refused = async (body, param, status = 400) => {
      await assert.rejects(client.embeddings.create({ model: MODEL, encoding_format: 'float', ...body }), (e) => {
        assert.equal(e.status, status, JSON.stringify(e.error));
        assert.equal(e.param, param, JSON.stringify(e.error));
        assert.equal(typeof e.error.message, 'string');
        assert.ok(e.error.type);
        return true;
      });
    };
    await refused({ input: 'x', dimensions: 8 }, 'dimensions');
    await refused({ input: [[1, 2], [999999]] }, 'input[1][0]');
    await refused({ input: ['ok', Array(2000).fill(17)] }, 'input[1]');
    await refused({ input: [] }, 'input');
    await refused({ input: 'x', encoding_format: 'int8' }, 'encoding_format');
    await refused({ model: 'no-such-model', input: 'x' }, 'model', 404);
    // The full width is allowed.
    const r = await client.embeddings.create({ model: MODEL, input: 'x', encoding_format: 'float',
                                               dimensions: card.embedding.dimensions });
    assert.equal(r.data[0].embedding.length, card.embedding.dimensions);
  });
});

// The official openai client, unmodified, against `troupe serve`: chat and completions,
// streaming and not, logprobs, n, stop strings, errors with OpenAI's bodies, auth, a client
// that disconnects, keep-alive reuse with retries off, concurrency, overload, /metrics.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import OpenAI from 'openai';
import { serve, bin, models, eventually, workersIdle, actors } from './harness.mjs';

const MODEL = 'qwen3-hf-bf16';

describe('troupe serve with the openai client', () => {
  let server, client;
  before(async () => {
    server = await serve(MODEL);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => { await server?.stop(); });

  it('lists the model', async () => {
    const list = await client.models.list();
    const ids = [];
    for await (const m of list) ids.push(m.id);
    assert.deepEqual(ids, [MODEL]);
  });

  it('answers a chat completion, and streams the same text under greedy sampling', async () => {
    const req = { model: MODEL, messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }],
                  max_tokens: 12, temperature: 0 };
    const full = await client.chat.completions.create(req);
    assert.equal(full.object, 'chat.completion');
    assert.equal(full.choices.length, 1);
    assert.equal(full.choices[0].message.role, 'assistant');
    assert.equal(full.choices[0].finish_reason, 'length');
    assert.equal(full.usage.completion_tokens, 12);
    assert.ok(full.usage.prompt_tokens > 5);
    assert.equal(full.usage.total_tokens, full.usage.prompt_tokens + 12);
    const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
    let text = '', finish = null, usage = null, first = true;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        if (first) { assert.equal(c.delta.role, 'assistant'); first = false; }
        text += c.delta.content ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
    assert.equal(text, full.choices[0].message.content);
    assert.equal(finish, 'length');
    assert.equal(usage.completion_tokens, 12);
    assert.equal(usage.prompt_tokens, full.usage.prompt_tokens);
  });

  it('agrees with troupe generate on the same prompt', async () => {
    const out = JSON.parse(execFileSync(bin, ['generate', '--model', `${models}/${MODEL}`, '--prompt', 'def main():',
                                              '--max-tokens', '10', '--temperature', '0', '--json', '--threads', '1']));
    const r = await client.completions.create({ model: MODEL, prompt: 'def main():', max_tokens: 10, temperature: 0 });
    assert.equal(r.choices[0].text, out.text);
    assert.equal(r.usage.prompt_tokens, out.prompt_tokens);
  });

  it('streams text completions with usage', async () => {
    const stream = await client.completions.create({ model: MODEL, prompt: 'import os', max_tokens: 6, temperature: 0,
                                                     stream: true, stream_options: { include_usage: true } });
    let text = '', usage = null;
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) text += c.text;
    }
    const full = await client.completions.create({ model: MODEL, prompt: 'import os', max_tokens: 6, temperature: 0 });
    assert.equal(text, full.choices[0].text);
    assert.equal(usage.completion_tokens, 6);
  });

  it('gives n seeded choices, logprobs and top_logprobs', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Count' }], n: 3,
                                                     max_tokens: 5, seed: 42, logprobs: true, top_logprobs: 2 });
    assert.equal(r.choices.length, 3);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    for (const c of r.choices) {
      assert.equal(c.logprobs.content.length, 5);
      for (const t of c.logprobs.content) {
        assert.ok(t.logprob <= 0);
        assert.equal(t.top_logprobs.length, 2);
        assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
      }
    }
    assert.equal(r.usage.completion_tokens, 15);
    const again = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Count' }], n: 3,
                                                         max_tokens: 5, seed: 42 });
    assert.deepEqual(again.choices.map((c) => c.message.content), r.choices.map((c) => c.message.content));
  });

  it('never emits a stop string', async () => {
    const plain = await client.completions.create({ model: MODEL, prompt: 'x = 1', max_tokens: 12, temperature: 0 });
    const text = plain.choices[0].text;
    const stop = text.slice(3, 6);
    assert.ok(stop.length > 0);
    const r = await client.completions.create({ model: MODEL, prompt: 'x = 1', max_tokens: 12, temperature: 0, stop: [stop] });
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.choices[0].text, text.slice(0, text.indexOf(stop)));
    const s = await client.completions.create({ model: MODEL, prompt: 'x = 1', max_tokens: 12, temperature: 0, stop: [stop], stream: true });
    let streamed = '';
    for await (const chunk of s) for (const c of chunk.choices) streamed += c.text;
    assert.equal(streamed, r.choices[0].text);
  });

  it('answers bad input with OpenAI error bodies naming the parameter', async () => {
    const bad = async (body, status, param) => {
      await assert.rejects(client.chat.completions.create(body), (e) => {
        assert.equal(e.status, status, e.message);
        if (param !== undefined) assert.equal(e.param, param);
        assert.ok(e.error?.message?.length > 0);
        return true;
      });
    };
    await bad({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }, 404);
    await bad({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], temperature: 'hot' }, 400, 'temperature');
    await bad({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], temperature: -1 }, 400, 'temperature');
    await bad({ model: MODEL, messages: [] }, 400, 'messages');
    await bad({ model: MODEL, messages: [{ role: 'wizard', content: 'hi' }] }, 400, 'messages[0].role');
    await bad({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000000 }, 400);
    const raw = async (body, headers = {}) => {
      const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', body, headers: { 'Content-Type': 'application/json', ...headers } });
      return { status: res.status, body: await res.json() };
    };
    const notJson = await raw('{"model": ');
    assert.equal(notJson.status, 400);
    assert.ok(notJson.body.error.message);
    const huge = await raw(JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(20 << 20) }] }));
    assert.equal(huge.status, 413);
    assert.ok(huge.body.error.message);
    const longPrompt = await client.completions.create({ model: MODEL, prompt: 'word '.repeat(3000), max_tokens: 4 }).catch((e) => e);
    assert.equal(longPrompt.status, 400);
  });

  it('reuses keep-alive connections across streams with retries off', async () => {
    for (let i = 0; i < 20; ++i) {
      const s = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `n${i}` }], max_tokens: 2, stream: true });
      for await (const chunk of s) void chunk;
      const c = await client.completions.create({ model: MODEL, prompt: `n${i}`, max_tokens: 1 });
      assert.equal(c.choices.length, 1);
    }
  });

  it('serves 256 concurrent streams', async () => {
    const one = async (i) => {
      const s = await client.completions.create({ model: MODEL, prompt: `stream ${i}`, max_tokens: 8, stream: true });
      let n = 0;
      for await (const chunk of s) n += chunk.choices.length;
      return n;
    };
    const counts = await Promise.all(Array.from({ length: 256 }, (_, i) => one(i)));
    assert.ok(counts.every((n) => n >= 1));
    assert.ok(await eventually(() => workersIdle(server.url)), 'every KV block free afterwards');
  });

  it('aborts the request and frees its KV blocks when the client disconnects', async () => {
    const before = (await actors(server.url)).router.aborted;
    for (const stream of [true, false]) {
      const controller = new AbortController();
      const done = client.completions.create({ model: MODEL, prompt: 'tell a long story', max_tokens: 1500, stream,
                                               ignore_eos: true }, { signal: controller.signal }).then(async (s) => {
        if (!stream) return;
        let chunks = 0;
        for await (const chunk of s) { void chunk; if (++chunks === 3) controller.abort(); }
      });
      if (!stream) setTimeout(() => controller.abort(), 300);
      await done.catch(() => {});
    }
    assert.ok(await eventually(async () => (await actors(server.url)).router.aborted === before + 2, { timeoutMs: 10000 }),
              'both requests were aborted by their disconnect, not run to the end');
    assert.ok(await eventually(() => workersIdle(server.url), { timeoutMs: 10000 }), 'their KV blocks are free');
  });

  it('exports metrics that promtool accepts, with the documented names', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    for (const name of ['tps_per_request', 'input_tokens', 'output_tokens', 'input_tokens_per_request', 'output_tokens_per_request',
                        'concurrent_requests', 'speculation_rate', 'cpu_usage', 'memory_usage', 'gpu_usage', 'gpu_memory_usage',
                        'replica_count_by_status', 'kv_cache_hit_rate', 'kv_cache_hit_rate_skew', 'kv_cache_best_prefix_hit_rate',
                        'kv_cache_hit_rate_efficiency', 'actor_mailbox_size', 'actor_messages_total', 'actor_message_seconds']) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    execFileSync('promtool', ['check', 'metrics'], { input: text });
  });

  it('lists actors with their metrics through troupe actors', () => {
    const out = execFileSync(bin, ['actors', '--url', server.url]).toString();
    for (const role of ['router', 'node_agent', 'worker', 'device', 'kv_publisher']) assert.match(out, new RegExp(role));
  });
});

describe('troupe serve with an API key and a small admission limit', () => {
  let server;
  before(async () => { server = await serve(MODEL, ['--api-key', 'sekrit', '--max-in-flight', '2']); });
  after(async () => { await server?.stop(); });

  it('refuses a wrong key with 401 and accepts the right one', async () => {
    const wrong = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'nope', maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (e) => e.status === 401 && e.code === 'invalid_api_key');
    const right = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sekrit', maxRetries: 0 });
    const r = await right.completions.create({ model: MODEL, prompt: 'hi', max_tokens: 1 });
    assert.equal(r.choices.length, 1);
    const health = await fetch(`${server.url}/health`);
    assert.equal(health.status, 200);  // outside /v1: no key needed
  });

  it('answers overload with 429 rather than queueing without bound', async () => {
    const c = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sekrit', maxRetries: 0 });
    const results = await Promise.allSettled(Array.from({ length: 8 }, () =>
      c.completions.create({ model: MODEL, prompt: 'busy', max_tokens: 200, ignore_eos: true })));
    const statuses = results.map((r) => (r.status === 'fulfilled' ? 200 : r.reason.status));
    assert.ok(statuses.includes(429), statuses.join(','));
    assert.ok(statuses.includes(200), statuses.join(','));
    assert.ok(statuses.every((s) => s === 200 || s === 429), statuses.join(','));
  });
});

describe('troupe serve on SIGTERM', () => {
  it('finishes the requests in flight, refuses new ones with 503, then exits', async () => {
    const server = await serve(MODEL);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 60000 });
    const running = client.completions.create({ model: MODEL, prompt: 'long', max_tokens: 300, ignore_eos: true });
    await eventually(async () => (await actors(server.url)).data.some((a) => a.role === 'worker' && a.engine.running === 1),
                     { everyMs: 10 });
    server.proc.kill('SIGTERM');
    const refused = await eventually(async () => {
      const r = await client.completions.create({ model: MODEL, prompt: 'new', max_tokens: 1 }).catch((e) => e);
      return r.status === 503 ? r : null;
    }, { everyMs: 20 });
    assert.ok(refused, 'a request during the drain gets 503');
    const done = await running;
    assert.equal(done.choices[0].finish_reason, 'length');
    assert.equal(done.usage.completion_tokens, 300);
    const [code] = server.proc.exitCode !== null ? [server.proc.exitCode] : await once(server.proc, 'exit');
    assert.equal(code, 0, 'it exits by itself once drained');
  });
});

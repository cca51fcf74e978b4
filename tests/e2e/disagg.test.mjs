// Disaggregated prefill and decode (llm_config.is_disaggregated) through the official openai
// client, on the f32 reference path: `troupe serve --llm-config` with one replication unit (a
// prefill and a decode worker) answers exactly what aggregated serving answers, streaming and
// not; /v1/actors shows the roles and the unit, /metrics the transfers; no KV block stays in
// use. Then across three processes on loopback (a control node, a prefill node, a decode node):
// the same equality, and a kill -9 of the prefill node under load leaves no request without an
// end and no block in use on the decode node.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { start, freePort, models, eventually, actors, workersIdle } from './harness.mjs';

const MODEL = 'qwen3-hf-bf16';
const env = { TROUPE_PRECISION: 'f32' };
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-disagg-'));
const llmConfig = path.join(dir, 'llm_config.json');
fs.writeFileSync(llmConfig, JSON.stringify({
  is_disaggregated: true,
  b10_disagg_config: { prefill_workers_per_replica: 1, decode_workers_per_replica: 1 },
}));

const shared = 'You are a careful assistant. Answer briefly and precisely. '.repeat(4);
const prompts = [
  `${shared}Question one: what is a cache?`,
  `${shared}Question two: why do prompts repeat?`,
  'A short prompt',
  'Count: one two three four five six seven eight nine ten eleven twelve',
];

const clientOf = (url) => new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });

async function completions(client) {
  const out = [];
  for (const p of prompts) {
    const r = await client.completions.create({ model: MODEL, prompt: p, max_tokens: 12, temperature: 0 });
    out.push(r.choices[0].text);
  }
  // max_tokens 1: ends at the prefill worker, nothing crosses.
  const one = await client.completions.create({ model: MODEL, prompt: prompts[0], max_tokens: 1, temperature: 0 });
  out.push(one.choices[0].text);
  return out;
}

async function streamed(client) {
  const out = [];
  for (const p of prompts.slice(0, 3)) {
    const s = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: p }], max_tokens: 10,
                                                    temperature: 0, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    out.push(text);
  }
  return out;
}

describe('disaggregated serving in one process', () => {
  let agg, dis;
  let want;
  before(async () => {
    dis = await start(['serve', '--model', `${models}/${MODEL}`, '--host', '127.0.0.1', '--port', String(await freePort()),
                       '--kv-cache-memory', '256MiB', '--threads', '1', '--llm-config', llmConfig], { env });
    // The aggregated server on the same precision.
    agg = await start(['serve', '--model', `${models}/${MODEL}`, '--host', '127.0.0.1', '--port', String(await freePort()),
                       '--kv-cache-memory', '256MiB', '--threads', '1'], { env });
    want = { completions: await completions(clientOf(agg.url)), streamed: await streamed(clientOf(agg.url)) };
  });
  after(async () => { for (const p of [agg, dis]) await p?.stop(); });

  it('answers what aggregated serving answers, streaming and not', async () => {
    const c = clientOf(dis.url);
    assert.deepEqual(await completions(c), want.completions);
    assert.deepEqual(await streamed(c), want.streamed);
  });

  it('shows roles, the unit and the transfers; leaks no block', async () => {
    const a = await actors(dis.url);
    const workers = a.data.filter((x) => x.role === 'worker');
    assert.deepEqual(workers.map((w) => w.worker_role).sort(), ['decode', 'prefill']);
    for (const w of workers) assert.equal(w.unit, 0);
    const decode = workers.find((w) => w.worker_role === 'decode');
    assert.ok(decode.kv_transfer.transfers >= 4, JSON.stringify(decode.kv_transfer));
    assert.ok(decode.kv_transfer.blocks > 0);
    assert.ok(decode.kv_transfer.skipped_blocks > 0, 'the shared prefix crossed once');
    assert.deepEqual(a.router.workers.map((w) => w.role).sort(), ['decode', 'prefill']);
    assert.ok(await eventually(() => workersIdle(dis.url)), 'every KV block is free again');
    const metrics = await (await fetch(`${dis.url}/metrics`)).text();
    for (const name of ['kv_transfer_blocks_total', 'kv_transfer_bytes_total', 'kv_transfer_skipped_blocks_total',
                        'kv_transfer_seconds_bucket', 'in_flight_tokens_by_role', 'worker_kv_blocks_used'])
      assert.match(metrics, new RegExp(`^${name}\\{`, 'm'), name);
  });
});

describe('disaggregated serving across three processes', () => {
  let agg, control, prefill, decode, url;
  before(async () => {
    agg = await start(['serve', '--model', `${models}/${MODEL}`, '--host', '127.0.0.1', '--port', String(await freePort()),
                       '--kv-cache-memory', '256MiB', '--threads', '1'], { env });
    const nodePort = await freePort();
    control = await start(['node', '--role', 'control', '--listen', String(nodePort), '--model', `${models}/${MODEL}`,
                           '--host', '127.0.0.1', '--port', String(await freePort()), '--name', 'control',
                           '--llm-config', llmConfig], { env });
    url = control.url;
    const joined = /troupe: node (\S+) joined/;
    const worker = (name, role) => start(['node', '--role', 'worker', '--join', `127.0.0.1:${nodePort}`, '--model',
                                          `${models}/${MODEL}`, '--kv-cache-memory', '128MiB', '--threads', '1', '--name', name,
                                          '--worker-role', role], { ready: joined, env });
    prefill = await worker('node-p', 'prefill');
    decode = await worker('node-d', 'decode');
    assert.ok(await eventually(async () => (await (await fetch(`${url}/health`)).json()).workers === 2));
  });
  after(async () => { for (const p of [agg, prefill, decode, control]) await p?.stop(); });

  it('answers what aggregated serving answers, the KV crossing between the nodes', async () => {
    const want = await completions(clientOf(agg.url));
    assert.deepEqual(await completions(clientOf(url)), want);
    const wantStream = await streamed(clientOf(agg.url));
    assert.deepEqual(await streamed(clientOf(url)), wantStream);
    const a = await actors(url);
    const d = a.data.find((x) => x.role === 'worker' && x.worker_role === 'decode');
    assert.equal(d.node, 'node-d');
    assert.ok(d.kv_transfer.transfers >= 4 && d.kv_transfer.bytes > 0, JSON.stringify(d.kv_transfer));
  });

  it('a kill -9 of the prefill node under load: every request ends, no block leaks on the decode node', async () => {
    const c = clientOf(url);
    const N = 16;
    let ended = 0, started = 0;
    const runs = Array.from({ length: N }, (_, i) => (async () => {
      try {
        const s = await c.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `${shared} load ${i}` }],
                                                   max_tokens: 64, temperature: 0, stream: true, ignore_eos: true });
        for await (const _ of s) started += 1;
        return 'ok';
      } catch (e) {
        return `error: ${e.message}`;
      } finally {
        ended += 1;
      }
    })());
    // Kill the prefill node once streams are flowing and before they have all ended.
    assert.ok(await eventually(() => started > 0, { timeoutMs: 60000, everyMs: 5 }));
    const endedAtKill = ended;
    prefill.proc.kill('SIGKILL');
    assert.ok(endedAtKill < N, 'the kill landed under load');
    let timer;
    const results = await Promise.race([Promise.all(runs), new Promise((r) => { timer = setTimeout(() => r(null), 120000); })]);
    clearTimeout(timer);
    assert.ok(results, 'a request hangs');
    assert.equal(results.length, N);
    // Errors, if any, say what happened.
    for (const r of results) if (r !== 'ok') assert.match(r, /503|lost|failed|transfer/, r);
    // The decode node holds nothing once they have ended.
    assert.ok(await eventually(async () => {
      const a = await actors(url);
      const d = a.data.filter((x) => x.role === 'worker' && x.node === 'node-d');
      return d.length === 1 && d[0].engine.running === 0 && d[0].engine.kv_blocks_used === 0;
    }, { timeoutMs: 30000 }), 'the decode node holds KV blocks');
  });
});

describe('a disaggregated deployment through the management API', () => {
  let server;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-disagg-state-'));
  const api = (url, method, p, body) =>
    fetch(`${url}${p}`, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) })
      .then(async (r) => ({ status: r.status, body: await r.json() }));
  before(async () => {
    server = await start(['serve', '--model', `${models}/${MODEL}`, '--host', '127.0.0.1', '--port', String(await freePort()),
                          '--kv-cache-memory', '256MiB', '--threads', '1', '--state-dir', stateDir], { env });
  });
  after(async () => { await server?.stop(); });

  it('starts a replication unit of a prefill and a decode worker, and serves through it', async () => {
    const created = await api(server.url, 'POST', '/v1/llm_models', {
      name: 'split', model: path.resolve(models, 'llama3-hf-bf16'),
      llm_config: { runtime: { max_seq_len: 256, kv_cache_memory: '64MiB' }, is_disaggregated: true,
                    b10_disagg_config: { prefill_workers_per_replica: 1, decode_workers_per_replica: 1 } } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.ok(created.body.settings.active.includes('is_disaggregated'));
    const a = await actors(server.url);
    const roles = a.router.workers.filter((w) => w.model === 'split').map((w) => w.role).sort();
    assert.deepEqual(roles, ['decode', 'prefill']);
    const r = await clientOf(server.url).completions.create({ model: 'split', prompt: `${shared} Hello`, max_tokens: 6,
                                                              temperature: 0 });
    assert.equal(r.usage.completion_tokens, 6);
    assert.ok(await eventually(async () => {
      const x = await actors(server.url);
      const d = x.data.find((w) => w.role === 'worker' && w.worker_role === 'decode');
      return d && d.kv_transfer.transfers === 1;
    }));
    // Autoscaling a disaggregated deployment: its autoscaler counts replication units (one
    // whole unit at min_replica 1), and PATCH changes its settings.
    const both = await api(server.url, 'POST', '/v1/llm_models', {
      name: 'both', model: path.resolve(models, 'llama3-hf-bf16'),
      llm_config: { runtime: { max_seq_len: 256, kv_cache_memory: '64MiB' }, is_disaggregated: true,
                    b10_disagg_config: { prefill_workers_per_replica: 1, decode_workers_per_replica: 1 },
                    autoscaling_settings: { target_in_flight_tokens: 1000, max_replica: 2 } } });
    assert.equal(both.status, 201, JSON.stringify(both.body));
    const scaler = await eventually(async () => (await actors(server.url)).autoscalers.find((x) => x.model === 'both'));
    assert.ok(scaler, 'its autoscaler reports');
    assert.equal(scaler.group, 'disaggregated');
    assert.equal(scaler.current, 1);
    const bothRoles = (await actors(server.url)).router.workers.filter((w) => w.model === 'both').map((w) => w.role).sort();
    assert.deepEqual(bothRoles, ['decode', 'prefill']);
    const patched = await api(server.url, 'PATCH', '/v1/llm_models/both', { autoscaling_settings: { target_in_flight_tokens: 500, max_replica: 2 } });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
  });
});

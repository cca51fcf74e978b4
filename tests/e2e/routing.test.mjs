// KV-aware routing across real processes joined over CAF on loopback: a control node and two
// worker nodes. Repeated prefixes reach the worker that holds them, with the reference's
// metrics; a control node killed with SIGKILL under load and restarted with its snapshot
// (--state-dir) finds its index again by replaying the workers' events (no dumps), while the
// worker nodes stay up and rejoin it, and routes every known prefix to its cached worker at
// once, before any new traffic.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { start, freePort, models, eventually, actors, sleep } from './harness.mjs';

const MODEL = 'qwen3-hf-bf16';
const WORDS = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon'.split(' ');
// A prefix of some 60 tokens, distinct per i.
const prefix = (i) => Array.from({ length: 40 }, (_, k) => WORDS[(i * 7 + k * (i + 3)) % WORDS.length]).join(' ') + ` topic ${i}.`;

const metric = (text, name, model) => {
  const m = text.match(new RegExp(`^${name}\\{model="${model}"\\} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
};

describe('KV-aware routing over a control node and two worker nodes', () => {
  let control, a, b, client, nodePort, httpPort, stateDir;
  const startControl = () => start(['node', '--role', 'control', '--listen', String(nodePort), '--model', `${models}/${MODEL}`,
                                    '--host', '127.0.0.1', '--port', String(httpPort), '--name', 'control',
                                    '--state-dir', stateDir, '--snapshot-interval', '0.5']);
  before(async () => {
    nodePort = await freePort();
    httpPort = await freePort();
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-routing-'));
    control = await startControl();
    const worker = (name) => start(['node', '--role', 'worker', '--join', `127.0.0.1:${nodePort}`, '--model', `${models}/${MODEL}`,
                                    '--kv-cache-memory', '128MiB', '--threads', '1', '--name', name], { ready: /troupe: node (\S+) joined/ });
    a = await worker('node-a');
    b = await worker('node-b');
    client = new OpenAI({ baseURL: `${control.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
    assert.ok(await eventually(async () => (await (await fetch(`${control.url}/health`)).json()).workers === 2));
  });
  after(async () => { for (const p of [a, b, control]) await p?.stop(); });

  it('sends repeated prefixes to the worker that holds them, with the reference metrics', async () => {
    for (let i = 0; i < 6; ++i) await client.completions.create({ model: MODEL, prompt: `${prefix(i)} first`, max_tokens: 2 });
    for (let i = 0; i < 6; ++i) {
      const r = await client.completions.create({ model: MODEL, prompt: `${prefix(i)} second`, max_tokens: 2 });
      assert.ok(r.usage.prompt_tokens_details.cached_tokens >= 32, `prefix ${i} was served from cache: ${JSON.stringify(r.usage)}`);
    }
    // A request's completion reaches the router's window from its worker, which may be just after
    // the client has the reply: wait until all twelve are counted (half the prompts mostly cached).
    let text = '';
    await eventually(async () => {
      text = await (await fetch(`${control.url}/metrics`)).text();
      return metric(text, 'kv_cache_hit_rate', MODEL) > 0.3;
    });
    const hit = metric(text, 'kv_cache_hit_rate', MODEL), best = metric(text, 'kv_cache_best_prefix_hit_rate', MODEL);
    assert.ok(hit > 0.3, `kv_cache_hit_rate ${hit}`);
    assert.ok(Math.abs(metric(text, 'kv_cache_hit_rate_skew', MODEL)) < 0.05, 'the estimate matched the engines');
    assert.ok(metric(text, 'kv_cache_hit_rate_efficiency', MODEL) > 0.95, `efficiency, best ${best}`);
    const st = await actors(control.url);
    for (const w of st.router.workers) {
      assert.equal(w.in_sync, true);
      assert.equal(w.kv_event_gaps, 0);
      assert.ok(w.kv_cached_blocks >= 0);
    }
    assert.ok(st.router.workers.some((w) => w.kv_cached_blocks > 0));
  });

  it('survives a kill -9 of the control node: restarted with its snapshot it routes to the cached workers at once', async () => {
    // Which worker holds each prefix, as the router's index says (after the snapshot interval).
    await sleep(1500);
    assert.ok(fs.existsSync(path.join(stateDir, 'router', 'kv-index-0.snapshot')), 'a snapshot was written');
    // Load in flight when the control node dies.
    const pending = Array.from({ length: 4 }, (_, i) => client.completions.create({
      model: MODEL, prompt: `under load ${i} ${prefix(10 + i)}`, max_tokens: 200, ignore_eos: true }).catch((e) => e));
    await sleep(300);
    control.proc.kill('SIGKILL');
    await Promise.all(pending);
    control = await startControl();
    client = new OpenAI({ baseURL: `${control.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
    assert.match(control.stderr(), /starts from its KV index snapshot/);
    // The worker nodes stayed up and rejoin by themselves.
    assert.equal(a.proc.exitCode, null);
    assert.equal(b.proc.exitCode, null);
    const synced = await eventually(async () => {
      const st = await actors(control.url);
      return st.router.workers.length === 2 && st.router.workers.every((w) => w.in_sync && w.alive) ? st : null;
    }, { timeoutMs: 30000 });
    assert.ok(synced, 'both workers rejoined and their views are current');
    for (const w of synced.router.workers) {
      assert.equal(w.kv_dumps, 0, `${w.worker}: its view came from the snapshot and a replay, not a dump`);
      assert.equal(w.kv_replays, 1, `${w.worker} replayed the events after the snapshot`);
    }
    assert.match(a.stderr() + b.stderr(), /rejoined the control node/);
    // No traffic since the restart: every known prefix goes where it is cached.
    for (let i = 0; i < 6; ++i) {
      const r = await client.completions.create({ model: MODEL, prompt: `${prefix(i)} third`, max_tokens: 2 });
      assert.ok(r.usage.prompt_tokens_details.cached_tokens >= 32, `prefix ${i} after the restart: ${JSON.stringify(r.usage)}`);
    }
  });
});

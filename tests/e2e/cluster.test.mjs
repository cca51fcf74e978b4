// A control node and two worker nodes, real processes joined over CAF's middleman on
// loopback: requests (embeddings too) spread over both workers, KV events reach the router in order, and when
// a worker node is killed with SIGKILL the router stops using it at once, retries its requests
// that had streamed nothing, ends the others with a clear error, and nothing hangs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { start, freePort, models, eventually, actors } from './harness.mjs';

const MODEL = 'qwen3-hf-bf16';

describe('a control node and two worker nodes', () => {
  let control, a, b, client, url;
  before(async () => {
    const nodePort = await freePort(), httpPort = await freePort();
    control = await start(['node', '--role', 'control', '--listen', String(nodePort), '--model', `${models}/${MODEL}`,
                           '--host', '127.0.0.1', '--port', String(httpPort), '--name', 'control']);
    url = control.url;
    // Worker a runs one sequence at a time, so that requests queue on it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-cluster-'));
    const cfg = path.join(dir, 'config.yaml');
    fs.writeFileSync(cfg, [`model_name: ${MODEL}`, 'trt_llm:', '  inference_stack: v2', '  build:', '    checkpoint_repository:',
                           '      source: LOCAL', `      repo: ${dir}`, '  runtime:', '    max_batch_size: 1', '    max_num_tokens: 64', ''].join('\n'));
    const joined = /troupe: node (\S+) joined/;
    const worker = (name, extra) => start(['node', '--role', 'worker', '--join', `127.0.0.1:${nodePort}`, '--model', `${models}/${MODEL}`,
                                           '--kv-cache-memory', '128MiB', '--threads', '1', '--name', name, ...extra], { ready: joined });
    a = await worker('node-a', ['--config', cfg]);
    b = await worker('node-b', []);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
    assert.ok(await eventually(async () => (await (await fetch(`${url}/health`)).json()).workers === 2));
  });
  after(async () => { for (const p of [a, b, control]) await p?.stop(); });

  it('serves requests on both worker nodes, with KV events in order', async () => {
    await Promise.all(Array.from({ length: 6 }, (_, i) =>
      client.completions.create({ model: MODEL, prompt: `request ${i} `.repeat(8), max_tokens: 4 })));
    const st = await actors(url);
    const workers = st.router.workers;
    assert.deepEqual(workers.map((w) => w.worker).sort(), ['node-a/w0', 'node-b/w0']);
    for (const w of workers) {
      assert.ok(w.kv_events > 0, `${w.worker} published KV events`);
      assert.equal(w.kv_event_gaps, 0, `${w.worker}'s events arrived in order`);
    }
    const nodes = new Set(st.data.map((x) => x.node));
    for (const n of ['control', 'node-a', 'node-b']) assert.ok(nodes.has(n), `/v1/actors covers ${n}`);
  });

  it('embeds on remote workers (the request and its vector cross the middleman)', async () => {
    const inputs = Array.from({ length: 6 }, (_, i) => `embed me ${i} `.repeat(4));
    const r = await client.embeddings.create({ model: MODEL, input: inputs, encoding_format: 'float' });
    assert.equal(r.data.length, inputs.length);
    for (const d of r.data) {
      assert.ok(d.embedding.length > 0);
      assert.ok(Math.abs(d.embedding.reduce((s, x) => s + x * x, 0) - 1) < 1e-4);
    }
  });

  it('survives a worker node killed with SIGKILL', async () => {
    const long = (i, stream) => client.completions.create({ model: MODEL, prompt: `long ${i}`, max_tokens: 300, ignore_eos: true, stream })
      .then(async (r) => {
        if (!stream) return { ok: true, text: r.choices[0].text };
        let text = '';
        for await (const c of r) for (const ch of c.choices) text += ch.text;
        return { ok: true, text };
      })
      .catch((e) => ({ ok: false, status: e.status, message: e.message }));
    const pending = Array.from({ length: 8 }, (_, i) => long(i, i % 2 === 0));
    // Kill node a while it runs one request and holds others that have streamed nothing.
    const queued = await eventually(async () => {
      const w = (await actors(url)).data.find((x) => x.actor === 'node-a/w0');
      return w && w.engine.running === 1 && w.engine.waiting >= 1;
    }, { timeoutMs: 30000, everyMs: 20 });
    assert.ok(queued, 'node a had queued requests');
    a.proc.kill('SIGKILL');
    const results = await Promise.race([
      Promise.all(pending),
      new Promise((_, reject) => setTimeout(() => reject(new Error('requests hung after the kill')), 90000)),
    ]);
    const ok = results.filter((r) => r.ok), failed = results.filter((r) => !r.ok);
    assert.ok(ok.length >= 6, `requests that had streamed nothing were retried: ${JSON.stringify(results.map((r) => r.ok ? 'ok' : r.status))}`);
    for (const f of failed) assert.match(f.message, /lost/, 'the others end with a clear error');
    const st = await actors(url);
    assert.ok(st.router.retried >= 1, 'the router retried');
    assert.equal((await (await fetch(`${url}/health`)).json()).workers, 1);
    const after = await client.completions.create({ model: MODEL, prompt: 'still here?', max_tokens: 3 });
    assert.equal(after.choices.length, 1);
  });
});

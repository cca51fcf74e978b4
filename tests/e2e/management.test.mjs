// The management API over HTTP: a deployment created with POST /v1/llm_models serves at once
// with its engine settings in effect, is listed and shown, survives a server restart, and
// goes away with DELETE; invalid bodies get every field error at once; Eagle with
// eagle3_one_model true is accepted and serves.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { serve, models } from './harness.mjs';

const api = (url, method, p, body) =>
  fetch(`${url}${p}`, { method, headers: { 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) })
    .then(async (r) => ({ status: r.status, body: await r.json() }));

describe('the management API', () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-state-'));
  let server;
  after(async () => { await server?.stop(); });

  it('creates, serves, persists across a restart, and deletes a deployment', async () => {
    server = await serve('qwen3-hf-bf16', ['--state-dir', stateDir]);
    const created = await api(server.url, 'POST', '/v1/llm_models', {
      name: 'second', model: path.resolve(models, 'llama3-hf-bf16'),
      llm_config: { runtime: { max_seq_len: 256, max_batch_size: 4, max_num_tokens: 256, kv_cache_memory: '64MiB' },
                    b10_routing_config: { router_queue_policy: 'wspt', router_overlap_score_weight: 2 },
                    speculative_config: { decoding_type: 'NGram', max_draft_len: 4 } } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual(created.body.settings.active, ['runtime', 'b10_routing_config', 'speculative_config', 'is_disaggregated',
                                                   'b10_disagg_config', 'autoscaling_settings']);
    assert.ok(!created.body.settings.not_yet_active.includes('speculative_config'));
    // Its routing settings are the router's for that model.
    const routed = (await (await fetch(`${server.url}/v1/actors`)).json()).router.models.find((m) => m.model === 'second');
    assert.equal(routed?.router_queue_policy, 'wspt');
    assert.equal(routed?.router_overlap_score_weight, 2);
    assert.equal(routed?.router_temperature, 0.05);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const ids = [];
    for await (const m of await client.models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), ['qwen3-hf-bf16', 'second']);
    const r = await client.completions.create({ model: 'second', prompt: 'Hello', max_tokens: 3 });
    assert.equal(r.model, 'second');
    assert.equal(r.usage.completion_tokens, 3);
    // Its max_seq_len of 256 is in effect.
    const tooLong = await client.completions.create({ model: 'second', prompt: 'Hello', max_tokens: 300 }).catch((e) => e);
    assert.equal(tooLong.status, 400);
    assert.match(tooLong.error.message, /256/);
    const shown = await api(server.url, 'GET', '/v1/llm_models/second');
    assert.equal(shown.status, 200);
    assert.equal(shown.body.llm_config.runtime.max_seq_len, 256);

    // A restart brings it back.
    await server.stop();
    server = await serve('qwen3-hf-bf16', ['--state-dir', stateDir]);
    const again = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const r2 = await again.completions.create({ model: 'second', prompt: 'Hello', max_tokens: 2 });
    assert.equal(r2.usage.completion_tokens, 2);
    const list = await api(server.url, 'GET', '/v1/llm_models');
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.data.map((d) => d.name), ['second']);

    const deleted = await api(server.url, 'DELETE', '/v1/llm_models/second');
    assert.equal(deleted.status, 200);
    const gone = await again.completions.create({ model: 'second', prompt: 'Hello', max_tokens: 2 }).catch((e) => e);
    assert.equal(gone.status, 404);
    assert.equal((await api(server.url, 'GET', '/v1/llm_models/second')).status, 404);
  });

  it('answers an invalid body with every field error at once', async () => {
    const bad = await api(server.url, 'POST', '/v1/llm_models', {
      model: path.resolve(models, 'llama3-hf-bf16'),
      llm_config: { runtime: { max_batch_size: 0 }, b10_disagg_config: { prefill_workers_per_replica: 1 },
                    autoscaling_settings: { concurrency_target: 10 }, speculative_config: { decoding_type: 'Eagle' } } });
    assert.equal(bad.status, 400);
    assert.ok(bad.body.error.message);
    assert.ok(bad.body.errors.length >= 4, JSON.stringify(bad.body.errors));
    const fields = bad.body.errors.map((e) => e.field).join(' ');
    for (const f of ['max_batch_size', 'b10_disagg_config', 'concurrency_target', 'speculative_model_dir'])
      assert.match(fields + JSON.stringify(bad.body.errors), new RegExp(f));
  });

  it('refuses an Eagle head that is not one (eagle3_one_model true or false), naming the field, and stores nothing', async () => {
    for (const [fields, param, message] of [
      [{ speculative_model_dir: path.resolve(models, 'llama3-hf-bf16') }, 'speculative_model_dir', /is not an Eagle-3 head/],
      [{ speculative_model_dir: path.resolve(models, 'llama3-hf-bf16'), eagle3_one_model: true }, 'speculative_model_dir', /is not an Eagle-3 head/]]) {
      const r = await api(server.url, 'POST', '/v1/llm_models', {
        name: 'eagle', model: path.resolve(models, 'llama3-hf-bf16'),
        llm_config: { speculative_config: { decoding_type: 'Eagle', ...fields } } });
      assert.equal(r.status, 400, JSON.stringify(r.body));
      assert.equal(r.body.error.param, `llm_config.speculative_config.${param}`);
      assert.match(r.body.error.message, message);
      assert.equal((await api(server.url, 'GET', '/v1/llm_models/eagle')).status, 404);
    }
  });

  it('accepts Eagle with eagle3_one_model true (the head inside the CPU forward) and serves it', async () => {
    const root = new URL('../..', import.meta.url).pathname;
    const created = await api(server.url, 'POST', '/v1/llm_models', {
      name: 'eagle-one', model: path.join(root, 'models', 'troupe-py-7m'),
      llm_config: { runtime: { kv_cache_memory: '64MiB' },
                    speculative_config: { decoding_type: 'Eagle', speculative_model_dir: path.join(root, 'models', 'troupe-py-eagle3'),
                                          eagle3_one_model: true, max_draft_len: 3 } } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const shown = await api(server.url, 'GET', '/v1/llm_models/eagle-one');
    assert.equal(shown.body.llm_config.speculative_config.eagle3_one_model, true, JSON.stringify(shown.body));
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const c = await client.completions.create({ model: 'eagle-one', prompt: 'def add(a, b):\n    return', max_tokens: 12,
                                                temperature: 0, ignore_eos: true });
    assert.equal(c.usage.completion_tokens, 12);
    assert.equal((await api(server.url, 'DELETE', '/v1/llm_models/eagle-one')).status, 200);
  });

  it('refuses MTP on a model without MTP layers, naming num_nextn_predict_layers, and stores nothing', async () => {
    const r = await api(server.url, 'POST', '/v1/llm_models', {
      name: 'mtp', model: path.resolve(models, 'llama3-hf-bf16'),
      llm_config: { speculative_config: { decoding_type: 'MTP', num_nextn_predict_layers: 1 } } });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.equal(r.body.error.param, 'llm_config.speculative_config.num_nextn_predict_layers');
    assert.match(r.body.error.message, /has no MTP layers/);
    assert.equal((await api(server.url, 'GET', '/v1/llm_models/mtp')).status, 404);
  });
});

// Serving a model by its hub name from a real Hugging Face cache layout, built here the way
// huggingface_hub writes it (blobs named by their sha256, snapshots/<commit>/ of relative
// symlinks, refs/<name> holding the commit) around the project's own model: `troupe models`
// lists it, `troupe serve --model org/name` serves it under that name with the same greedy
// output as the directory itself, config.yaml's checkpoint_repository (with the cache found
// through its own environment_variables) and the Management API resolve it the same way, and
// a miss names what it looked for and what the cache holds.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { bin, start, freePort } from './harness.mjs';

const run = promisify(execFile);
const MODEL_DIR = path.resolve('../../models/troupe-py-7m');
const REPO = 'troupe-test/py-7m';
const COMMIT = 'a'.repeat(40);
const TAG_COMMIT = 'b'.repeat(40);

function buildCache(hub) {
  const repoDir = path.join(hub, 'models--troupe-test--py-7m');
  fs.mkdirSync(path.join(repoDir, 'blobs'), { recursive: true });
  fs.mkdirSync(path.join(repoDir, 'refs'), { recursive: true });
  for (const commit of [COMMIT, TAG_COMMIT]) {
    const snap = path.join(repoDir, 'snapshots', commit);
    fs.mkdirSync(snap, { recursive: true });
    for (const name of fs.readdirSync(MODEL_DIR)) {
      const bytes = fs.readFileSync(path.join(MODEL_DIR, name));
      const blob = crypto.createHash('sha256').update(bytes).digest('hex');
      if (!fs.existsSync(path.join(repoDir, 'blobs', blob))) fs.writeFileSync(path.join(repoDir, 'blobs', blob), bytes);
      fs.symlinkSync(`../../blobs/${blob}`, path.join(snap, name));
    }
  }
  fs.writeFileSync(path.join(repoDir, 'refs', 'main'), COMMIT);
  fs.writeFileSync(path.join(repoDir, 'refs', 'v1'), TAG_COMMIT);
}

describe('models by name from the Hugging Face cache', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-hf-'));
  const hub = path.join(dir, 'hub');
  const env = { HF_HUB_CACHE: hub };
  const servers = [];
  before(() => buildCache(hub));
  after(async () => {
    for (const s of servers) await s.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const serveWith = async (args, extraEnv = env) => {
    const port = await freePort();
    const s = await start(['serve', ...args, '--host', '127.0.0.1', '--port', String(port), '--threads', '1',
                           '--kv-cache-memory', '64MiB'], { env: extraEnv });
    servers.push(s);
    return s;
  };
  const greedy = async (url, model) => {
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
    const r = await client.completions.create({ model, prompt: 'def fibonacci(n):', max_tokens: 24, temperature: 0 });
    return r.choices[0].text;
  };

  it('lists what the cache holds with format, size, architecture and whether troupe serves it', async () => {
    const { stdout } = await run(bin, ['models', '--json'], { env: { ...process.env, ...env } });
    const j = JSON.parse(stdout);
    assert.equal(j.hub_cache, hub);
    assert.equal(j.decided_by, 'HF_HUB_CACHE');
    assert.equal(j.data.length, 2);
    const main = j.data.find((m) => m.commit === COMMIT);
    assert.equal(main.model, REPO);
    assert.deepEqual(main.revisions, ['main']);
    assert.equal(main.format, 'safetensors');
    assert.equal(main.architecture, 'LlamaForCausalLM');
    assert.equal(main.servable, true, main.reason);
    const size = fs.readdirSync(MODEL_DIR).reduce((s, n) => s + fs.statSync(path.join(MODEL_DIR, n)).size, 0);
    assert.equal(main.size_bytes, size);
    const table = (await run(bin, ['models'], { env: { ...process.env, ...env } })).stdout;
    // The file holds the MTP layer too (models/MODEL_CARD.md): 14.x MiB.
    assert.match(table, new RegExp(`^${REPO}\\s+main\\s+aaaaaaaaaaaa\\s+safetensors\\s+14\\.\\d MiB\\s+LlamaForCausalLM\\s+yes$`, 'm'));
  });

  it('serves --model org/name under that name, token for token as the directory', async () => {
    const byName = await serveWith(['--model', REPO]);
    const client = new OpenAI({ baseURL: `${byName.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const ids = [];
    for await (const m of await client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, [REPO]);
    const byDir = await serveWith(['--model', MODEL_DIR]);
    assert.equal(await greedy(byName.url, REPO), await greedy(byDir.url, 'troupe-py-7m'));
    // @revision picks a tag's snapshot.
    const tagged = await serveWith(['--model', `${REPO}@v1`]);
    const status = await (await fetch(`${tagged.url}/v1/status`)).json();
    assert.equal(status.deployment.model.commit, TAG_COMMIT);
    assert.equal(status.deployment.model.revision, 'v1');
  });

  it('serves checkpoint_repository from config.yaml, the cache found through its environment_variables', async () => {
    const cfg = path.join(dir, 'config.yaml');
    fs.writeFileSync(cfg, `model_name: py-from-config
environment_variables:
  HF_HUB_CACHE: ${hub}
resources:
  memory: 2Gi
trt_llm:
  inference_stack: v2
  build:
    checkpoint_repository:
      source: HF
      repo: ${REPO}
      revision: v1
  runtime:
    max_seq_len: 256
llm_config:
  b10_routing_config:
    router_queue_policy: wspt
    router_temperature: 0.2
`);
    const s = await serveWith(['--config', cfg], {});  // no HF_HUB_CACHE outside the file
    const stderr = s.stderr();
    assert.match(stderr, /config: environment_variables: 1 variable\(s\) set/);
    assert.match(stderr, new RegExp(`config: trt_llm.build.checkpoint_repository: serves ${REPO} \\(revision v1\\)`));
    assert.match(stderr, /warning: resources.memory: not applied/);
    const client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const r = await client.completions.create({ model: 'py-from-config', prompt: 'x', max_tokens: 300 }).catch((e) => e);
    assert.equal(r.status, 400);  // runtime.max_seq_len 256 is in effect
    assert.match(r.error.message, /256/);
    // Its b10_routing_config is the router's.
    await client.completions.create({ model: 'py-from-config', prompt: 'x', max_tokens: 2 });
    const routed = (await (await fetch(`${s.url}/v1/actors`)).json()).router.models.find((m) => m.model === 'py-from-config');
    assert.equal(routed?.router_queue_policy, 'wspt', JSON.stringify(routed));
    assert.equal(routed?.router_temperature, 0.2);
    const status = await (await fetch(`${s.url}/v1/status`)).json();
    assert.equal(status.deployment.model.commit, TAG_COMMIT);
    assert.deepEqual(status.deployment.config.map((e) => e.field),
                     ['model_name', 'environment_variables', 'resources.memory', 'trt_llm.build.checkpoint_repository',
                      'trt_llm.runtime', 'llm_config.b10_routing_config']);
    // --strict-config refuses what would not take effect.
    const strict = await run(bin, ['serve', '--config', cfg, '--strict-config', '--port', '0'], { env: process.env }).catch((e) => e);
    assert.equal(strict.code, 1);
    assert.match(strict.stderr, /--strict-config: 1 field\(s\) of .* would not take effect here:\n {2}resources.memory: not applied/);
  });

  it('resolves the Management API\'s model the same way', async () => {
    const s = await serveWith(['--model', MODEL_DIR, '--state-dir', path.join(dir, 'state')]);
    const res = await fetch(`${s.url}/v1/llm_models`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                                        body: JSON.stringify({ name: 'byname', model: `${REPO}@v1` }) });
    const body = await res.json();
    assert.equal(res.status, 201, JSON.stringify(body));
    assert.equal(body.commit, TAG_COMMIT);
    assert.equal(await greedy(s.url, 'byname'), await greedy(s.url, 'troupe-py-7m'));
  });

  it('says what it looked for, and what the cache holds, on a miss', async () => {
    const miss = await run(bin, ['serve', '--model', 'troupe-test/py-8m', '--port', '0'], { env: { ...process.env, ...env } })
      .catch((e) => e);
    assert.equal(miss.code, 2);  // a command-line error: --model names nothing servable
    assert.match(miss.stderr, /--model: troupe-test\/py-8m is not in the local Hugging Face cache: looked for .*models--troupe-test--py-8m/);
    assert.match(miss.stderr, new RegExp(`the cache holds: ${REPO}`));
    assert.match(miss.stderr, /fix: troupe does not download checkpoints/);
  });
});

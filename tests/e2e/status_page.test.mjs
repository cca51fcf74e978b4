// The status page at / in headless Chromium (Debian's, driven by playwright-core) against a
// real `troupe serve --config ... --api-key ...` under load from the openai client: the page
// asks for the key, then shows the deployment, its config report, the workers' KV use and hit
// rates, the router, every actor by node and role with message rates, tokens/s and latency
// percentiles, and keeps them live. A screenshot is kept as a test artifact. An autoscaled
// deployment's page draws its autoscaler: replicas current and desired, in-flight tokens
// against the target, and the decisions as a burst scales it up.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { chromium } from 'playwright-core';
import { start, freePort } from './harness.mjs';

const KEY = 'status-page-key';
const MODEL_DIR = path.resolve('../../models/troupe-py-7m');
const ARTIFACTS = process.env.TROUPE_ARTIFACTS ?? path.resolve('../../build/artifacts');
// The flags that let Chromium run headless on these machines (no sandbox as root, and none of
// its background connections, which the closed network refuses).
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                       '--disable-component-update', '--disable-sync'];

describe('the status page', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-status-'));
  let server, browser, client;

  before(async () => {
    fs.writeFileSync(path.join(dir, 'config.yaml'), `model_name: status-page-test
description: the status page test's deployment
trt_llm:
  inference_stack: v2
  build:
    checkpoint_repository:
      source: LOCAL
      repo: ${MODEL_DIR}
  runtime:
    max_batch_size: 8
    kv_cache_memory: 64MiB
llm_config:
  speculative_config:
    decoding_type: NGram
    max_draft_len: 4
`);
    const port = await freePort();
    server = await start(['serve', '--config', path.join(dir, 'config.yaml'), '--host', '127.0.0.1', '--port', String(port),
                          '--workers', '2', '--threads', '1', '--api-key', KEY, '--state-dir', path.join(dir, 'state')]);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 60000 });
    browser = await chromium.launch({ executablePath: process.env.TROUPE_CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  // Requests sharing a long prefix, so the prefix cache has something to hit.
  const prefix = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n        return n\n';
  const load = (n, tag) => Promise.all(Array.from({ length: n }, (_, i) => client.completions.create({
    model: 'status-page-test', prompt: `${prefix}# ${tag} ${i}\n`, max_tokens: 24, temperature: 0 })));

  it('is served without the key and holds no data', async () => {
    const res = await fetch(server.url + '/');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /text\/html/);
    const html = await res.text();
    assert.match(html, /<title>troupe<\/title>/);
    assert.ok(!html.includes('status-page-test'));
    assert.equal((await fetch(server.url + '/v1/status')).status, 401);
  });

  it('asks for the API key, refuses a wrong one, and shows the deployment live with the right one', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url + '/');
    await page.locator('#key-form').waitFor({ state: 'visible', timeout: 15000 });
    await page.fill('#key-input', 'wrong');
    await page.click('#key-form button');
    await page.waitForFunction(() => document.getElementById('key-error').textContent.includes('refused'), null, { timeout: 15000 });
    await page.fill('#key-input', KEY);
    await page.click('#key-form button');
    await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 1, null, { timeout: 15000 });
    assert.equal(await page.locator('#key-form').isHidden(), true);

    await load(6, 'first');
    await load(6, 'second');
    // Live figures: wait for the refreshes after the load to show it.
    await page.waitForFunction(() => document.getElementById('router-requests').textContent === '12' &&
                                     /\d/.test(document.getElementById('lat-ttft-p50').textContent) &&
                                     Number(document.body.dataset.refreshes) >= 3, null, { timeout: 30000 });
    const text = async (sel) => (await page.locator(sel).textContent()).trim();
    assert.equal(await text('#health'), 'ok');
    assert.equal(await text('#deployment-name'), 'status-page-test');
    assert.equal(await text('#description'), "the status page test's deployment");
    assert.equal(await text('#model-source'), MODEL_DIR);
    assert.equal(await text('#models'), 'status-page-test');
    assert.match(await text('#management'), /^on: 0 deployment/);
    // The config report, one row per field.
    const effect = async (field) => text(`#config tr[data-field="${field}"] .badge`);
    assert.equal(await effect('trt_llm.runtime'), 'applied');
    assert.equal(await effect('trt_llm.build.checkpoint_repository'), 'applied');
    assert.equal(await effect('llm_config.speculative_config'), 'applied');  // NGram drafts in its engines
    // Latency percentiles and throughput from the histograms and counters.
    for (const k of ['ttft', 'tpot', 'e2e'])
      for (const q of ['p50', 'p90', 'p99']) assert.match(await text(`#lat-${k}-${q}`), /^[\d.]+ m?s$/, `${k} ${q}`);
    assert.equal(await text('#lat-e2e-count'), '12');
    assert.ok(Number((await text('#tokens-out-minute')).replace(/,/g, '')) > 0);
    // Two workers with their KV use, and the hit rate the shared prefix gave.
    const workers = page.locator('#workers tbody tr');
    assert.equal(await workers.count(), 2);
    for (let i = 0; i < 2; ++i) {
      const row = workers.nth(i);
      assert.match(await row.getAttribute('data-worker'), /^local\/w[01]$/);
      assert.match((await row.locator('td.kv').textContent()).trim(), /^\d+ \/ [1-9]\d* blocks$/);
    }
    const status = await (await fetch(server.url + '/v1/status', { headers: { Authorization: `Bearer ${KEY}` } })).json();
    assert.ok(status.router.cached_tokens > 0, JSON.stringify(status.router));
    assert.equal(await text('#router-hit-rate'), `${(100 * status.router.hit_rate).toFixed(1)}%`);
    // Every actor by node and role, with its mailbox and message rate.
    const roles = await page.locator('#actors tbody tr[data-role]').evaluateAll((rows) => rows.map((r) => r.dataset.role));
    for (const role of ['router', 'node_agent', 'worker', 'device', 'kv_publisher']) assert.ok(roles.includes(role), role);
    assert.equal(roles.filter((r) => r === 'worker').length, 2);
    assert.equal(await text('#actors tbody tr.node'), 'node local');
    assert.match(await text('#actors tr[data-role="router"] td.rate'), /^[\d.,]+$/);

    // It stays live: more requests show up without a reload.
    await load(3, 'third');
    await page.waitForFunction(() => document.getElementById('router-requests').textContent === '15', null, { timeout: 15000 });

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'status_page.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it('takes the key from the address fragment, which never reaches the server', async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/#key=${KEY}`);
    await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 1, null, { timeout: 15000 });
    assert.equal(new URL(page.url()).hash, '');  // taken out of the address bar
    assert.equal(await page.locator('#key-form').isHidden(), true);
    await page.close();
  });

  it('says so when the server goes away', async () => {
    const page = await browser.newPage();
    await page.goto(`${server.url}/#key=${KEY}`);
    await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 1, null, { timeout: 15000 });
    await server.stop();
    await page.locator('#banner').waitFor({ state: 'visible', timeout: 15000 });
    assert.match(await page.locator('#banner').textContent(), /Cannot reach the server/);
    await page.close();
  });
});

describe('the status page of an autoscaled deployment', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'troupe-status-scaled-'));
  let server, browser;

  before(async () => {
    // Simulated engines (20 ms a decode step): a burst holds its replicas for seconds.
    fs.writeFileSync(path.join(dir, 'costs.json'), JSON.stringify({ prefill_token_ms: 0.05, decode_step_ms: { 1: 20, 64: 20 } }));
    fs.writeFileSync(path.join(dir, 'llm.json'), JSON.stringify({ autoscaling_settings: {
      target_in_flight_tokens: 300, min_replica: 1, max_replica: 2, scale_up_delay: 0, scale_down_delay: 3, autoscaling_window: 1 } }));
    const port = await freePort();
    server = await start(['serve', '--model', MODEL_DIR, '--host', '127.0.0.1', '--port', String(port), '--threads', '1',
                          '--kv-cache-memory', '96MiB', '--simulate', path.join(dir, 'costs.json'),
                          '--llm-config', path.join(dir, 'llm.json')]);
    browser = await chromium.launch({ executablePath: process.env.TROUPE_CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('shows replicas, in-flight tokens against the target, and the decisions', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(server.url + '/');
    const row = page.locator('#autoscalers tbody tr[data-model="troupe-py-7m"]');
    await row.waitFor({ state: 'visible', timeout: 15000 });
    assert.equal((await row.locator('td.current').textContent()).trim(), '1');
    assert.match((await row.locator('td.load').textContent()).trim(), /target 300 per replica$/);
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
    const burst = Promise.all(Array.from({ length: 8 }, (_, i) => client.completions.create({
      model: 'troupe-py-7m', prompt: `page burst ${i}`, max_tokens: 120, ignore_eos: true })));
    // The page follows the scale-up: two replicas wanted, and the decision listed.
    await page.waitForFunction(() => {
      const r = document.querySelector('#autoscalers tbody tr[data-model="troupe-py-7m"]');
      return r && r.querySelector('td.desired').textContent === '2' &&
             [...document.querySelectorAll('#autoscaler-log tbody td')].some((td) => /^scale up 1 -> 2/.test(td.textContent));
    }, null, { timeout: 30000 });
    for (const r of await burst) assert.equal(r.choices[0].finish_reason, 'length');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'status_page_autoscaling.png'), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });
});

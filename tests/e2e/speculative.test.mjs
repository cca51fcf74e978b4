// Speculative decoding through the official openai client, on the project's own model
// (models/troupe-py-7m): a server started with `--llm-config` holding an NGram
// speculative_config answers greedy requests (several at once, streamed and not, with stop
// strings and max_tokens) with exactly the tokens of a server without it; its /metrics then
// shows speculation_rate > 0 and the drafted and accepted counters for NGram, and usage carries
// the drafts as completion_tokens_details' accepted and rejected prediction tokens. The same for MTP (the
// model's own MTP layer, inside troupe-py-7m), and MTP on a model without MTP layers (or asking
// for more than it has) is refused at start naming num_nextn_predict_layers. Then the same with a
// DraftTarget speculative_config (the draft model, adaptive draft length), and a missing draft
// model directory refused at start. Then NGram tree drafts (spec_tree_width 3) answering exactly as
// plain decoding, and MTP trees with the adaptive draft length (spec_draft_length 0) too. Then Eagle (the Eagle-3 head
// models/troupe-py-eagle3 over the target's aux layers), the same with eagle3_one_model true (the
// head's catch-up inside the target's forward) answering exactly as plain decoding with its
// speculation_rate, and an unfit head refused at start, naming the field.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { start, freePort, bin } from './harness.mjs';

const MODEL = 'troupe-py-7m';
const root = new URL('../..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'troupe-spec-'));

async function serveShipped(extra = []) {
  const port = await freePort();
  // Token-exact comparisons between batches: the f32 reference path (troupe_test EXACT).
  return start(['serve', '--model', join(root, 'models', MODEL), '--host', '127.0.0.1', '--port', String(port),
                '--kv-cache-memory', '256MiB', '--threads', '1', ...extra], { env: { TROUPE_PRECISION: 'f32' } });
}

const code = 'def add_item(self, key, value):\n    if key in self.items:\n        self.items[key].append(value)\n' +
             '    else:\n        self.items[key] = [value]\n    return self.items[key]\n\n';
const prompts = [
  `${code}# The same method, again:\n${code.slice(0, 30)}`,
  'import os\nimport sys\n\n\ndef main(argv):\n    for name in argv:\n        path = os.path.join(',
  `${code}${code.slice(0, 45)}`,
  'for i in range(10):\n    print(i)\nfor i in range(10):\n    print(',
];
const requests = prompts.flatMap((prompt, i) => [
  { prompt, max_tokens: 64, temperature: 0 },
  { prompt, max_tokens: 7 + i, temperature: 0, stop: ['\n\n'] },
]);

// details collects each non-streamed answer's usage.completion_tokens_details.
async function answers(client, details = []) {
  // All at once, so that the server batches them; every second one streamed.
  return Promise.all(requests.map(async (r, i) => {
    if (i % 2 === 0) {
      const c = await client.completions.create({ model: MODEL, ...r });
      details.push(c.usage.completion_tokens_details);
      return { text: c.choices[0].text, finish: c.choices[0].finish_reason, tokens: c.usage.completion_tokens };
    }
    let text = '', finish = null, tokens = null;
    const stream = await client.completions.create({ model: MODEL, ...r, stream: true, stream_options: { include_usage: true } });
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        text += c.text;
        finish = c.finish_reason ?? finish;
      }
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
    return { text, finish, tokens };
  }));
}

// A plain server and one started with this speculative_config, for the tests of the describe
// block that calls it (started before them, stopped after them).
function servers(file, speculative_config) {
  const s = {};
  before(async () => {
    writeFileSync(join(dir, file), JSON.stringify({ speculative_config }));
    [s.plain, s.spec] = await Promise.all([serveShipped(), serveShipped(['--llm-config', join(dir, file)])]);
  });
  after(async () => { await Promise.all([s.plain?.stop(), s.spec?.stop()]); });
  return s;
}

const clientOptions = { apiKey: 'unused', maxRetries: 0, timeout: 120000 };

// The speculative server answers exactly as the plain one, with accepted drafts in usage and
// never past max_tokens.
function itAnswersAsPlain(s) {
  it('answers greedy requests with exactly the tokens of a server without it', async () => {
    const want = await answers(new OpenAI({ baseURL: `${s.plain.url}/v1`, ...clientOptions }));
    const details = [];
    const got = await answers(new OpenAI({ baseURL: `${s.spec.url}/v1`, ...clientOptions }), details);
    assert.deepEqual(got, want);
    const accepted = details.reduce((n, d) => n + (d?.accepted_prediction_tokens ?? 0), 0);
    assert.ok(accepted > 0, JSON.stringify(details));
    for (let i = 0; i < requests.length; ++i) assert.ok(got[i].tokens <= requests[i].max_tokens, `request ${i}`);
  });
}

// speculation_rate and the drafted and accepted counters of this decoding type on /metrics.
function itReportsRate(s, type) {
  it(`reports speculation_rate and the draft counters for ${type} on /metrics`, async () => {
    const text = await (await fetch(`${s.spec.url}/metrics`)).text();
    const series = (name) => Number(text.match(new RegExp(`^${name}\\{decoding_type="${type}"\\} (\\S+)$`, 'm'))?.[1]);
    const rate = series('speculation_rate');
    assert.ok(rate > 0 && rate <= 100, `speculation_rate ${rate}`);
    const drafted = series('speculative_draft_tokens_total');
    const accepted = series('speculative_accepted_tokens_total');
    assert.ok(drafted > 0 && accepted > 0 && accepted <= drafted, `${accepted} of ${drafted}`);
    assert.ok(Math.abs(rate - (100 * accepted) / drafted) < 1e-6);
  });
}

describe('NGram speculative decoding through the openai client', () => {
  const s = servers('ngram.json', { decoding_type: 'NGram', max_draft_len: 4 });

  it('answers greedy requests with exactly the tokens of a server without it', async () => {
    const plainDetails = [], specDetails = [];
    const want = await answers(new OpenAI({ baseURL: `${s.plain.url}/v1`, ...clientOptions }), plainDetails);
    const got = await answers(new OpenAI({ baseURL: `${s.spec.url}/v1`, ...clientOptions }), specDetails);
    assert.deepEqual(got, want);
    // Usage says what was drafted, as OpenAI's predicted-token counts; without drafts it is absent.
    assert.ok(plainDetails.every((d) => d === undefined), JSON.stringify(plainDetails));
    const accepted = specDetails.reduce((n, d) => n + (d?.accepted_prediction_tokens ?? 0), 0);
    assert.ok(accepted > 0, JSON.stringify(specDetails));
    for (const d of specDetails.filter(Boolean)) assert.ok(d.rejected_prediction_tokens >= 0);
    for (let i = 0; i < requests.length; ++i) assert.ok(got[i].tokens <= requests[i].max_tokens, `request ${i}`);
  });

  it('reports speculation_rate and the draft counters for NGram on /metrics', async () => {
    const text = await (await fetch(`${s.spec.url}/metrics`)).text();
    const rate = Number(text.match(/^speculation_rate\{decoding_type="NGram"\} (\S+)$/m)?.[1]);
    assert.ok(rate > 0 && rate <= 100, `speculation_rate ${rate}`);
    const drafted = Number(text.match(/^speculative_draft_tokens_total\{decoding_type="NGram"\} (\S+)$/m)?.[1]);
    const accepted = Number(text.match(/^speculative_accepted_tokens_total\{decoding_type="NGram"\} (\S+)$/m)?.[1]);
    assert.ok(drafted > 0 && accepted > 0 && accepted <= drafted, `${accepted} of ${drafted}`);
    assert.ok(Math.abs(rate - (100 * accepted) / drafted) < 1e-6);
    assert.match(text, /^speculative_accepted_length_count\{decoding_type="NGram"\} [1-9]/m);
    // The server without it says 0.
    assert.match(await (await fetch(`${s.plain.url}/metrics`)).text(), /^speculation_rate 0$/m);
  });

});

describe('MTP speculative decoding through the openai client', () => {
  const sv = servers('mtp.json', { decoding_type: 'MTP', num_nextn_predict_layers: 1, max_draft_len: 2 });
  itAnswersAsPlain(sv);
  itReportsRate(sv, 'MTP');

  it('refuses at start a model without MTP layers, or more layers than it has, naming the field', () => {
    writeFileSync(join(dir, 'mtp2.json'), JSON.stringify({ speculative_config: { decoding_type: 'MTP', num_nextn_predict_layers: 2 } }));
    for (const [model, config, message] of [
      [join(root, 'models', 'troupe-py-draft'), 'mtp.json', /num_nextn_predict_layers: the model \S+ has no MTP layers/],
      [join(root, 'models', 'troupe-py-7m.gguf'), 'mtp.json', /num_nextn_predict_layers: the model \S+ has no MTP layers/],
      [join(root, 'models', MODEL), 'mtp2.json', /num_nextn_predict_layers: 2 asked, but the model \S+ has 1 MTP layer/]]) {
      const r = spawnSync(bin, ['serve', '--model', model, '--port', '0', '--llm-config', join(dir, config)],
                          { encoding: 'utf8', timeout: 60000 });
      assert.notEqual(r.status, 0, model);
      assert.match(r.stderr, new RegExp(`llm_config\\.speculative_config\\.${message.source}`), r.stderr);
    }
  });
});

// DraftTarget (troupe's extension): the draft model models/troupe-py-draft, named by a path
// relative to the project's root, with the adaptive draft length (spec_draft_length 0).
describe('DraftTarget speculative decoding through the openai client', () => {
  const s = servers('draft.json', {
    decoding_type: 'DraftTarget', speculative_model_dir: 'models/troupe-py-draft', max_draft_len: 4, spec_draft_length: 0 });

  it('answers greedy requests with exactly the tokens of a server without it', async () => {
    const want = await answers(new OpenAI({ baseURL: `${s.plain.url}/v1`, ...clientOptions }));
    const details = [];
    const got = await answers(new OpenAI({ baseURL: `${s.spec.url}/v1`, ...clientOptions }), details);
    assert.deepEqual(got, want);
    const text = await (await fetch(`${s.spec.url}/metrics`)).text();
    const drafted = Number(text.match(/^speculative_draft_tokens_total\{decoding_type="DraftTarget"\} (\S+)$/m)?.[1]);
    assert.ok(drafted > 0, `drafted ${drafted}`);
    assert.match(text, /^speculation_rate\{decoding_type="DraftTarget"\} \S+$/m);
  });

  it('refuses at start a draft model directory that does not exist, naming the field', () => {
    writeFileSync(join(dir, 'nodraft.json'), JSON.stringify({ speculative_config: {
      decoding_type: 'DraftTarget', speculative_model_dir: join(dir, 'no-such-model') } }));
    const r = spawnSync(bin, ['serve', '--model', join(root, 'models', MODEL), '--port', '0', '--llm-config', join(dir, 'nodraft.json')],
                        { encoding: 'utf8', timeout: 60000 });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /speculative_model_dir .*no-such-model: no such directory/);
  });
});

// Tree drafts (spec_tree_width, troupe's extension after MLC's tree mode): NGram trees of width
// 3, verified with the tree attention mask, answer exactly as plain decoding.
describe('tree drafts (spec_tree_width) through the openai client', () => {
  const sv = servers('tree.json', { decoding_type: 'NGram', max_draft_len: 4, spec_tree_width: 3 });
  itAnswersAsPlain(sv);
});

// Trees with the adaptive draft length (MLC's tree and adaptive modes together): MTP trees of
// width 3, each step's depth and tree-or-spine chosen by the engine up to max_draft_len, answer
// exactly as plain decoding and report their rate.
describe('MTP trees with the adaptive draft length through the openai client', () => {
  const sv = servers('mtptree.json', {
    decoding_type: 'MTP', num_nextn_predict_layers: 1, max_draft_len: 3, spec_tree_width: 3, spec_draft_length: 0 });
  itAnswersAsPlain(sv);
  itReportsRate(sv, 'MTP');
});

// Eagle (Eagle-3): the head models/troupe-py-eagle3, named relative to the project's root.
describe('Eagle speculative decoding through the openai client', () => {
  const sv = servers('eagle.json', { decoding_type: 'Eagle', speculative_model_dir: 'models/troupe-py-eagle3', max_draft_len: 3 });
  itAnswersAsPlain(sv);
  itReportsRate(sv, 'Eagle');

  it('refuses at start an unfit head, naming the field', () => {
    const cases = [
      [{ speculative_model_dir: join(dir, 'no-such-head') }, /speculative_config\.speculative_model_dir: \S+: no such directory/],
      [{ speculative_model_dir: 'models/troupe-py-draft' }, /speculative_config\.speculative_model_dir: \S+ is not an Eagle-3 head/],
      [{ speculative_model_dir: 'models/troupe-py-draft', eagle3_one_model: true }, /speculative_config\.speculative_model_dir: \S+ is not an Eagle-3 head/],
    ];
    cases.forEach(([fields, message], i) => {
      writeFileSync(join(dir, `bad-eagle-${i}.json`), JSON.stringify({ speculative_config: { decoding_type: 'Eagle', ...fields } }));
      const r = spawnSync(bin, ['serve', '--model', join(root, 'models', MODEL), '--port', '0', '--llm-config', join(dir, `bad-eagle-${i}.json`)],
                          { encoding: 'utf8', timeout: 60000 });
      assert.notEqual(r.status, 0, JSON.stringify(fields));
      assert.match(r.stderr, message, r.stderr);
    });
  });
});

// eagle3_one_model true: the head's catch-up rows run inside the target's forward (CPU).
describe('Eagle one-model (eagle3_one_model true) through the openai client', () => {
  const sv = servers('eagle-one.json', { decoding_type: 'Eagle', speculative_model_dir: 'models/troupe-py-eagle3', max_draft_len: 3,
                                         eagle3_one_model: true });
  itAnswersAsPlain(sv);
  itReportsRate(sv, 'Eagle');
});

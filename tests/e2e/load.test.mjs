// A bounded load on loopback through `troupe bench serve`: 64 concurrent streams for 30 s.
// No request fails, every KV block is free afterwards, and the server's memory stays flat
// (the second half of the run peaks no higher than the first, give or take allocator noise).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { bin, models } from './harness.mjs';

describe('troupe bench serve, 64 streams for 30 s', () => {
  it('has no errors, frees every KV block and keeps memory flat', async () => {
    const { stdout } = await promisify(execFile)(bin, ['bench', 'serve', '--model', `${models}/qwen3-hf-bf16`, '--concurrency', '64',
                                                       '--duration', '30', '--max-tokens', '24', '--kv-cache-memory', '512MiB'],
                                                 { timeout: 300000, maxBuffer: 16 << 20 });
    const r = JSON.parse(stdout);
    assert.equal(r.requests_failed, 0, JSON.stringify(r.errors));
    assert.ok(r.requests_ok > 64, `requests: ${r.requests_ok}`);
    assert.deepEqual(r.after, { kv_blocks_used: 0, sequences: 0 });
    const { first_half_max: first, second_half_max: second } = r.server_rss_mib;
    assert.ok(second <= first * 1.1 + 32, `server memory grew from ${first} to ${second} MiB`);
  });
});

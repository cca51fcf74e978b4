#!/usr/bin/env python3
"""Proves `troupe bench serve --workload mixed` (long prompts arriving among short decoding
streams): a short real run against a started server (the project's own model) prints the
short streams' inter-token latency alone and mixed, the ratio of their p99s and the long
prompts' time to first token, with sane figures and no failed request, and draws its PNG;
--llm-config reaches the started server (a bad one is the server's error); --llm-config with
--url is refused.
Usage: bench_mixed_test.py TROUPE_BIN ARTIFACT_DIR
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.environ.get('TROUPE_SOURCE_DIR') or os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
MODEL = os.path.join(ROOT, 'models', 'troupe-py-7m')


def bench(troupe, args):
    return subprocess.run([troupe, 'bench', 'serve', *args], capture_output=True, text=True, timeout=300)


def main():
    troupe, artifacts = sys.argv[1], sys.argv[2]
    os.makedirs(artifacts, exist_ok=True)
    failures = []

    png = os.path.join(artifacts, 'bench_serve_mixed.png')
    p = bench(troupe, ['--workload', 'mixed', '--model', MODEL, '--concurrency', '2', '--duration', '3',
                       '--max-tokens', '24', '--long-rate', '1', '--long-prompt-tokens', '300', '--long-max-tokens', '2',
                       '--kv-cache-memory', '64MiB', '--plot', png])
    if p.returncode != 0:
        failures.append(f'bench serve --workload mixed exited {p.returncode}: {p.stderr[-2000:]}')
    else:
        r = json.loads(p.stdout)
        alone, short, long_ = r['decode_alone'], r['mixed']['short'], r['mixed']['long']
        for name, ph in (('decode_alone', alone), ('mixed.short', short)):
            if ph['requests_ok'] < 2 or ph['requests_failed'] != 0:
                failures.append(f'{name}: {ph["requests_ok"]} ok, {ph["requests_failed"]} failed {ph["errors"]}')
            itl = ph['itl_ms']
            if not 0 < itl['p50'] <= itl['p99'] < 10000:
                failures.append(f'{name} itl_ms: {itl}')
        if long_['requests_ok'] != 3 or long_['requests_failed'] != 0:
            failures.append(f'long prompts: {long_}')
        # About 300 tokens each by the model's tokenizer, as the server counted them.
        if not 200 <= long_['prompt_tokens_mean'] <= 300:
            failures.append(f'long prompt tokens: {long_["prompt_tokens_mean"]}')
        if not 0 < long_['ttft_ms']['p50'] <= long_['ttft_ms']['p99'] < 60000:
            failures.append(f'long ttft_ms: {long_["ttft_ms"]}')
        p99 = r['short_itl_p99_ms']
        if p99['decode_alone'] != alone['itl_ms']['p99'] or p99['mixed'] != short['itl_ms']['p99'] or \
                abs(p99['mixed_over_alone'] - p99['mixed'] / p99['decode_alone']) > 1e-9:
            failures.append(f'short_itl_p99_ms: {p99}')
        if r['long_ttft_ms']['p99'] != long_['ttft_ms']['p99'] or r['short_streams'] != 2:
            failures.append(f'summary: {p.stdout[:400]}')
        # An aggregated server moves no KV between workers: no kv_transfer figures, or all zero.
        if any(v != 0 for v in r.get('kv_transfer', {}).values()):
            failures.append(f'kv_transfer on an aggregated server: {r["kv_transfer"]}')
        if not os.path.exists(png) or os.path.getsize(png) < 10000:
            failures.append(f'{png} was not drawn')

    # --llm-config reaches the started server: a bad block is its error, naming the field.
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, 'llm.json')
        with open(bad, 'w') as f:
            json.dump({'autoscaling_settings': {'min_replica': 4, 'max_replica': 3}}, f)
        p = bench(troupe, ['--model', MODEL, '--llm-config', bad, '--duration', '1', '--kv-cache-memory', '64MiB'])
        if p.returncode == 0 or 'min_replica' not in p.stderr or 'exited before it was ready' not in p.stderr:
            failures.append(f'a bad --llm-config: exit {p.returncode}, stderr {p.stderr[-600:]}')
        p = bench(troupe, ['--url', 'http://127.0.0.1:9', '--llm-config', bad])
        if p.returncode == 0 or 'leave out one of them' not in p.stderr:
            failures.append(f'--llm-config with --url: exit {p.returncode}, stderr {p.stderr[-300:]}')

    for f in failures:
        print('FAIL:', f)
    print(f'{0 if failures else 1} passed, {1 if failures else 0} failed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())

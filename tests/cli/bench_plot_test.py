#!/usr/bin/env python3
"""Proves `troupe bench ... --plot FILE.png`: short real runs of `bench engine` (the project's
own model), `bench serve` (two concurrency levels against a started server) and `bench serve
--workload ramp` (an autoscaled server against a fixed replica, simulated engines) print their
JSON and draw a PNG with matplotlib, kept as test artifacts; a missing python is a clear error.
Usage: bench_plot_test.py TROUPE_BIN ARTIFACT_DIR
"""
import json
import os
import subprocess
import sys

import matplotlib.image

ROOT = os.environ.get('TROUPE_SOURCE_DIR') or os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
MODEL = os.path.join(ROOT, 'models', 'troupe-py-7m')


def run(troupe, args, png, env=None):
    p = subprocess.run([troupe, 'bench', *args, '--plot', png], capture_output=True, text=True, timeout=600,
                       env={**os.environ, **(env or {})})
    return p


def check_png(png, failures):
    if not os.path.exists(png):
        failures.append(f'{png} was not written')
        return
    h, w = matplotlib.image.imread(png).shape[:2]
    if w < 600 or h < 300:
        failures.append(f'{png} is {w}x{h}')


def main():
    troupe, artifacts = sys.argv[1], sys.argv[2]
    os.makedirs(artifacts, exist_ok=True)
    failures = []

    png = os.path.join(artifacts, 'bench_engine.png')
    p = run(troupe, ['engine', '--model', MODEL, '--batches', '1,2,4', '--decode-steps', '2', '--prompt-tokens', '32'], png)
    if p.returncode != 0:
        failures.append(f'bench engine --plot exited {p.returncode}: {p.stderr}')
    else:
        r = json.loads(p.stdout)
        if [d['batch'] for d in r['decode']] != [1, 2, 4]:
            failures.append(f'bench engine JSON: {p.stdout[:300]}')
        check_png(png, failures)

    png = os.path.join(artifacts, 'bench_serve.png')
    p = run(troupe, ['serve', '--model', MODEL, '--concurrency', '1,4', '--duration', '2', '--max-tokens', '8',
                     '--kv-cache-memory', '64MiB'], png)
    if p.returncode != 0:
        failures.append(f'bench serve --plot exited {p.returncode}: {p.stderr}')
    else:
        r = json.loads(p.stdout)
        if [x['concurrency'] for x in r['runs']] != [1, 4] or any(x['requests_ok'] == 0 for x in r['runs']):
            failures.append(f'bench serve JSON: {p.stdout[:300]}')
        check_png(png, failures)

    # The ramp: an autoscaled server (simulated engines, 20 ms per step) against a fixed replica.
    png = os.path.join(artifacts, 'bench_serve_ramp.png')
    costs = os.path.join(artifacts, 'ramp_costs.json')
    with open(costs, 'w') as f:
        json.dump({'prefill_token_ms': 0.5, 'decode_step_ms': {'1': 10, '32': 100}}, f)
    p = run(troupe, ['serve', '--workload', 'ramp', '--model', MODEL, '--simulate', costs, '--concurrency', '12',
                     '--duration', '6', '--max-tokens', '24', '--kv-cache-memory', '64MiB'], png)
    if p.returncode != 0:
        failures.append(f'bench serve --workload ramp --plot exited {p.returncode}: {p.stderr}')
    else:
        r = json.loads(p.stdout)
        modes = [x['mode'] for x in r['runs']]
        if modes != ['autoscaled', 'fixed single replica'] or any(x['requests_ok'] == 0 or x['requests_failed'] for x in r['runs']):
            failures.append(f'bench serve --workload ramp JSON: {p.stdout[:300]}')
        elif max(r['runs'][0]['samples']['active_replicas']) < 2:
            failures.append(f'the ramp did not scale: {r["runs"][0]["samples"]}')
        check_png(png, failures)

    # Without python the JSON still comes out, and the error says what is missing.
    p = run(troupe, ['serve', '--model', MODEL, '--concurrency', '1', '--duration', '1', '--max-tokens', '4',
                     '--kv-cache-memory', '64MiB'], os.path.join(artifacts, 'never.png'), {'TROUPE_PYTHON': '/nonexistent/python3'})
    if p.returncode != 1 or 'cannot run /nonexistent/python3' not in p.stderr or '"requests_ok"' not in p.stdout:
        failures.append(f'without python: exit {p.returncode}, stderr {p.stderr[-300:]}')

    for f in failures:
        print('FAIL:', f)
    print(f'{0 if failures else 1} passed, {1 if failures else 0} failed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())

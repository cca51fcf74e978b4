#!/usr/bin/env python3
"""Proves deploy/'s Grafana dashboard and Prometheus rules against a running troupe.

Starts `troupe serve` with the project's own model, sends a few requests so that every
per-model family has samples, scrapes /metrics, and checks:
  - every metric a dashboard panel, a template variable or a rule queries is one /metrics
    exports (or a recording rule of deploy/prometheus/troupe-rules.yml, or Prometheus's `up`);
  - every family /metrics exports is queried by some panel (directly, or through a recording
    rule a panel shows); a family without one is named, with the file to add its panel to;
  - deploy/grafana/troupe.json is what deploy/grafana/make_dashboard.py writes, and imports:
    unique panel ids, a data source input, every target on it.
Usage: dashboard_test.py TROUPE_BIN (ctest passes it).
"""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

ROOT = os.environ.get('TROUPE_SOURCE_DIR') or os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DASHBOARD = os.path.join(ROOT, 'deploy', 'grafana', 'troupe.json')
GENERATOR = os.path.join(ROOT, 'deploy', 'grafana', 'make_dashboard.py')
RULES = os.path.join(ROOT, 'deploy', 'prometheus', 'troupe-rules.yml')
BUILTIN = {'up'}  # series Prometheus itself makes for every target

PROMQL_WORDS = {'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless',
                'offset', 'inf', 'nan'}


def metric_names(expr):
    """The metric names a PromQL expression reads."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # string literals
    e = re.sub(r'\{[^}]*\}', '', e)                         # label matchers
    e = re.sub(r'\[[^\]]*\]', '', e)                        # range selectors
    e = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', '', e)  # label lists
    names = set()
    for m in re.finditer(r'(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?', e):
        if m.group(2) or m.group(1).lower() in PROMQL_WORDS:
            continue  # a function call or a keyword
        names.add(m.group(1))
    return names


def template_names(query):
    m = re.match(r'\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)', query)
    return {m.group(1)} if m else metric_names(query)


def exported(text):
    """family -> (type, the sample names it exposes)."""
    families = {}
    for line in text.splitlines():
        m = re.match(r'# TYPE (\S+) (\S+)', line)
        if m:
            families[m.group(1)] = m.group(2)
    samples = {}
    for name, kind in families.items():
        suffixes = {'histogram': ['_bucket', '_sum', '_count'], 'summary': ['', '_sum', '_count']}.get(kind, [''])
        samples[name] = (kind, {name + s for s in suffixes})
    return samples


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def scrape(troupe):
    port = free_port()
    proc = subprocess.Popen([troupe, 'serve', '--model', os.path.join(ROOT, 'models', 'troupe-py-7m'), '--host', '127.0.0.1',
                             '--port', str(port), '--threads', '1', '--kv-cache-memory', '64MiB'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f'http://127.0.0.1:{port}'
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url + '/health', timeout=5).read()
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit('troupe serve did not start:\n' + proc.stderr.read())
                time.sleep(0.2)
        body = json.dumps({'model': 'troupe-py-7m', 'prompt': 'def add(a, b):', 'max_tokens': 4}).encode()
        for _ in range(3):
            req = urllib.request.Request(url + '/v1/completions', body, {'Content-Type': 'application/json'})
            urllib.request.urlopen(req, timeout=60).read()
        return urllib.request.urlopen(url + '/metrics', timeout=30).read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main():
    troupe = sys.argv[1]
    failures = []
    dash = json.load(open(DASHBOARD))
    if open(DASHBOARD).read() != subprocess.run([sys.executable, '-c', f'import runpy; g = runpy.run_path({GENERATOR!r}); '
                                                 'print(g["text"](), end="")'], capture_output=True, text=True, check=True).stdout:
        failures.append(f'{DASHBOARD} is not what {GENERATOR} writes: run `python3 {os.path.relpath(GENERATOR, ROOT)}`')

    # The dashboard imports: a data source input, unique ids, every target on that input.
    ids = [p['id'] for p in dash['panels']]
    if len(ids) != len(set(ids)):
        failures.append('panel ids repeat')
    if not any(i['name'] == 'DS_PROMETHEUS' for i in dash.get('__inputs', [])):
        failures.append('no DS_PROMETHEUS input: Grafana\'s import would not ask for a data source')
    panel_exprs = []
    for p in dash['panels']:
        for t in p.get('targets', []):
            if t.get('datasource', {}).get('uid') != '${DS_PROMETHEUS}':
                failures.append(f'panel "{p["title"]}": a target is not on ${{DS_PROMETHEUS}}')
            panel_exprs.append((p['title'], t['expr']))

    rules = yaml.safe_load(open(RULES))
    recorded = {}   # record name -> metric names its expression reads
    rule_exprs = []
    for g in rules['groups']:
        for r in g['rules']:
            if 'record' in r:
                recorded[r['record']] = metric_names(r['expr'])
            rule_exprs.append((r.get('record') or r.get('alert'), r['expr']))

    families = exported(scrape(troupe))
    sample_to_family = {s: f for f, (_, ss) in families.items() for s in ss}
    known = set(sample_to_family) | set(recorded) | BUILTIN

    queried = set()  # families some panel shows
    for title, expr in panel_exprs:
        for name in metric_names(expr):
            if name not in known:
                failures.append(f'panel "{title}" queries {name}, which /metrics does not export: {expr}')
            for n in recorded.get(name, {name}):
                if n in sample_to_family:
                    queried.add(sample_to_family[n])
    for v in dash['templating']['list']:
        for name in template_names(v['query']['query'] if isinstance(v['query'], dict) else v['query']):
            if name not in known:
                failures.append(f'template variable ${v["name"]} queries {name}, which /metrics does not export')
    for rule, expr in rule_exprs:
        for name in metric_names(expr):
            if name not in known:
                failures.append(f'rule {rule} queries {name}, which /metrics does not export')
    for f in sorted(set(families) - queried):
        failures.append(f'metric family {f} ({families[f][0]}) is exported by /metrics but no panel queries it: add a '
                        f'panel for it to {os.path.relpath(GENERATOR, ROOT)} and run it')

    print(f'{len(families)} families exported, {len(panel_exprs)} panel queries, {len(rule_exprs)} rules')
    for f in failures:
        print('FAIL:', f)
    passed = 0 if failures else 1
    print(f'{passed} passed, {1 - passed} failed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())

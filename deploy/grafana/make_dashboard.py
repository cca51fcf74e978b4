#!/usr/bin/env python3
"""Writes deploy/grafana/troupe.json, troupe's Grafana dashboard, from the panel list below.

Each row of PANELS is one panel: (title, unit, kind, [(PromQL, legend), ...], description).
Every metric family troupe's /metrics exports must be queried by some panel, and every metric
a panel queries must be exported (or recorded by deploy/prometheus/troupe-rules.yml):
tests/deploy/dashboard_test.py checks both against a running server and that troupe.json is
what this script writes. When a branch adds a family, add its panel here and run:

    python3 deploy/grafana/make_dashboard.py

The dashboard imports as is (Dashboards > New > Import): it asks for a Prometheus data source,
and filters by the `model` and `node` labels.
"""
import json
import os
import sys

M = 'model=~"$model"'
N = 'node=~"$node"'
RI = '$__rate_interval'


def quantiles(metric, by='model'):
    return [(f'histogram_quantile({p}, sum by ({by}, le) (rate({metric}_bucket{{{M}}}[{RI}])))', f'p{int(p * 100)} {{{{{by}}}}}')
            for p in (0.5, 0.9, 0.99)]


# (row title, [(panel title, unit, kind, targets, description)])
ROWS = [
    ('Overview', [
        ('Requests/s', 'reqps', 'stat', [(f'sum(rate(requests_total{{{M}}}[{RI}]))', 'requests/s')],
         'Finished generation requests per second.'),
        ('Error ratio', 'percentunit', 'stat', [('sum(troupe:request_errors:ratio_rate5m)', 'errors')],
         'Share of requests that ended in an error over 5 minutes (recording rule).'),
        ('Requests in flight', 'short', 'stat', [(f'sum(concurrent_requests{{{M}}})', 'in flight')],
         'concurrent_requests: requests being served now.'),
        ('Output tokens/s', 'short', 'stat', [(f'sum(output_tokens{{{M}}})', 'tokens/s')],
         'output_tokens: generated tokens per second over the last minute.'),
        ('KV cache hit rate', 'percentunit', 'stat', [('max(kv_cache_hit_rate)', 'hit rate')],
         'Prompt tokens served from a prefix cache, over all prompt tokens.'),
        ('Active replicas', 'short', 'stat', [(f'sum(replica_count_by_status{{status="active",{M}}})', 'active')],
         'Workers the router can send requests to.'),
    ]),
    ('Throughput', [
        ('Token throughput', 'short', 'timeseries',
         [(f'sum by (model) (output_tokens{{{M}}})', 'output {{model}}'),
          (f'sum by (model) (input_tokens{{{M}}})', 'input {{model}}')],
         'input_tokens / output_tokens: total token throughput across the deployment, tokens/s over the last minute.'),
        ('Tokens counted', 'short', 'timeseries',
         [(f'sum by (model) (rate(output_tokens_total{{{M}}}[{RI}]))', 'output {{model}}'),
          (f'sum by (model) (rate(input_tokens_total{{{M}}}[{RI}]))', 'input {{model}}')],
         'The same throughput from the running counters, at the dashboard\'s resolution.'),
        ('Tokens/s per request', 'short', 'timeseries', quantiles('tps_per_request'),
         'tps_per_request: generated tokens per second of each request.'),
        ('Requests by outcome', 'reqps', 'timeseries',
         [(f'sum by (model, outcome) (rate(requests_total{{{M}}}[{RI}]))', '{{outcome}} {{model}}')],
         'requests_total by outcome (ok, error).'),
    ]),
    ('Latency', [
        ('Time to first token', 's', 'timeseries', quantiles('time_to_first_token_seconds'),
         'Seconds from a request\'s arrival to its first output token.'),
        ('Time per output token', 's', 'timeseries', quantiles('time_per_output_token_seconds'),
         'Mean seconds between a request\'s output tokens after the first.'),
        ('End-to-end latency', 's', 'timeseries', quantiles('e2e_request_latency_seconds'),
         'Seconds from a request\'s arrival to its last token.'),
        ('Time to first token p99 (5m, recorded)', 's', 'timeseries',
         [('troupe:time_to_first_token_seconds:p99_5m', '{{model}}')],
         'The recording rule the slow-first-token alert watches.'),
    ]),
    ('Requests', [
        ('Requests in flight', 'short', 'timeseries', [(f'sum by (model) (concurrent_requests{{{M}}})', '{{model}}')],
         'concurrent_requests.'),
        ('Prompt tokens per request', 'short', 'timeseries', quantiles('input_tokens_per_request'),
         'input_tokens_per_request.'),
        ('Output tokens per request', 'short', 'timeseries', quantiles('output_tokens_per_request'),
         'output_tokens_per_request.'),
        ('Mean tokens per request', 'short', 'timeseries',
         [(f'sum(rate(input_tokens_per_request_sum{{{M}}}[{RI}])) / sum(rate(input_tokens_per_request_count{{{M}}}[{RI}]))', 'prompt'),
          (f'sum(rate(output_tokens_per_request_sum{{{M}}}[{RI}])) / sum(rate(output_tokens_per_request_count{{{M}}}[{RI}]))', 'output')],
         'Per-request token averages.'),
    ]),
    ('Router and KV cache', [
        ('KV cache hit rate', 'percentunit', 'timeseries',
         [('kv_cache_hit_rate', 'actual'), ('kv_cache_best_prefix_hit_rate', 'best reachable')],
         'kv_cache_hit_rate against the best hit rate the router could have selected given its index.'),
        ('Routing efficiency', 'percentunit', 'timeseries', [('kv_cache_hit_rate_efficiency', 'efficiency')],
         'Ratio of actual hit rate to best possible; typically 90-100%.'),
        ('Hit rate skew', 'percentunit', 'timeseries', [('kv_cache_hit_rate_skew', 'skew')],
         'kv_cache_hit_rate_skew.'),
        ('Replicas by status', 'short', 'timeseries', [(f'sum by (model, status) (replica_count_by_status{{{M}}})', '{{status}} {{model}}')],
         'replica_count_by_status.'),
    ]),
    ('Speculative decoding', [
        ('Speculation rate', 'percent', 'timeseries', [('speculation_rate', '{{decoding_type}}')],
         'speculation_rate: the percentage of draft tokens accepted by the main model, per decoding type.'),
        ('Draft tokens/s', 'short', 'timeseries',
         [(f'sum by (decoding_type) (rate(speculative_draft_tokens_total[{RI}]))', 'drafted {{decoding_type}}'),
          (f'sum by (decoding_type) (rate(speculative_accepted_tokens_total[{RI}]))', 'accepted {{decoding_type}}')],
         'Draft tokens the main model verified, and of those accepted.'),
        ('Accepted length', 'short', 'timeseries',
         [(f'sum by (decoding_type) (rate(speculative_accepted_length_sum[{RI}])) / '
           f'sum by (decoding_type) (rate(speculative_accepted_length_count[{RI}]))', 'mean {{decoding_type}}')]
         + quantiles('speculative_accepted_length', 'decoding_type'),
         'Tokens one verification emitted: the draft tokens accepted, plus the main model\'s own.'),
    ]),
    ('Disaggregated serving', [
        ('KV transfer', 'short', 'timeseries',
         [(f'sum by (worker) (rate(kv_transfer_blocks_total[{RI}]))', 'blocks/s {{worker}}'),
          (f'sum by (worker) (rate(kv_transfer_skipped_blocks_total[{RI}]))', 'skipped/s {{worker}}'),
          (f'sum by (worker) (increase(kv_transfer_failures_total[{RI}]))', 'failures {{worker}}')],
         'KV blocks decode workers received from prefill workers, those not sent because the decode worker '
         'held them (kv_transfer_skipped_blocks_total), and failed transfers.'),
        ('KV transfer bytes/s', 'Bps', 'timeseries',
         [(f'sum by (worker) (rate(kv_transfer_bytes_total[{RI}]))', '{{worker}}')],
         'kv_transfer_bytes_total: KV bytes received per decode worker.'),
        ('KV transfer time', 's', 'timeseries', [(f'histogram_quantile({q}, sum by (worker, le) (rate(kv_transfer_seconds_bucket[{RI}])))',
           f'p{int(q * 100)} {{{{worker}}}}') for q in (0.5, 0.9, 0.99)],
         'kv_transfer_seconds: from a hand-off\'s arrival at the decode worker to its last block written.'),
        ('In-flight tokens by role', 'short', 'timeseries',
         [(f'sum by (model, role) (in_flight_tokens_by_role{{{M}}})', '{{role}} {{model}}')],
         'in_flight_tokens_by_role: what token-based autoscaling of the prefill and decode groups reads.'),
        ('KV blocks in use per worker', 'short', 'timeseries',
         [('sum by (worker, role) (worker_kv_blocks_used)', 'used {{worker}} ({{role}})'),
          ('sum by (worker, role) (worker_kv_blocks)', 'total {{worker}} ({{role}})')],
         'worker_kv_blocks_used against worker_kv_blocks: requests\' blocks (prefix-cached blocks count free).'),
    ]),
    ('Router internals', [
        ('Routing decision time', 's', 'timeseries',
         [(f'histogram_quantile({q}, sum by (le) (rate(router_decision_seconds_bucket[{RI}])))', f'p{int(q * 100)}')
          for q in (0.5, 0.99)],
         'router_decision_seconds: hashing the prompt, walking the KV index and the policy, per request.'),
        ('Router queue', 'short', 'timeseries',
         [(f'sum by (model) (router_queue_depth{{{M}}})', 'waiting {{model}}'),
          (f'sum by (model) (rate(router_queue_rejected_total{{{M}}}[{RI}]))', '429/s {{model}}'),
          (f'histogram_quantile(0.99, sum by (le) (rate(router_queue_wait_seconds_bucket[{RI}])))', 'p99 wait (s)')],
         'Requests held while every worker is saturated (router_queue_depth), those refused with 429, and the wait.'),
        ('KV index', 'short', 'timeseries',
         [(f'sum by (worker) (router_kv_indexed_blocks{{{M}}})', '{{worker}}'),
          ('sum(router_kv_index_bytes)', 'bytes')],
         'Blocks the router\'s KV index holds per worker (router_kv_indexed_blocks) and its memory.'),
        ('KV events', 'short', 'timeseries',
         [(f'sum(rate(router_kv_events_applied_total[{RI}]))', 'applied/s'),
          (f'sum by (worker) (rate(router_kv_events_total{{{M}}}[{RI}]))', 'received/s {{worker}}'),
          (f'sum by (worker) (increase(router_kv_event_gaps_total{{{M}}}[{RI}]))', 'gaps {{worker}}'),
          (f'sum by (worker) (increase(router_kv_dumps_total{{{M}}}[{RI}]))', 'dumps {{worker}}'),
          (f'sum by (worker) (increase(router_kv_replays_total{{{M}}}[{RI}]))', 'replays {{worker}}')],
         'KV events applied to the index; gaps, full dumps and replays after a restart say the index resynced.'),
        ('Load per worker', 'short', 'timeseries',
         [(f'sum by (worker) (router_worker_active_blocks{{{M}}})', 'active blocks {{worker}}'),
          (f'sum by (worker) (rate(router_worker_routed_total{{{M}}}[{RI}]))', 'routed/s {{worker}}')],
         'The router\'s picture of each worker: prompt KV blocks in flight and requests sent.'),
    ]),
    ('Autoscaler', [
        ('In-flight tokens against the target', 'short', 'timeseries',
         [(f'sum by (model, group) (autoscaler_in_flight_tokens{{{M}}})', 'in flight {{model}} {{group}}'),
          (f'sum by (model, group) (autoscaler_in_flight_tokens_windowed{{{M}}})', 'over the window {{model}} {{group}}'),
          (f'max by (model, group) (autoscaler_target_in_flight_tokens{{{M}}})', 'target per replica {{model}} {{group}}')],
         'autoscaler_in_flight_tokens: prompt + max_tokens of admitted, unfinished requests; the rule wants '
         'ceil(windowed mean / target_in_flight_tokens) replicas.'),
        ('Desired and current replicas', 'short', 'timeseries',
         [(f'max by (model, group) (autoscaler_desired_replicas{{{M}}})', 'desired {{model}} {{group}}'),
          (f'max by (model, group) (autoscaler_current_replicas{{{M}}})', 'current {{model}} {{group}}')],
         'What the autoscaler wants after its delays, and the replicas starting or active.'),
        ('Scale events', 'short', 'timeseries',
         [(f'sum by (model, direction) (increase(autoscaler_scale_events_total{{{M}}}[{RI}]))', '{{direction}} {{model}}')],
         'autoscaler_scale_events_total by direction: starts (up) and drains (down).'),
    ]),
    ('Resources', [
        ('CPU usage', 'percentunit', 'timeseries', [('cpu_usage', '{{instance}}')],
         'Fraction of the machine\'s CPU time the process used.'),
        ('Memory usage', 'bytes', 'timeseries', [('memory_usage', '{{instance}}')], 'Resident memory of the process.'),
        ('GPU usage', 'percentunit', 'timeseries', [('gpu_usage', '{{instance}}')], 'Fraction of GPU compute in use.'),
        ('GPU memory usage', 'bytes', 'timeseries', [('gpu_memory_usage', '{{instance}}')], 'GPU memory in use.'),
    ]),
    ('Actors', [
        ('Mailbox size', 'short', 'timeseries', [(f'max by (node, actor) (actor_mailbox_size{{{N}}})', '{{actor}}')],
         'Messages waiting in each actor\'s mailbox: a growing one is a bottleneck.'),
        ('Messages handled/s', 'short', 'timeseries',
         [(f'sum by (node, role) (rate(actor_messages_total{{{N}}}[{RI}]))', '{{role}} on {{node}}')],
         'actor_messages_total by role.'),
        ('Handling time per message', 's', 'timeseries',
         [(f'sum by (node, role) (rate(actor_message_seconds_sum{{{N}}}[{RI}])) / '
           f'sum by (node, role) (rate(actor_message_seconds_count{{{N}}}[{RI}]))', '{{role}} on {{node}}')],
         'actor_message_seconds: mean time an actor spends on one message.'),
    ]),
]


def panel(pid, title, unit, kind, targets, description, x, y, w, h):
    p = {
        'id': pid, 'type': kind, 'title': title, 'description': description,
        'datasource': {'type': 'prometheus', 'uid': '${DS_PROMETHEUS}'},
        'gridPos': {'x': x, 'y': y, 'w': w, 'h': h},
        'fieldConfig': {'defaults': {'unit': unit}, 'overrides': []},
        'targets': [{'refId': chr(ord('A') + i), 'expr': e, 'legendFormat': l,
                     'datasource': {'type': 'prometheus', 'uid': '${DS_PROMETHEUS}'}} for i, (e, l) in enumerate(targets)],
    }
    if kind == 'stat':
        p['options'] = {'reduceOptions': {'calcs': ['lastNotNull'], 'fields': '', 'values': False}, 'colorMode': 'value',
                        'graphMode': 'area', 'textMode': 'auto'}
    else:
        p['options'] = {'legend': {'displayMode': 'list', 'placement': 'bottom', 'showLegend': True},
                        'tooltip': {'mode': 'multi', 'sort': 'desc'}}
    return p


def dashboard():
    panels, pid, y = [], 1, 0
    for row, items in ROWS:
        panels.append({'id': pid, 'type': 'row', 'title': row, 'collapsed': False, 'panels': [],
                       'gridPos': {'x': 0, 'y': y, 'w': 24, 'h': 1}})
        pid, y = pid + 1, y + 1
        stats = all(kind == 'stat' for _, _, kind, _, _ in items)
        w = 4 if stats else 12 if len(items) % 3 else 8
        h = 4 if stats else 8
        x = 0
        for title, unit, kind, targets, desc in items:
            if x + w > 24:
                x, y = 0, y + h
            panels.append(panel(pid, title, unit, kind, targets, desc, x, y, w, h))
            pid, x = pid + 1, x + w
        y += h
    ds = {'type': 'prometheus', 'uid': '${DS_PROMETHEUS}'}
    variable = lambda name, label, query: {
        'name': name, 'label': label, 'type': 'query', 'datasource': ds, 'query': {'query': query, 'refId': name},
        'definition': query, 'includeAll': True, 'multi': True, 'allValue': '.*', 'refresh': 2, 'sort': 1,
        'current': {'selected': True, 'text': ['All'], 'value': ['$__all']}}
    return {
        '__inputs': [{'name': 'DS_PROMETHEUS', 'label': 'Prometheus', 'description': 'where troupe\'s /metrics is scraped',
                      'type': 'datasource', 'pluginId': 'prometheus', 'pluginName': 'Prometheus'}],
        '__requires': [{'type': 'grafana', 'id': 'grafana', 'name': 'Grafana', 'version': '9.0.0'},
                       {'type': 'datasource', 'id': 'prometheus', 'name': 'Prometheus', 'version': '1.0.0'},
                       {'type': 'panel', 'id': 'timeseries', 'name': 'Time series', 'version': ''},
                       {'type': 'panel', 'id': 'stat', 'name': 'Stat', 'version': ''}],
        'uid': 'troupe-overview', 'title': 'troupe', 'description': 'troupe: requests, tokens, latency, KV-aware routing, '
        'replicas, resources and actors', 'tags': ['troupe', 'llm'], 'timezone': 'browser', 'editable': True,
        'schemaVersion': 38, 'version': 1, 'refresh': '10s', 'time': {'from': 'now-1h', 'to': 'now'},
        'templating': {'list': [variable('model', 'model', 'label_values(concurrent_requests, model)'),
                                variable('node', 'node', 'label_values(actor_mailbox_size, node)')]},
        'annotations': {'list': []}, 'links': [], 'panels': panels,
    }


def text():
    return json.dumps(dashboard(), indent=2, sort_keys=False) + '\n'


if __name__ == '__main__':
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'troupe.json')
    if sys.argv[1:] == ['--check']:
        sys.exit(0 if open(out).read() == text() else 'troupe.json is not what make_dashboard.py writes: run it')
    with open(out, 'w') as f:
        f.write(text())

#!/usr/bin/env python3
"""Draws the figure a person wants from a `troupe bench` result, with matplotlib.

    python3 scripts/plot_bench.py RESULT.json OUT.png

`troupe bench ... --plot OUT.png` runs this same script (compiled into the binary) on the
JSON it prints. The kind of result decides the figure:
  - bench engine (forward figures): decode tokens/s by batch size, with the speedup over
    batch 1; prefill throughput and the bandwidth used in the title.
  - bench engine --workload shared-prefix: time to first token with the prefix cache off
    and on (mean, p50, p99).
  - bench engine --workload mixed: the short requests' inter-token latency alone, with
    hybrid and with chunked prefill, and the long prompts' time to first token.
  - bench serve (one or several --concurrency levels): time to first token, inter-token
    latency and end-to-end latency percentiles, and tokens/s, over the concurrency.
  - bench serve --workload multi-turn: mean and p99 time to first token and the measured
    KV cache hit rate, by routing policy.
  - bench serve --workload ramp: active and desired replicas over time against in-flight
    tokens (autoscaled run), and time to first token, autoscaled against a fixed replica.
  - bench serve --workload mixed: the short streams' inter-token latency alone and with the
    long prompts arriving, and the long prompts' time to first token.
"""
import json
import sys

try:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit('plotting needs matplotlib: apt-get install python3-matplotlib (scripts/setup.sh does)')

BLUE, ORANGE, GREEN, GREY = '#2563eb', '#ea580c', '#15803d', '#6b7280'


def bars(ax, labels, series, ylabel, log=False):
    """Grouped bars: series is [(name, [values per label], color)]."""
    n = len(series)
    width = 0.8 / n
    for i, (name, values, color) in enumerate(series):
        xs = [x + (i - (n - 1) / 2) * width for x in range(len(labels))]
        rects = ax.bar(xs, values, width, label=name, color=color)
        ax.bar_label(rects, labels=[f'{v:,.0f}' if abs(v) >= 100 else f'{v:.3g}' for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale('log')
    ax.grid(axis='y', alpha=0.3)
    if n > 1:
        ax.legend(fontsize=8)


def forward(r, fig):
    ax = fig.add_subplot(1, 1, 1)
    batches = [d['batch'] for d in r['decode']]
    tps = [d['tokens_per_s'] for d in r['decode']]
    rects = ax.bar([str(b) for b in batches], tps, color=BLUE)
    ax.bar_label(rects, labels=[f'{t:,.1f}\n({d.get("speedup_over_batch_1", 1):.1f}x)' for t, d in zip(tps, r['decode'])],
                 fontsize=8, padding=2)
    ax.set_xlabel('decode batch size (sequences)')
    ax.set_ylabel('decode tokens/s')
    ax.grid(axis='y', alpha=0.3)
    ax.set_ylim(0, max(tps) * 1.25)
    p = r['prefill']
    b1 = next((d for d in r['decode'] if d['batch'] == 1), None)
    bw = f", batch 1 reads {b1['bandwidth_used_gb_s']:.1f} of {r['memory_bandwidth_gb_s']:.1f} GB/s" if b1 and 'bandwidth_used_gb_s' in b1 else ''
    ax.set_title(f"{r.get('model_description', r.get('model', ''))}\n"
                 f"prefill {p['prompt_tokens']} tokens: {p['tokens_per_s']:.1f} tokens/s "
                 f"({p['over_openblas_sgemm']:.2f}x OpenBLAS sgemm alone){bw}", fontsize=9)
    fig.suptitle(f"troupe bench engine: tokens/s by batch size ({r['threads']} threads, {r['isa']})")


def shared_prefix(r, fig):
    w = r['workload']['results']
    ax = fig.add_subplot(1, 1, 1)
    stats = ['mean', 'p50', 'p99']
    bars(ax, stats, [('prefix cache off', [w['cache_off']['ttft_ms'][s] for s in stats], GREY),
                     ('prefix cache on', [w['cache_on']['ttft_ms'][s] for s in stats], BLUE)],
         'time to first token (ms)', log=True)
    ax.set_title(f"{w['requests']} requests sharing a {w['system_prompt_tokens']}-token system prompt: "
                 f"{w['mean_ttft_speedup_with_cache']:.1f}x lower mean TTFT with the cache "
                 f"(hit rate {w['cache_on']['cache_hit_rate']:.2f})", fontsize=9)
    fig.suptitle('troupe bench engine --workload shared-prefix')


def mixed(r, fig):
    w = r['workload']['results']
    modes = [('short only', w['short_only']), ('hybrid', w['hybrid']['short']), ('chunked', w['chunked']['short'])]
    ax = fig.add_subplot(1, 2, 1)
    bars(ax, [m for m, _ in modes], [('p50', [s['itl_ms']['p50'] for _, s in modes], BLUE),
                                     ('p99', [s['itl_ms']['p99'] for _, s in modes], ORANGE)],
         'inter-token latency of the short requests (ms)', log=True)
    ax.set_title('short requests decoding', fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    bars(ax2, ['hybrid', 'chunked'], [('mean', [w[m]['long']['ttft_ms']['mean'] for m in ('hybrid', 'chunked')], GREY)],
         'time to first token of the long prompts (ms)')
    ax2.set_title(f"{w['long_requests']} prompts of {w['long_prompt_tokens']} tokens arriving", fontsize=9)
    fig.suptitle('troupe bench engine --workload mixed: prefill modes')


def serve(r, fig):
    runs = r.get('runs', [r])
    c = [x['concurrency'] for x in runs]
    panels = [('ttft_ms', 'time to first token (ms)'), ('itl_ms', 'inter-token latency (ms)'),
              ('latency_ms', 'end-to-end latency (ms)')]
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(2, 2, i + 1)
        for q, color in (('p50', BLUE), ('p90', ORANGE), ('p99', 'red')):
            ax.plot(c, [x[key][q] for x in runs], marker='o', color=color, label=q)
        ax.set_xscale('log', base=2)
        ax.set_xticks(c, [str(v) for v in c])
        ax.set_xlabel('concurrent streams')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = fig.add_subplot(2, 2, 4)
    ax.plot(c, [x['output_tokens_per_s'] for x in runs], marker='o', color=GREEN, label='output tokens/s')
    ax.set_xscale('log', base=2)
    ax.set_xticks(c, [str(v) for v in c])
    ax.set_xlabel('concurrent streams')
    ax.set_ylabel('output tokens/s')
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(c, [x['requests_per_s'] for x in runs], marker='s', linestyle='--', color=GREY, label='requests/s')
    ax2.set_ylabel('requests/s')
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [l.get_label() for l in lines], fontsize=8, loc='upper left')
    failed = sum(x['requests_failed'] for x in runs)
    fig.suptitle(f"troupe bench serve: {r.get('model', runs[0]['model'])}, {runs[0]['max_tokens']} tokens per request, "
                 f"{failed} failed")


def multi_turn(r, fig):
    runs = r['runs']
    names = [x['routing'] for x in runs]
    ax = fig.add_subplot(1, 2, 1)
    bars(ax, names, [('mean', [x['ttft_ms']['mean'] for x in runs], BLUE),
                     ('p99', [x['ttft_ms']['p99'] for x in runs], ORANGE)], 'time to first token, ms')
    ax = fig.add_subplot(1, 2, 2)
    bars(ax, names, [('kv_cache_hit_rate', [x['kv_cache_hit_rate'] for x in runs], GREEN)], 'KV cache hit rate')
    ax.set_ylim(0, 1.1)
    fig.suptitle(f"troupe bench serve --workload multi-turn: {r['workers']} workers{' (simulated)' if r.get('simulated') else ''}, "
                 f"{r['users']} users x {r['turns']} turns")


def ramp(r, fig):
    scaled, fixed = r['runs'][0], r['runs'][1]
    ax = fig.add_subplot(1, 2, 1)
    s = scaled['samples']
    ax.step(s['t_s'], s['active_replicas'], where='post', color=BLUE, label='active replicas')
    ax.step(s['t_s'], s['desired_replicas'], where='post', color=GREY, linestyle='--', label='desired replicas')
    ax.set_xlabel('seconds')
    ax.set_ylabel('replicas')
    ax.set_ylim(0, max(s['desired_replicas'] + s['active_replicas'] + [1]) + 0.5)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(s['t_s'], s['in_flight_tokens'], color=ORANGE, label='in-flight tokens')
    ax2.axhline(r['autoscaling_settings']['target_in_flight_tokens'], color=ORANGE, linestyle=':', label='target per replica')
    ax2.set_ylabel('in-flight tokens')
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [l.get_label() for l in lines], fontsize=8, loc='upper left')
    ax.set_title('autoscaled run')
    ax = fig.add_subplot(1, 2, 2)
    bars(ax, ['mean', 'p50', 'p90', 'p99'],
         [('autoscaled', [scaled['ttft_ms'][q] for q in ('mean', 'p50', 'p90', 'p99')], BLUE),
          ('fixed single replica', [fixed['ttft_ms'][q] for q in ('mean', 'p50', 'p90', 'p99')], ORANGE)],
         'time to first token, ms')
    ax.set_title(f"requests done: {scaled['requests_ok']} autoscaled, {fixed['requests_ok']} fixed; output tokens/s: "
                 f"{scaled['output_tokens_per_s']:.0f} and {fixed['output_tokens_per_s']:.0f}", fontsize=9)
    failed = scaled['requests_failed'] + fixed['requests_failed']
    fig.suptitle(f"troupe bench serve --workload ramp: up to {r['peak_streams']} streams over {r['duration_s']:.0f} s"
                 f"{' (simulated engines)' if r.get('simulated') else ''}, {failed} failed")


def serve_mixed(r, fig):
    phases = [('decode alone', r['decode_alone']), ('with long prompts', r['mixed']['short'])]
    ax = fig.add_subplot(1, 2, 1)
    bars(ax, [p for p, _ in phases], [('p50', [s['itl_ms']['p50'] for _, s in phases], BLUE),
                                      ('p99', [s['itl_ms']['p99'] for _, s in phases], ORANGE)],
         'inter-token latency of the short streams (ms)')
    ax.set_title(f"{r['short_streams']} streams; p99 ratio {r['short_itl_p99_ms']['mixed_over_alone']:.2f}x", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    t = r['mixed']['long']['ttft_ms']
    bars(ax2, ['p50', 'p90', 'p99'], [('time to first token', [t['p50'], t['p90'], t['p99']], GREY)],
         'time to first token of the long prompts (ms)')
    ax2.set_title(f"{r['mixed']['long']['requests_ok']} prompts of ~{r['mixed']['long']['prompt_tokens_mean']:.0f} tokens, "
                  f"{r['long_rate_per_s']:g}/s", fontsize=9)
    fig.suptitle('troupe bench serve --workload mixed' + (f" ({r['llm_config']})" if r.get('llm_config') else ''))


def kind(r):
    if r.get('workload') == 'mixed':
        return serve_mixed
    if r.get('workload') == 'multi-turn':
        return multi_turn
    if r.get('workload') == 'ramp':
        return ramp
    if 'runs' in r or 'ttft_ms' in r:
        return serve
    if isinstance(r.get('workload'), dict):
        return {'shared-prefix': shared_prefix, 'mixed': mixed}.get(r['workload'].get('name'))
    if 'decode' in r:
        return forward
    return None


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    with open(argv[1]) as f:
        r = json.load(f)
    draw = kind(r)
    if draw is None:
        sys.exit(f'{argv[1]}: not a troupe bench result this script knows how to plot')
    fig = plt.figure(figsize=(11, 7 if draw is serve else 5.5), dpi=110)
    draw(r, fig)
    fig.tight_layout()
    fig.savefig(argv[2])
    print(f'wrote {argv[2]}', file=sys.stderr)


if __name__ == '__main__':
    main(sys.argv)

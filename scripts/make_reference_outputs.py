#!/usr/bin/env python3
"""Writes the test models (make_test_model.py) and, for each, the numpy reference
(reference_forward.py) over a fixed set of prompts: the inputs of the engine's reference
tests. Idempotent: skips the work when OUT/.complete matches this script's version.

  /usr/bin/python3 scripts/make_reference_outputs.py --out DIR"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from progress import Progress  # noqa: E402
import make_test_model  # noqa: E402
import reference_forward  # noqa: E402

VERSION = "5"
GREEDY = 6


def prompts_for(n_vocab, name):
    """Token-id prompts of lengths that cross KV blocks and Mistral's 16-token window."""
    rng = np.random.default_rng(sum(map(ord, name)) + 7)
    return [rng.integers(0, min(n_vocab, 32000), n).tolist() for n in (1, 5, 19, 37)]


def write_reference(model_path, out_base, name):
    """OUT.json, OUT.bin: the exact reference's logits at every prompt position, its greedy
    continuations and their top-2 logit gaps; for models with a fast path that rounds
    (kernels/cpu/matmul.hpp), OUT.fast.bin: the logits with that rounding simulated, and in the
    JSON the largest deviation it causes, relative to the largest logit magnitude."""
    m = reference_forward.model(model_path)
    sim = reference_forward.model(model_path, "fast") if m.has_fast_rounding() else None
    prompts = prompts_for(m.w["model.embed_tokens.weight"].shape[0], name)
    out = {"prompts": []}
    offset = 0
    deviation = 0.0
    with open(out_base + ".bin", "wb") as binf:
        fastf = open(out_base + ".fast.bin", "wb") if sim else None
        for toks in prompts:
            logits = m.forward(toks)
            out["n_vocab"] = int(logits.shape[1])
            binf.write(logits.astype("<f4").tobytes())
            if sim:
                fl = sim.forward(toks)
                fastf.write(fl.astype("<f4").tobytes())
                scale = np.maximum(np.abs(logits).max(axis=1), 1.0)
                deviation = max(deviation, float((np.abs(fl - logits).max(axis=1) / scale).max()))
            seq, greedy, gaps = list(toks), [], []
            cur = logits
            for _ in range(GREEDY):
                top2 = np.sort(cur[-1])[-2:]
                gaps.append(float(top2[1] - top2[0]) / max(float(np.abs(cur[-1]).max()), 1.0))
                nxt = int(np.argmax(cur[-1]))
                greedy.append(nxt)
                seq.append(nxt)
                cur = m.forward(seq)
            out["prompts"].append({"tokens": toks, "greedy": greedy, "logits_offset": offset,
                                   "top2_gaps": gaps})
            offset += logits.size
        if fastf:
            fastf.close()
    if sim:
        out["fast_logit_deviation"] = deviation
    json.dump(out, open(out_base + ".json", "w"))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--test-data", default=os.environ.get(
        "TROUPE_TEST_DATA", os.path.expanduser("~/.cache/troupe/testdata")))
    a = ap.parse_args()
    stamp = os.path.join(a.out, ".complete")
    if os.path.exists(stamp) and open(stamp).read() == VERSION:
        return
    os.makedirs(a.out, exist_ok=True)
    listing = []
    bar = Progress("test models", len(make_test_model.ALL), unit="specs")
    for i, name in enumerate(make_test_model.ALL):
        bar.update(i, name)
        for path in make_test_model.make(name, a.out, a.test_data):
            base = os.path.basename(path.rstrip("/"))
            write_reference(path, os.path.join(a.out, base + ".ref"), name)
            listing.append(base)
    bar.finish(f"{len(listing)} models with reference outputs")
    json.dump(listing, open(os.path.join(a.out, "models.json"), "w"))
    open(stamp, "w").write(VERSION)


if __name__ == "__main__":
    main()

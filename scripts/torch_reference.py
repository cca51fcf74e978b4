#!/usr/bin/python3
"""Writes PyTorch reference outputs of the shipped models for the engine's tests, and prints
sample completions for the model card.

  reference: <models>/troupe-py-7m/reference_greedy.json: a few held-out prompts (text and ids,
             BOS first, as the tokenizer makes them), the target's greedy continuation
             (recomputed from scratch at every step, no cache), a compact fingerprint of the
             logits at the last prompt position (top 16, every 512th id, logsumexp), the
             smallest top-1/top-2 logit margin along the continuation (how close a tie came),
             and, from the same prompt, the first 4 greedy drafts of the draft model, the MTP
             module and the Eagle-3 head (chain based at the last prompt position, with the
             target's first token embedded at step 0, then the head's own).
  --samples: greedy completions of held-out code by the target, as Markdown.

The weights are bf16 and PyTorch computes in float32.
Usage: /usr/bin/python3 scripts/torch_reference.py [--models models] [--samples 3]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import troupe_lm as lm  # noqa: E402
import train_reference_models as trm  # noqa: E402
from bpe_tokenizer import ByteLevelBPE  # noqa: E402


def prompt_texts(n, n_lines, seed, min_chars=80):
    """n held-out snippets of whole lines from validation files (one per file, files chosen
    by seed)."""
    _, val, _ = trm.corpus_split()
    rng = np.random.default_rng(seed)
    out = []
    for fi in rng.permutation(len(val)):
        rel = val[fi]
        with open(os.path.join(trm.CORPUS_DIR, rel), encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
        if len(lines) < n_lines + 5:
            continue
        for _ in range(50):
            s = int(rng.integers(0, len(lines) - n_lines))
            text = "".join(lines[s:s + n_lines])
            # Start at a definition or statement, not in the middle of a blank run.
            if len(text) >= min_chars and lines[s].strip() and not lines[s].startswith(" "):
                out.append(dict(file=rel, first_line=s + 1, text=text))
                break
        if len(out) == n:
            break
    return out


@torch.no_grad()
def greedy_recompute(model, ids, n):
    """The plainest greedy loop: the whole sequence again at every step."""
    seq = torch.tensor([ids])
    margins = []
    for _ in range(n):
        logits = model(seq)[0, -1]
        top2 = torch.topk(logits, 2).values
        margins.append((top2[0] - top2[1]).item())
        seq = torch.cat([seq, logits.argmax().view(1, 1)], dim=1)
    return seq[0, len(ids):].tolist(), min(margins)


@torch.no_grad()
def head_drafts(kind, head, target, ids, first, k):
    """k greedy drafts of a head's chain based at the last prompt position."""
    S = torch.tensor([ids + [first]])
    _, h, aux = target(S[:, :-1], aux_layer_ids=trm.EAGLE_AUX_IDS, return_hidden=True)
    hidden0 = h if kind == "mtp" else torch.cat(aux, dim=-1)
    T = len(ids)
    tokens = torch.cat([S, torch.zeros(1, k, dtype=S.dtype)], dim=1)
    drafts = []
    for j in range(k):
        outs = lm.run_head_chain(kind, head, target.cfg, target.model.embed_tokens, hidden0,
                                 tokens, j + 1)
        o = outs[j][:, T - 1]
        logits = target.head(o) if kind == "mtp" else head.lm_head(o)
        d = int(logits.argmax(-1))
        drafts.append(d)
        tokens[0, T + 1 + j] = d
    return drafts


def r6(x):
    return float(f"{x:.6g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.path.join(trm.ROOT, "models"))
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--lines", type=int, default=6)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--samples", type=int, default=0,
                    help="print this many sample completions (Markdown) instead")
    ap.add_argument("--sample-lines", type=int, default=12)
    ap.add_argument("--sample-tokens", type=int, default=96)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    M = args.models
    tdir = os.path.join(M, trm.TARGET_NAME)
    target = lm.load_llama(tdir)
    tok = ByteLevelBPE.from_tokenizer_json(os.path.join(tdir, "tokenizer.json"))

    if args.samples:
        for p in prompt_texts(args.samples, args.sample_lines, args.seed + 1, min_chars=200):
            ids = [trm.BOS_ID] + tok.encode(p["text"])
            out = lm.greedy_generate(target, torch.tensor([ids]), args.sample_tokens)[0]
            new = out[len(ids):].tolist()
            if trm.BOS_ID in new:
                new = new[:new.index(trm.BOS_ID)]
            print(f"**{p['file']}, from line {p['first_line']}** ({len(ids)} prompt tokens, "
                  f"{len(new)} generated)\n")
            print("```python\n" + p["text"] + "\u2588" + tok.decode(new) + "\n```\n")
        return

    draft = lm.load_llama(os.path.join(M, trm.DRAFT_NAME))
    mtp = lm.load_mtp(os.path.join(M, trm.TARGET_NAME))  # its layer 6
    eagle, _ = lm.load_eagle3(os.path.join(M, trm.EAGLE_NAME))
    cases = []
    for p in prompt_texts(args.prompts, args.lines, args.seed):
        ids = tok.encode(p["text"], add_bos=True, bos_id=trm.BOS_ID)
        with torch.no_grad():
            logits = target(torch.tensor([ids]))[0, -1]
        cont, margin = greedy_recompute(target, ids, args.new_tokens)
        assert lm.greedy_generate(target, torch.tensor([ids]), args.new_tokens)[0, len(ids):] \
            .tolist() == cont, "cached and recomputed greedy differ"
        top = torch.topk(logits, 16)
        dseq, _ = greedy_recompute(draft, ids + [cont[0]], 4)
        cases.append(dict(
            file=p["file"], first_line=p["first_line"], prompt=p["text"], prompt_ids=ids,
            greedy_ids=cont, greedy_text=tok.decode(cont),
            min_top2_margin=round(margin, 4),
            last_logits=dict(
                top=[[int(i), r6(v)] for v, i in zip(top.values.tolist(), top.indices.tolist())],
                every_512th=[[i, r6(logits[i].item())] for i in range(0, trm.VOCAB, 512)]
                + [[trm.VOCAB - 1, r6(logits[-1].item())]],
                logsumexp=r6(torch.logsumexp(logits, 0).item()),
                mean=r6(logits.mean().item())),
            drafts_after_first_token=dict(
                draft_model=dseq,
                mtp=head_drafts("mtp", mtp, target, ids, cont[0], 4),
                eagle3=head_drafts("eagle", eagle, target, ids, cont[0], 4)),
        ))
        print(f"{p['file']}:{p['first_line']}: {len(ids)} prompt tokens, margin "
              f"{margin:.3f}, continuation {tok.decode(cont)!r}", file=sys.stderr)
    ref = dict(
        model=trm.TARGET_NAME,
        note=("PyTorch float32 on the bf16 weights (scripts/torch_reference.py). greedy_ids: "
              "argmax at every step, recomputed over the whole sequence. last_logits: at the "
              "last prompt position. min_top2_margin: the smallest gap between the top two "
              "logits along the continuation (a gap near 0 is a near-tie). "
              "drafts_after_first_token: the first 4 greedy drafts once greedy_ids[0] is "
              "known (draft model: its own greedy continuation of prompt + greedy_ids[0]; "
              "MTP/Eagle-3: the chain based at the last prompt position)."),
        cases=cases)
    out = args.out or os.path.join(tdir, "reference_greedy.json")
    # Compact, one case per line: a few KB.
    with open(out, "w", encoding="utf-8") as f:
        f.write("{\n")
        for key in ("model", "note"):
            f.write(f"{json.dumps(key)}: {json.dumps(ref[key], ensure_ascii=False)},\n")
        f.write('"cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":"))
                            for c in cases))
        f.write("\n]}\n")
    print(f"wrote {out} ({os.path.getsize(out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()

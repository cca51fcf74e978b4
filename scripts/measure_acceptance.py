#!/usr/bin/python3
"""Measures speculative-decoding acceptance of the project's draft model, MTP module and Eagle-3
head against the target, in PyTorch, on held-out code (the validation split of
scripts/train_reference_models.py), under greedy decoding.

For each prompt the target's greedy continuation S is generated first. Under greedy
verification the output is S whatever the drafter proposes, and a drafted token is accepted
exactly when it equals S at its position; a drafter whose first j tokens were accepted has seen
exactly S's tokens, so teacher-forcing the drafters on S gives the same drafts as running them
step by step. The loop then replays decoding: at each verification step with k drafted tokens,
a = the number of leading drafts equal to S (0..k) is recorded and the position advances by
a + 1 (the accepted drafts plus the target's own next token).

  draft model: drafts S[c+1..c+k] from S[0..c] (its own greedy chain)
  MTP, Eagle-3: the chain based at c - 1 (the target's hidden states up to c - 1, then the
                head's own), with the target's token S[c] embedded at step 0

Usage: /usr/bin/python3 scripts/measure_acceptance.py [--models models] [--prompts 32]
       [--prompt-tokens 128] [--new-tokens 128] [--out models/.train/acceptance.json]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import troupe_lm as lm  # noqa: E402
import train_reference_models as trm  # noqa: E402
from bpe_tokenizer import ByteLevelBPE  # noqa: E402


def held_out_prompts(tok, n, n_tokens, seed):
    """n prompts of BOS + n_tokens tokens, each starting at a line start at a random place in
    a validation file (files taken in turn)."""
    _, val, _ = trm.corpus_split()
    rng = np.random.default_rng(seed)
    out = []
    i = 0
    while len(out) < n:
        rel = val[i % len(val)]
        i += 1
        with open(os.path.join(trm.CORPUS_DIR, rel), encoding="utf-8") as f:
            lines = f.read().splitlines(keepends=True)
        for _ in range(20):
            start = int(rng.integers(0, max(1, len(lines) - 10)))
            ids = tok.encode("".join(lines[start:]))
            if len(ids) >= n_tokens:
                out.append(dict(file=rel, line=start + 1,
                                ids=[trm.BOS_ID] + ids[:n_tokens]))
                break
    return out


@torch.no_grad()
def draft_model_predictions(draft, S):
    """[B, L] -> [B, L]: row c = the draft model's greedy token after S[:, :c + 1]."""
    return draft(S).argmax(-1)


@torch.no_grad()
def head_predictions(kind, head, target, S, k):
    """[B, L] -> list of k [B, L - 1]: entry j, row i = step j of the chain based at i (given
    S[i + 1 .. i + j] embedded), i.e. the head's guess for S[i + 2 + j]."""
    B, L = S.shape
    _, h, aux = target(S, aux_layer_ids=trm.EAGLE_AUX_IDS, return_hidden=True)
    hidden0 = h if kind == "mtp" else torch.cat(aux, dim=-1)
    T = L - 1
    tokens = torch.cat([S, torch.zeros(B, k, dtype=S.dtype)], dim=1)
    outs = lm.run_head_chain(kind, head, target.cfg, target.model.embed_tokens,
                             hidden0[:, :T], tokens, k)
    preds = []
    for o in outs:
        logits = target.head(o) if kind == "mtp" else head.lm_head(o)
        preds.append(logits.argmax(-1))
    return preds


def replay(S, P, k, drafts_at):
    """S: one row's tokens (list); P: prompt length. drafts_at(c) -> k drafted tokens for
    S[c + 1 .. c + k]. Returns the accepted count of every verification step."""
    acc = []
    c = P
    while c + k < len(S):
        d = drafts_at(c)
        a = 0
        while a < k and d[a] == S[c + 1 + a]:
            a += 1
        acc.append(a)
        c += a + 1
    return acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.path.join(trm.ROOT, "models"))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--max-k", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="default: <models>/.train/acceptance.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    M = args.models
    target = lm.load_llama(os.path.join(M, trm.TARGET_NAME))
    draft = lm.load_llama(os.path.join(M, trm.DRAFT_NAME))
    mtp = lm.load_mtp(os.path.join(M, trm.TARGET_NAME))  # its layer 6
    eagle, _ = lm.load_eagle3(os.path.join(M, trm.EAGLE_NAME))
    tok = ByteLevelBPE.from_tokenizer_json(os.path.join(M, trm.TARGET_NAME, "tokenizer.json"))
    prompts = held_out_prompts(tok, args.prompts, args.prompt_tokens, args.seed)
    P = args.prompt_tokens + 1
    K = args.max_k
    methods = ["draft", "mtp", "eagle3"]
    acc = {m: {k: [] for k in range(1, K + 1)} for m in methods}
    for b0 in range(0, len(prompts), args.batch):
        batch = torch.tensor([p["ids"] for p in prompts[b0:b0 + args.batch]])
        S = lm.greedy_generate(target, batch, args.new_tokens)
        dpred = draft_model_predictions(draft, S)
        mpred = head_predictions("mtp", mtp, target, S, K)
        epred = head_predictions("eagle", eagle, target, S, K)
        for r in range(S.shape[0]):
            s = S[r].tolist()
            dp = dpred[r].tolist()
            mp = [p[r].tolist() for p in mpred]
            ep = [p[r].tolist() for p in epred]
            for k in range(1, K + 1):
                # The draft model chains its own greedy tokens; on an all-accepted prefix its
                # context is S, so its j-th draft is its prediction at position c + j.
                acc["draft"][k] += replay(s, P, k, lambda c: [dp[c + j] for j in range(k)])
                acc["mtp"][k] += replay(s, P, k, lambda c: [mp[j][c - 1] for j in range(k)])
                acc["eagle3"][k] += replay(s, P, k, lambda c: [ep[j][c - 1] for j in range(k)])
        print(f"{min(b0 + args.batch, len(prompts))}/{len(prompts)} prompts "
              f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    res = dict(prompts=len(prompts), prompt_tokens=P, new_tokens=args.new_tokens,
               seed=args.seed, results={})
    for m in methods:
        res["results"][m] = {}
        for k in range(1, K + 1):
            a = np.array(acc[m][k], dtype=np.float64)
            res["results"][m][str(k)] = dict(
                verify_steps=int(a.size),
                mean_accepted=round(float(a.mean()), 3),
                acceptance_rate=round(float(a.mean() / k), 3),
                tokens_per_target_pass=round(float(a.mean() + 1), 3),
                # P(draft j accepted | drafts before it accepted), j = 1..k
                per_position=[round(float((a >= j).sum() / max(1, (a >= j - 1).sum())), 3)
                              for j in range(1, k + 1)])
    res["seconds"] = round(time.time() - t0, 1)
    out = args.out or os.path.join(M, ".train", "acceptance.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    trm.write_json(out, res)
    print("mean accepted draft tokens per verification step (greedy), k = 1..%d" % K)
    print("| drafter | " + " | ".join(f"k={k}" for k in range(1, K + 1)) + " |")
    print("|---|" + "---|" * K)
    for m in methods:
        cells = [f"{res['results'][m][str(k)]['mean_accepted']:.2f}" for k in range(1, K + 1)]
        print(f"| {m} | " + " | ".join(cells) + " |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

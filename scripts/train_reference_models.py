#!/usr/bin/python3
"""Trains the project's own small models from scratch, reproducibly, and writes them to models/:

  troupe-py-7m/      the default target: LlamaForCausalLM, GQA, tied embeddings
  troupe-py-draft/   a draft model with the same tokenizer, ~1/4 of the target's compute
  troupe-py-7m/ also holds an MTP module in the DeepSeek-V3 form (its model.layers.6.*), trained on
                     the frozen target and folded in by scripts/fold_mtp_into_target.py
  troupe-py-eagle3/  an Eagle-3 head, trained on the frozen target (speculative_model_dir)
  troupe-py-7m.gguf  the target again as GGUF (bf16), via scripts/hf_to_gguf.py

Data: the Python standard library that Debian's python3.11 installs (/usr/lib/python3.11, PSF
license), split into train and validation by file. Tokenizer: byte-level BPE, 8192 entries,
trained here on the training split (scripts/bpe_tokenizer.py).

Set-up (Debian 12): apt-get install python3-torch python3-numpy python3-regex
libopenblas0-pthread. Without libopenblas0-pthread, torch falls back to the reference BLAS and
training is ~10x slower; the script checks the matmul speed and refuses to start a long run
below --min-gflops. Always run with Debian's /usr/bin/python3 (it has torch).

Usage:
  nice -n 19 /usr/bin/python3 scripts/train_reference_models.py            # everything
  /usr/bin/python3 scripts/train_reference_models.py --scale tiny --out /tmp/m --work /tmp/w
  ... --stages target,export          # run only some stages (each skips itself when done)
  ... --stages eagle_ft,export_eagle  # go on training the Eagle-3 head, export it alone

Training runs matmuls in bf16 under torch.autocast (oneDNN's AVX512-BF16 GEMMs: about half the
CPU time of OpenBLAS fp32 here) with fp32 master weights; --fp32 turns that off. Evaluation and
everything exported run in fp32 on the bf16-rounded weights.

Resumable: every training stage checkpoints to <work>/<stage>/ckpt.pt (work defaults to
models/.train, git-ignored) and resumes from it when started again; a finished stage leaves
<work>/<stage>/done.json and is skipped. Loss logs: <work>/<stage>/loss.tsv; progress on stderr.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import troupe_lm as lm  # noqa: E402
from progress import Progress  # noqa: E402
from bpe_tokenizer import ByteLevelBPE, train_bpe  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_DIR = "/usr/lib/python3.11"
SEED = 1234
VOCAB = 8192
BOS = "<|endoftext|>"
BOS_ID = VOCAB - 1
CONTEXT = 1024

TARGET_NAME, DRAFT_NAME, MTP_NAME, EAGLE_NAME = \
    "troupe-py-7m", "troupe-py-draft", "troupe-py-mtp", "troupe-py-eagle3"

COMMON = dict(model_type="llama", vocab_size=VOCAB, hidden_act="silu",
              max_position_embeddings=CONTEXT, rms_norm_eps=1e-5, rope_theta=10000.0,
              rope_scaling=None, attention_bias=False, mlp_bias=False, bos_token_id=BOS_ID,
              eos_token_id=BOS_ID, torch_dtype="bfloat16", initializer_range=0.02, use_cache=True)
TARGET_CFG = dict(architectures=["LlamaForCausalLM"], hidden_size=256, intermediate_size=768,
                  num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2, head_dim=32,
                  tie_word_embeddings=True, **COMMON)
DRAFT_CFG = dict(architectures=["LlamaForCausalLM"], hidden_size=128, intermediate_size=384,
                 num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                 tie_word_embeddings=True, **COMMON)
# The MTP module reuses the target's shapes; its one layer takes index num_hidden_layers.
MTP_CFG = dict(TARGET_CFG, architectures=["LlamaMTPModel"], num_nextn_predict_layers=1)
EAGLE_AUX_IDS = [1, 3, 5]  # vLLM convention: id j = the residual stream after layer j - 1
EAGLE_CFG = dict(architectures=["LlamaForCausalLMEagle3"], hidden_size=256,
                 intermediate_size=768, num_hidden_layers=1, num_attention_heads=8,
                 num_key_value_heads=2, head_dim=32, tie_word_embeddings=False,
                 draft_vocab_size=VOCAB, target_hidden_size=256,
                 eagle_aux_hidden_state_layer_ids=EAGLE_AUX_IDS, **COMMON)

# Training plans. tokens per step = batch * seq; "long" switches to full-context windows for
# the last fraction of the steps so that every position up to CONTEXT is trained.
SCALES = {
    "full": dict(
        target=dict(steps=1400, batch=16, seq=256, long_frac=0.1, long_batch=4, lr=2e-3,
                    warmup=60),
        draft=dict(steps=700, batch=16, seq=256, long_frac=0.1, long_batch=4, lr=3e-3,
                   warmup=40),
        mtp=dict(steps=250, batch=16, seq=256, long_frac=0.1, long_batch=4, lr=2e-3,
                 warmup=20, chain=4),
        eagle=dict(steps=280, batch=16, seq=256, long_frac=0.1, long_batch=4, lr=2e-3,
                   warmup=20, chain=4),
        eagle_ft=dict(steps=150, batch=8, seq=256, long_frac=0.1, long_batch=2, lr=1.5e-3,
                      warmup=10, chain=3),
        eval_windows=None, ckpt_every=25, log_every=5),
    "tiny": dict(
        target=dict(steps=6, batch=2, seq=64, long_frac=0.34, long_batch=1, lr=2e-3, warmup=2),
        draft=dict(steps=4, batch=2, seq=64, long_frac=0.5, long_batch=1, lr=3e-3, warmup=1),
        mtp=dict(steps=3, batch=2, seq=64, long_frac=0.34, long_batch=1, lr=2e-3, warmup=1,
                 chain=4),
        eagle=dict(steps=3, batch=2, seq=64, long_frac=0.34, long_batch=1, lr=2e-3, warmup=1,
                   chain=4),
        eagle_ft=dict(steps=3, batch=2, seq=64, long_frac=0.34, long_batch=1, lr=1.5e-3,
                      warmup=1, chain=3),
        eval_windows=4, ckpt_every=2, log_every=1),
}
STAGES = ["data", "tokenizer", "target", "draft", "mtp", "eagle", "export", "eval"]
# Run only when named in --stages: eagle_ft goes on training the Eagle-3 head with the target's
# head (frozen) and final norm put in (issue 16's attempt; it accepted less than the eagle
# stage's head, so the shipped head is still eagle's), export_eagle exports the Eagle-3 head
# alone (eagle_ft's when that stage has run).
EXTRA_STAGES = ["eagle_ft", "export_eagle"]
ORDER = ["data", "tokenizer", "target", "draft", "mtp", "eagle", "eagle_ft", "export",
         "export_eagle", "eval"]


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------

def log(msg):
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_blas(min_gflops):
    a = torch.randn(512, 512)
    b = torch.randn(512, 512)
    a @ b
    t = time.time()
    n = 0
    while time.time() - t < 0.5:
        a @ b
        n += 1
    gflops = n * 2 * 512 ** 3 / (time.time() - t) / 1e9
    log(f"matmul: {gflops:.1f} GFLOP/s (torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads)")
    if gflops < min_gflops:
        sys.exit(f"matmul runs at {gflops:.1f} GFLOP/s: torch is probably on the reference "
                 "BLAS. Install libopenblas0-pthread (or pass --min-gflops 0).")
    return gflops


# ----------------------------------------------------------------------------------------------
# Data: corpus split and tokenizer
# ----------------------------------------------------------------------------------------------

def is_generated(rel, head):
    """Machine-generated tables rather than code: the charmap codecs (gencodec.py), pydoc's
    topic dump (Sphinx) and the sysconfig data dumps."""
    return ("gencodec.py" in head or "Autogenerated by Sphinx" in head
            or os.path.basename(rel).startswith("_sysconfigdata"))


def corpus_split():
    """-> (train, validation, skipped): relative paths under CORPUS_DIR, deterministic."""
    files = []
    for root, dirs, names in os.walk(CORPUS_DIR):
        # tkinter and idlelib come in their own Debian packages (python3-tk, idle-python3.11):
        # left out so that the split does not depend on whether they are installed.
        dirs[:] = sorted(d for d in dirs if d not in ("dist-packages", "site-packages",
                                                      "__pycache__", "tkinter", "idlelib"))
        for n in sorted(names):
            if n.endswith(".py"):
                files.append(os.path.relpath(os.path.join(root, n), CORPUS_DIR))
    train, val, skipped = [], [], []
    for rel in files:
        with open(os.path.join(CORPUS_DIR, rel), "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append((rel, "not UTF-8"))
            continue
        if is_generated(rel, text[:2000]):
            skipped.append((rel, "generated"))
            continue
        # By file, from a hash of the path: about 1 file in 20 is held out.
        h = int(hashlib.sha256(rel.encode()).hexdigest()[:8], 16)
        (val if h % 20 == 0 else train).append(rel)
    return train, val, skipped


def stage_data(work, args):
    train, val, skipped = corpus_split()
    info = dict(corpus_dir=CORPUS_DIR, rule="sha256(relative path) % 20 == 0 -> validation",
                train=train, validation=val, skipped=skipped)
    write_json(os.path.join(work, "corpus.json"), info)
    log(f"corpus: {len(train)} train files, {len(val)} validation files, "
        f"{len(skipped)} skipped (generated tables)")


def read_texts(rels):
    out = []
    for rel in rels:
        with open(os.path.join(CORPUS_DIR, rel), encoding="utf-8") as f:
            out.append(f.read())
    return out


def stage_tokenizer(work, args):
    corpus = read_json(os.path.join(work, "corpus.json"))
    train_texts = read_texts(corpus["train"])
    val_texts = read_texts(corpus["validation"])
    t0 = time.time()
    bar = Progress("bpe", VOCAB - 1, 256)
    merges, id_bytes = train_bpe(
        train_texts, VOCAB - 1,
        progress=lambda n: bar.update(n) if n % 500 == 0 or n == VOCAB - 1 else None)
    tok = ByteLevelBPE(merges, [BOS])
    assert tok.vocab_size == VOCAB and tok.special[BOS] == BOS_ID
    assert tok.id_bytes == id_bytes
    log(f"bpe: {len(merges)} merges, {len(id_bytes)} byte tokens + 1 special "
        f"in {time.time() - t0:.1f} s")
    path = os.path.join(work, "tokenizer.json")
    write_json(path, tok.tokenizer_json(BOS))
    # Read the file back and check the round trip on the held-out text.
    tok2 = ByteLevelBPE.from_tokenizer_json(path)
    n_val_bytes = 0
    for t in val_texts:
        ids = tok2.encode(t)
        assert tok2.decode_bytes(ids) == t.encode("utf-8"), "tokenizer round trip failed"
        n_val_bytes += len(t.encode("utf-8"))
    log(f"tokenizer: lossless round trip on {len(val_texts)} validation files "
        f"({n_val_bytes} bytes)")
    stats = {}
    for name, texts in (("train", train_texts), ("val", val_texts)):
        stream = []
        for t in texts:
            stream.append(BOS_ID)
            stream.extend(tok2.encode(t))
        arr = np.array(stream, dtype=np.uint16)
        np.save(os.path.join(work, f"{name}.npy"), arr)
        nb = sum(len(t.encode("utf-8")) for t in texts)
        stats[name] = dict(files=len(texts), bytes=nb, tokens=int(arr.size),
                           bytes_per_token=round(nb / arr.size, 3))
        log(f"{name}: {len(texts)} files, {nb} bytes, {arr.size} tokens "
            f"({nb / arr.size:.2f} bytes/token, one {BOS} per file)")
    write_json(os.path.join(work, "tokens.json"), stats)


# ----------------------------------------------------------------------------------------------
# Training loop shared by all models
# ----------------------------------------------------------------------------------------------

AUTOCAST = True


def amp():
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=AUTOCAST)


def lr_at(step, plan):
    if step < plan["warmup"]:
        return plan["lr"] * (step + 1) / plan["warmup"]
    p = (step - plan["warmup"]) / max(1, plan["steps"] - plan["warmup"])
    return plan["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def batch_shape(step, plan):
    n_long = int(round(plan["steps"] * plan.get("long_frac", 0)))
    if step >= plan["steps"] - n_long:
        return plan["long_batch"], min(CONTEXT, plan["seq"] * plan["batch"] // plan["long_batch"])
    return plan["batch"], plan["seq"]


def sample_batch(stream, step, B, L, seed):
    """Windows of L tokens at random offsets, fixed by (seed, step) so a resumed run sees the
    same batches."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, stream.size - L, size=B)
    return torch.from_numpy(np.stack([stream[s:s + L] for s in starts]).astype(np.int64))


def make_optimizer(params, lr):
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8)


def train_loop(name, work, plan, scale, module, loss_fn, seed):
    """Runs plan["steps"] optimizer steps of loss_fn(step) -> (loss, n_tokens), resumable."""
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    done_path = os.path.join(d, "done.json")
    if os.path.exists(done_path):
        module.load_state_dict(torch.load(os.path.join(d, "final.pt")))
        log(f"{name}: already trained, skipping")
        return read_json(done_path)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = make_optimizer(params, plan["lr"])
    ckpt_path = os.path.join(d, "ckpt.pt")
    step, tokens, elapsed, cpu = 0, 0, 0.0, 0.0
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        module.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, tokens, elapsed, cpu = ck["step"], ck["tokens"], ck["elapsed"], ck["cpu"]
        torch.set_rng_state(ck["torch_rng"])
        log(f"{name}: resuming at step {step} ({tokens} tokens, {elapsed / 60:.1f} min so far)")
        # Drop the log lines of steps that ran after the checkpoint; they run again.
        with open(os.path.join(d, "loss.tsv")) as f:
            lines = f.readlines()
        keep = [ln for ln in lines[1:] if int(ln.split("\t")[0]) <= step]
        with open(os.path.join(d, "loss.tsv"), "w") as f:
            f.writelines(lines[:1] + keep)
    else:
        torch.manual_seed(seed)
        with open(os.path.join(d, "loss.tsv"), "w") as f:
            f.write("step\ttokens\tloss\tlr\telapsed_s\tcpu_s\n")
    bar = Progress(name, plan["steps"], step, "steps")
    module.train()
    t_last_ckpt = time.time()
    smooth = None
    while step < plan["steps"]:
        t0, c0 = time.time(), time.process_time()
        lr = lr_at(step, plan)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, n_tok = loss_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        tokens += n_tok
        elapsed += time.time() - t0
        cpu += time.process_time() - c0
        lv = loss.item()
        smooth = lv if smooth is None else 0.9 * smooth + 0.1 * lv
        with open(os.path.join(d, "loss.tsv"), "a") as f:
            f.write(f"{step}\t{tokens}\t{lv:.5f}\t{lr:.3e}\t{elapsed:.1f}\t{cpu:.1f}\n")
        if step % scale["log_every"] == 0 or step == plan["steps"]:
            bar.update(step, f"loss {smooth:.3f} {tokens / max(elapsed, 1e-9):5.0f} tok/s")
        if step % scale["ckpt_every"] == 0 or time.time() - t_last_ckpt > 300 \
                or step == plan["steps"]:
            torch.save(dict(model=module.state_dict(), opt=opt.state_dict(), step=step,
                            tokens=tokens, elapsed=elapsed, cpu=cpu, torch_rng=torch.get_rng_state()),
                       ckpt_path + ".tmp")
            os.replace(ckpt_path + ".tmp", ckpt_path)
            t_last_ckpt = time.time()
    bar.finish(f"loss {smooth:.3f}" if smooth is not None else "")
    torch.save(module.state_dict(), os.path.join(d, "final.pt"))
    info = dict(steps=step, tokens=tokens, train_seconds=round(elapsed, 1),
                train_cpu_seconds=round(cpu, 1),
                final_train_loss=round(smooth, 4), plan=plan)
    write_json(done_path, info)
    os.remove(ckpt_path)
    log(f"{name}: done, {tokens} tokens in {elapsed / 60:.1f} min")
    return info


def load_stream(work, name):
    return np.load(os.path.join(work, f"{name}.npy"))


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------------------
# Stages: target and draft (plain language models)
# ----------------------------------------------------------------------------------------------

def stage_lm(work, args, scale, which):
    cfg = TARGET_CFG if which == "target" else DRAFT_CFG
    plan = scale[which]
    torch.manual_seed(SEED)
    model = lm.LlamaForCausalLM(cfg)
    lm.init_weights(model, cfg["num_hidden_layers"])
    log(f"{which}: {n_params(model)} parameters")
    stream = load_stream(work, "train")
    teacher = None
    if which == "draft":
        # Distilled from the shipped (bf16) target: matching the target's distribution is what
        # speculative acceptance rewards.
        teacher = load_target(work)

    def loss_fn(step):
        B, T = batch_shape(step, plan)
        ids = sample_batch(stream, step, B, T + 1, SEED + (1 if which == "draft" else 0))
        with amp():
            logits = model(ids[:, :-1])
        logits = logits.float()
        if teacher is None:
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        else:
            with torch.no_grad(), amp():
                tl = teacher(ids[:, :-1])
            p = torch.softmax(tl.float(), dim=-1)
            ce_soft = -(p * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
            ce_data = F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
            loss = 0.8 * ce_soft + 0.2 * ce_data
        return loss, B * T

    info = train_loop(which, work, plan, scale, model, loss_fn, SEED)
    info["parameters"] = n_params(model)
    write_json(os.path.join(work, which, "done.json"), info)
    # The shipped weights are bf16: keep the rounded copy for everything downstream.
    lm.round_to_bf16_(model)
    torch.save(model.state_dict(), os.path.join(work, which, "final_bf16.pt"))


def load_target(work):
    m = lm.LlamaForCausalLM(TARGET_CFG)
    m.load_state_dict(torch.load(os.path.join(work, "target", "final_bf16.pt")))
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


# ----------------------------------------------------------------------------------------------
# Stages: MTP module and Eagle-3 head on the frozen target
# ----------------------------------------------------------------------------------------------

def head_features(kind, target, ids):
    """Runs the frozen target on ids [B, L] -> (step-0 hidden input, target logits)."""
    with torch.no_grad():
        logits, h, aux = target(ids, aux_layer_ids=EAGLE_AUX_IDS, return_hidden=True)
        hidden0 = h if kind == "mtp" else torch.cat(aux, dim=-1)
    return hidden0, logits


def head_losses(kind, head, target, ids, n_steps, T):
    """Soft cross entropy of each chain step against the target's own next-token distribution.

    ids: [B, T + n_steps]. Step j's row i predicts token i + 2 + j, which the target predicts
    from its logits at position i + 1 + j."""
    with amp():
        hidden0, tlogits = head_features(kind, target, ids)
        outs = lm.run_head_chain(kind, head, TARGET_CFG, target.model.embed_tokens,
                                 hidden0[:, :T], ids, n_steps)
    losses = []
    for j, o in enumerate(outs):
        with amp():
            logits = target.head(o) if kind == "mtp" else head.lm_head(o)
        logits = logits.float()
        p = torch.softmax(tlogits[:, 1 + j:1 + j + T].float(), dim=-1)
        losses.append(-(p * torch.log_softmax(logits, dim=-1)).sum(-1).mean())
    return losses


def make_head(kind, target, work):
    torch.manual_seed(SEED + 2)
    if kind == "mtp":
        head = lm.MTPModule(MTP_CFG)
        lm.init_weights(head, 2)
    else:
        head = lm.Eagle3Head(EAGLE_CFG)
        if kind == "eagle":
            lm.init_weights(head, 2)
        else:
            # eagle_ft goes on from the first run's head (stage eagle)...
            head.load_state_dict(torch.load(os.path.join(work, "eagle", "final_bf16.pt")))
        with torch.no_grad():
            # Start the head's own lm_head from the target's (tied) output embedding.
            head.lm_head.weight.copy_(target.model.embed_tokens.weight)
        if kind == "eagle_ft":
            # ... with the target's trained pieces put back: its output embedding as lm_head,
            # now frozen as MTP keeps the target's head (the file still stores it, as Eagle-3
            # checkpoints do), and its final norm as the head's norm.
            with torch.no_grad():
                head.norm.weight.copy_(target.model.norm.weight)
            head.lm_head.weight.requires_grad_(False)
    return head


def stage_head(work, args, scale, kind):
    plan = scale[kind]
    target = load_target(work)
    head = make_head(kind, target, work)
    log(f"{kind}: {n_params(head)} parameters, "
        f"{sum(p.numel() for p in head.parameters() if p.requires_grad)} trainable, "
        "on the frozen target")
    stream = load_stream(work, "train")
    n_steps = plan["chain"]
    weights = [0.8 ** j for j in range(n_steps)]

    def loss_fn(step):
        B, T = batch_shape(step, plan)
        T = min(T, CONTEXT - n_steps)
        ids = sample_batch(stream, step, B, T + n_steps,
                           SEED + {"mtp": 2, "eagle": 3, "eagle_ft": 4}[kind])
        losses = head_losses("mtp" if kind == "mtp" else "eagle", head, target, ids, n_steps, T)
        loss = sum(w * l for w, l in zip(weights, losses)) / sum(weights)
        return loss, B * T

    info = train_loop(kind, work, plan, scale, head, loss_fn, SEED + 2)
    info["parameters"] = n_params(head)
    write_json(os.path.join(work, kind, "done.json"), info)
    lm.round_to_bf16_(head)
    torch.save(head.state_dict(), os.path.join(work, kind, "final_bf16.pt"))


# ----------------------------------------------------------------------------------------------
# Export to the Hugging Face layout
# ----------------------------------------------------------------------------------------------

CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ message['content'] }}\n"
                 "{% endfor %}")


def write_tokenizer_files(work, d):
    shutil.copyfile(os.path.join(work, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    write_json(os.path.join(d, "tokenizer_config.json"), {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(BOS_ID): {
            "content": BOS, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True}},
        "bos_token": BOS,
        "eos_token": BOS,
        "clean_up_tokenization_spaces": False,
        "model_max_length": CONTEXT,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    })
    write_json(os.path.join(d, "generation_config.json"), {
        "bos_token_id": BOS_ID, "eos_token_id": BOS_ID, "max_length": CONTEXT,
        "do_sample": False})


def stage_export(work, args, scale):
    out = args.out
    meta = {"format": "pt"}
    for which, name, cfg in (("target", TARGET_NAME, TARGET_CFG),
                             ("draft", DRAFT_NAME, DRAFT_CFG)):
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        sd = torch.load(os.path.join(work, which, "final_bf16.pt"))
        lm.save_safetensors(os.path.join(d, "model.safetensors"), sd, meta)
        write_json(os.path.join(d, "config.json"), cfg)
        write_tokenizer_files(work, d)
        log(f"wrote {d}")
    # The target also as GGUF (bf16 matrices, the tokenizer in its metadata), beside its folder.
    gguf = os.path.join(out, TARGET_NAME + ".gguf")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "hf_to_gguf.py"),
                    os.path.join(out, TARGET_NAME), gguf, "--outtype", "bf16"], check=True)
    log(f"wrote {gguf}")
    # The MTP module goes inside the target's checkpoint (DeepSeek-V3's layout: its layer is
    # model.layers.6.*, config.json says num_nextn_predict_layers), after the GGUF file was
    # written from the target alone.
    d = os.path.join(work, MTP_NAME)
    os.makedirs(d, exist_ok=True)
    head = lm.MTPModule(MTP_CFG)
    head.load_state_dict(torch.load(os.path.join(work, "mtp", "final_bf16.pt")))
    lm.save_safetensors(os.path.join(d, "model.safetensors"),
                        head.export_tensors(MTP_CFG["num_hidden_layers"]), meta)
    write_json(os.path.join(d, "config.json"), MTP_CFG)
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "fold_mtp_into_target.py"),
                    "--target", os.path.join(out, TARGET_NAME), "--mtp", d], check=True)
    log(f"folded {d} into {os.path.join(out, TARGET_NAME)}")
    export_eagle(work, out, "eagle")


def export_eagle(work, out, stage):
    """The Eagle-3 head alone, as trained by stage (eagle or eagle_ft): retraining the head
    leaves the target's, the draft model's and the GGUF file's bytes as they are."""
    meta = {"format": "pt"}
    d = os.path.join(out, EAGLE_NAME)
    os.makedirs(d, exist_ok=True)
    head = lm.Eagle3Head(EAGLE_CFG)
    head.load_state_dict(torch.load(os.path.join(work, stage, "final_bf16.pt")))
    lm.save_safetensors(os.path.join(d, "model.safetensors"), head.export_tensors(), meta)
    write_json(os.path.join(d, "config.json"), EAGLE_CFG)
    write_tokenizer_files(work, d)
    log(f"wrote {d}")


# ----------------------------------------------------------------------------------------------
# Evaluation of the exported files on the validation split
# ----------------------------------------------------------------------------------------------

def eval_windows(stream, L, limit):
    n = (stream.size - 1) // L
    if limit:
        n = min(n, limit)
    return [torch.from_numpy(stream[i * L:i * L + L + 1].astype(np.int64))[None]
            for i in range(n)]


@torch.no_grad()
def stage_eval(work, args, scale):
    out = args.out
    val = load_stream(work, "val")
    target = lm.load_llama(os.path.join(out, TARGET_NAME))
    draft = lm.load_llama(os.path.join(out, DRAFT_NAME))
    mtp = lm.load_mtp(os.path.join(out, TARGET_NAME))
    eagle, _ = lm.load_eagle3(os.path.join(out, EAGLE_NAME))
    results = {}
    # Language models: next-token loss over non-overlapping full-context windows.
    L = CONTEXT
    for name, m in (("target", target), ("draft", draft)):
        tot, n = 0.0, 0
        for w in eval_windows(val, L, scale["eval_windows"]):
            logits = m(w[:, :-1])
            tot += F.cross_entropy(logits[0], w[0, 1:], reduction="sum").item()
            n += w.shape[1] - 1
        results[name] = dict(val_loss=round(tot / n, 4), val_ppl=round(math.exp(tot / n), 3),
                             val_tokens=n)
        log(f"eval {name}: loss {tot / n:.4f} ppl {math.exp(tot / n):.2f} on {n} tokens")
    # Heads: step-0 loss on the token after next (the data's), and top-1 agreement of each
    # teacher-forced chain step with the target's own greedy choice.
    n_steps = 4
    for name, kind, head in (("mtp", "mtp", mtp), ("eagle3", "eagle", eagle)):
        tot = [0.0] * n_steps
        agree = [0] * n_steps
        n = 0
        for w in eval_windows(val, L, scale["eval_windows"]):
            T = w.shape[1] - 1 - n_steps
            hidden0, tlogits = head_features(kind, target, w[:, :-1])
            outs = lm.run_head_chain(kind, head, TARGET_CFG, target.model.embed_tokens,
                                     hidden0[:, :T], w, n_steps)
            for j, o in enumerate(outs):
                logits = target.head(o) if kind == "mtp" else head.lm_head(o)
                tot[j] += F.cross_entropy(logits[0], w[0, 2 + j:2 + j + T],
                                          reduction="sum").item()
                agree[j] += (logits[0].argmax(-1) == tlogits[0, 1 + j:1 + j + T].argmax(-1)) \
                    .sum().item()
            n += T
        results[name] = dict(
            val_loss=round(tot[0] / n, 4), val_ppl=round(math.exp(tot[0] / n), 3),
            val_tokens=n,
            val_loss_by_step=[round(t / n, 4) for t in tot],
            top1_agreement_with_target_by_step=[round(a / n, 4) for a in agree])
        log(f"eval {name}: step-0 loss {tot[0] / n:.4f} ppl {math.exp(tot[0] / n):.2f}, "
            f"agreement {[round(a / n, 3) for a in agree]}")
    write_json(os.path.join(work, "eval.json"), results)


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--out", default=os.path.join(ROOT, "models"))
    ap.add_argument("--work", default=None, help="default: <out>/.train")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (OpenBLAS runs its own pool)")
    ap.add_argument("--min-gflops", type=float, default=15.0)
    ap.add_argument("--fp32", action="store_true", help="train without bf16 autocast")
    args = ap.parse_args()
    global AUTOCAST
    AUTOCAST = not args.fp32
    work = args.work or os.path.join(args.out, ".train")
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(args.threads)
    scale = SCALES[args.scale]
    stages = args.stages.split(",")
    for s in stages:
        if s not in STAGES + EXTRA_STAGES:
            sys.exit(f"unknown stage {s}; stages: {','.join(STAGES + EXTRA_STAGES)}")
    check_blas(args.min_gflops)
    t_all = time.time()
    timings_path = os.path.join(work, "timings.json")
    timings = read_json(timings_path) if os.path.exists(timings_path) else {}
    for s in ORDER:
        if s not in stages:
            continue
        t0 = time.time()
        if s == "data":
            stage_data(work, args)
        elif s == "tokenizer":
            if not os.path.exists(os.path.join(work, "tokens.json")):
                stage_tokenizer(work, args)
        elif s in ("target", "draft"):
            stage_lm(work, args, scale, s)
        elif s in ("mtp", "eagle", "eagle_ft"):
            stage_head(work, args, scale, s)
        elif s == "export":
            stage_export(work, args, scale)
        elif s == "export_eagle":
            ft = os.path.exists(os.path.join(work, "eagle_ft", "done.json"))
            export_eagle(work, args.out, "eagle_ft" if ft else "eagle")
        elif s == "eval":
            stage_eval(work, args, scale)
        timings[s] = round(timings.get(s, 0) + time.time() - t0, 1)
        write_json(timings_path, timings)
    log(f"all done in {(time.time() - t_all) / 60:.1f} min (wall clock, this invocation)")


if __name__ == "__main__":
    main()

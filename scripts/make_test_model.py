#!/usr/bin/env python3
"""Writes small random-weight test models, for every architecture troupe serves, with real
tokenizers: a Hugging Face directory per dtype (f32, f16, bf16) and a GGUF file per dtype
(f32, f16, bf16, q8_0, q4_0), all holding the same underlying weights; and, as NAME-k, a
256-wide twin of each (the K types quantize blocks of 256) as GGUF files of llama-quantize's
Q4_K_M recipe (and, for llama2-k, Q5_K_M and Q6_K), converted from an f32 source directory.

  /usr/bin/python3 scripts/make_test_model.py --out DIR [--only llama3 ...] [--test-data DIR]

Tokenizers come from the fetched test data (scripts/fetch_test_data.sh): the Hugging Face
tokenizer.json of Llama 2, Llama 3 and Qwen3, and, for the GGUF twins, the tokenizer metadata
of llama.cpp's matching vocab files."""
import argparse
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_to_gguf  # noqa: E402
import model_files as mf  # noqa: E402

# name: (architecture, tokenizer, vocab gguf, config overrides)
SPECS = {
    "llama2": ("LlamaForCausalLM", "llama2", "llama-spm", dict(
        num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
        rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2)),
    "llama3": ("LlamaForCausalLM", "llama3", "llama-bpe", dict(
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        rms_norm_eps=1e-5, rope_theta=500000.0, bos_token_id=128000, eos_token_id=[128001, 128009],
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=8192))),
    "mistral": ("MistralForCausalLM", "llama2", "llama-spm", dict(
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
        rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=16, bos_token_id=1, eos_token_id=2)),
    "qwen2": ("Qwen2ForCausalLM", "qwen3", "qwen2", dict(
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False,
        bos_token_id=151643, eos_token_id=151645)),
    "qwen3": ("Qwen3ForCausalLM", "qwen3", "qwen2", dict(
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False,
        rms_norm_eps=1e-6, rope_theta=1000000.0, bos_token_id=151643, eos_token_id=151645)),
}
HIDDEN, LAYERS, FFN = 64, 2, 128
HF_DTYPES = ["f32", "f16", "bf16"]
GGUF_DTYPES = ["f32", "f16", "bf16", "q8_0", "q4_0"]
# The K-type twins: name: (spec, config overrides, GGUF outtypes). Only their GGUF files are
# test models; the f32 directory they are converted from is not.
K_HIDDEN, K_FFN = 256, 512
K_VARIANTS = {
    "llama2-k": ("llama2", {}, ["q4_k_m", "q5_k_m", "q6_k"]),
    "llama3-k": ("llama3", {}, ["q4_k_m"]),
    "mistral-k": ("mistral", {}, ["q4_k_m"]),
    "qwen2-k": ("qwen2", {}, ["q4_k_m"]),
    "qwen3-k": ("qwen3", dict(num_attention_heads=8, num_key_value_heads=4), ["q4_k_m"]),
}
ALL = sorted(SPECS) + sorted(K_VARIANTS)


def vocab_size(test_data, vocab):
    meta, _ = mf.read_gguf(os.path.join(test_data, "vocab", f"ggml-vocab-{vocab}.gguf"))
    return len(meta["tokenizer.ggml.tokens"])


def make_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    h, v, ff = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nh
    arch = cfg["architectures"][0]

    def lin(o, i):
        return rng.normal(0.0, 1.0 / np.sqrt(i), (o, i)).astype(np.float32)

    def norm(n):
        return (1.0 + rng.normal(0.0, 0.1, n)).astype(np.float32)

    w = {"model.embed_tokens.weight": rng.normal(0.0, 1.0, (v, h)).astype(np.float32),
         "model.norm.weight": norm(h)}
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = rng.normal(0.0, 1.0, (v, h)).astype(np.float32)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm(h)
        w[p + "self_attn.q_proj.weight"] = lin(nh * hd, h)
        w[p + "self_attn.k_proj.weight"] = lin(nkv * hd, h)
        w[p + "self_attn.v_proj.weight"] = lin(nkv * hd, h)
        w[p + "self_attn.o_proj.weight"] = lin(h, nh * hd)
        if arch == "Qwen2ForCausalLM":
            for n, d in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
                w[p + f"self_attn.{n}_proj.bias"] = rng.normal(0.0, 0.5, d).astype(np.float32)
        if arch == "Qwen3ForCausalLM":
            w[p + "self_attn.q_norm.weight"] = norm(hd)
            w[p + "self_attn.k_norm.weight"] = norm(hd)
        w[p + "post_attention_layernorm.weight"] = norm(h)
        w[p + "mlp.gate_proj.weight"] = lin(ff, h)
        w[p + "mlp.up_proj.weight"] = lin(ff, h)
        w[p + "mlp.down_proj.weight"] = lin(h, ff)
    return w


def make(name, out, test_data):
    k_overrides, hf_dtypes, gguf_dtypes = None, HF_DTYPES, GGUF_DTYPES
    if name in K_VARIANTS:
        spec, k_overrides, gguf_dtypes = K_VARIANTS[name]
        hf_dtypes = ["f32"]
    else:
        spec = name
    arch, tok, vocab, extra = SPECS[spec]
    cfg = dict(architectures=[arch], model_type=arch.replace("ForCausalLM", "").lower(),
               hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS,
               max_position_embeddings=2048, vocab_size=vocab_size(test_data, vocab),
               hidden_act="silu", torch_dtype="float32")
    cfg.update(extra)
    if k_overrides is not None:
        cfg.update(hidden_size=K_HIDDEN, intermediate_size=K_FFN, **k_overrides)
    weights = make_weights(cfg, seed=sum(map(ord, name)))
    made = []
    for dt in hf_dtypes:
        d = os.path.join(out, f"{name}-hf-{dt}")
        os.makedirs(d, exist_ok=True)
        c = dict(cfg, torch_dtype={"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[dt])
        json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)
        json.dump({"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]},
                  open(os.path.join(d, "generation_config.json"), "w"), indent=2)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(test_data, "hf", tok, f), os.path.join(d, f))
        mf.write_safetensors(os.path.join(d, "model.safetensors"), weights, dt, {"format": "pt"})
        made.append(d)
    src = os.path.join(out, f"{name}-hf-f32")
    if k_overrides is not None:
        made = []  # the source directory is not a test model
    for dt in gguf_dtypes:
        g = os.path.join(out, f"{name}-{dt}.gguf")
        hf_to_gguf.convert(src, g, dt, os.path.join(test_data, "vocab", f"ggml-vocab-{vocab}.gguf"))
        made.append(g)
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", choices=ALL)
    ap.add_argument("--test-data", default=os.environ.get(
        "TROUPE_TEST_DATA", os.path.expanduser("~/.cache/troupe/testdata")))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.only or ALL:
        for p in make(name, a.out, a.test_data):
            print(p)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Converts a Hugging Face model directory (config.json, model.safetensors, tokenizer files) to
a GGUF v3 file the way llama.cpp's converter lays it out: llama.cpp tensor names, Llama's q/k
rows permuted for adjacent-pair rotary, Llama 3.1 rope scaling as a rope_freqs tensor, norms
in f32, matrices in the chosen type. The quantized types follow llama-quantize's recipes:
q4_k_m and q5_k_m keep attn_v and ffn_down of the first and last eighth of the layers (and
every third between) in q6_K, and every type but q8_0 writes the output matrix in q6_K; a
matrix whose rows are not a multiple of 256 values falls back to q8_0.

  /usr/bin/python3 scripts/hf_to_gguf.py MODEL_DIR OUT.gguf --outtype bf16 [--vocab-gguf V.gguf]
  outtypes: f32 f16 bf16 q8_0 q4_0 q4_k_m q5_k_m q6_k

The tokenizer comes from --vocab-gguf (its tokenizer.* keys are copied; use llama.cpp's vocab
files for real Llama 2/3 and Qwen vocabularies) or is converted from tokenizer.json (byte-level
BPE only)."""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_files as mf  # noqa: E402
from progress import Progress  # noqa: E402

ARCH = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama",
        "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}

# Pre-tokenizer regexes of the vocabularies llama.cpp names (tokenizer.ggml.pre).
KNOWN_PRE = {
    "gpt-2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
    "llama-bpe": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


# llama.cpp's general.file_type numbers (llama_ftype) and each type's base tensor type.
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18, "bf16": 32}
BASE_TYPE = {"f32": "f32", "f16": "f16", "bf16": "bf16", "q8_0": "q8_0", "q4_0": "q4_0",
             "q4_k_m": "q4_K", "q5_k_m": "q5_K", "q6_k": "q6_K"}


def use_more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(gguf_name, shape, outtype, n_layer, is_output):
    """The stored type of one tensor under llama-quantize's recipe for outtype."""
    if len(shape) == 1:
        return "f32"
    t = BASE_TYPE[outtype]
    if t in mf.BLOCK:
        if is_output and t != "q8_0":
            t = "q6_K"
        elif outtype in ("q4_k_m", "q5_k_m") and gguf_name.split(".")[-2] in ("attn_v", "ffn_down"):
            if use_more_bits(int(gguf_name.split(".")[1]), n_layer):
                t = "q6_K"
        if shape[-1] % mf.BLOCK[t][0]:
            t = "q8_0" if shape[-1] % 32 == 0 else "f16"
    return t


def rope_freq_factors(cfg, head_dim):
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) != "llama3":
        return None
    base = cfg.get("rope_theta", 10000.0)
    factor = rs["factor"]
    low, high = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
    old = rs.get("original_max_position_embeddings", 8192)
    low_wl, high_wl = old / low, old / high
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / base ** (i / head_dim)
        wl = 2 * math.pi / freq
        if wl < high_wl:
            out.append(1.0)
        elif wl > low_wl:
            out.append(factor)
        else:
            smooth = (old / wl - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def pre_of(tok):
    pre = tok.get("pre_tokenizer") or {}
    items = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for p in items:
        if p.get("type") == "Split":
            rx = p["pattern"].get("Regex")
            for name, known in KNOWN_PRE.items():
                if rx == known:
                    return name
            raise SystemExit(f"tokenizer.json: pre-tokenizer regex has no llama.cpp name: {rx!r}")
        if p.get("type") == "ByteLevel" and p.get("use_regex", True):
            return "gpt-2"
    raise SystemExit("tokenizer.json: no pre-tokenizer that llama.cpp can name")


def tokenizer_from_json(model_dir, w):
    tok = json.load(open(os.path.join(model_dir, "tokenizer.json"), encoding="utf-8"))
    model = tok["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise SystemExit("tokenizer.json: only byte-level BPE converts here; pass --vocab-gguf")
    vocab = dict(model["vocab"])
    special = set()
    for a in tok.get("added_tokens", []):
        vocab[a["content"]] = a["id"]
        if a.get("special"):
            special.add(a["id"])
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [5] * n  # unused
    for t, i in vocab.items():
        tokens[i] = t
        types[i] = 3 if i in special else (4 if t not in model["vocab"] else 1)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.pre", pre_of(tok))
    w.add("tokenizer.ggml.tokens", tokens)
    w.add("tokenizer.ggml.token_type", types, mf.T_ARR, mf.T_I32)
    w.add("tokenizer.ggml.merges", merges)
    cfg_path = os.path.join(model_dir, "tokenizer_config.json")
    tc = json.load(open(cfg_path, encoding="utf-8")) if os.path.exists(cfg_path) else {}

    def tok_text(v):
        return v.get("content") if isinstance(v, dict) else v
    for key, gkey in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id")):
        t = tok_text(tc.get(key))
        if t is not None and t in vocab:
            w.add("tokenizer.ggml." + gkey, vocab[t])
    w.add("tokenizer.ggml.add_bos_token", bool(tc.get("add_bos_token", False)))
    if isinstance(tc.get("chat_template"), str):
        w.add("tokenizer.chat_template", tc["chat_template"])


def convert(model_dir, out, outtype, vocab_gguf=None):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    arch_name = cfg["architectures"][0]
    if arch_name not in ARCH:
        raise SystemExit(f"config.json: architecture {arch_name} is not supported")
    arch = ARCH[arch_name]
    index = os.path.join(model_dir, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(index):
        for f in sorted(set(json.load(open(index))["weight_map"].values())):
            tensors.update(mf.read_safetensors(os.path.join(model_dir, f)))
    else:
        tensors = mf.read_safetensors(os.path.join(model_dir, "model.safetensors"))
    n_head = cfg["num_attention_heads"]
    n_head_kv = cfg.get("num_key_value_heads", n_head)
    hidden = cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // n_head

    w = mf.gguf_writer()
    w.add("general.architecture", arch)
    w.add("general.name", os.path.basename(os.path.normpath(model_dir)))
    w.add(f"{arch}.context_length", cfg.get("max_position_embeddings", 2048))
    w.add(f"{arch}.embedding_length", hidden)
    w.add(f"{arch}.block_count", cfg["num_hidden_layers"])
    w.add(f"{arch}.feed_forward_length", cfg["intermediate_size"])
    w.add(f"{arch}.attention.head_count", n_head)
    w.add(f"{arch}.attention.head_count_kv", n_head_kv)
    w.add(f"{arch}.attention.key_length", head_dim)
    w.add(f"{arch}.attention.value_length", head_dim)
    w.add(f"{arch}.rope.dimension_count", head_dim)
    w.add(f"{arch}.attention.layer_norm_rms_epsilon", float(cfg.get("rms_norm_eps", 1e-6)))
    w.add(f"{arch}.rope.freq_base", float(cfg.get("rope_theta", 10000.0)))
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) == "linear":
        w.add(f"{arch}.rope.scaling.type", "linear")
        w.add(f"{arch}.rope.scaling.factor", float(rs["factor"]))
    window = cfg.get("sliding_window") if (arch_name == "MistralForCausalLM" or cfg.get("use_sliding_window")) else None
    if window:
        w.add(f"{arch}.attention.sliding_window", int(window))
    w.add("general.file_type", FILE_TYPES[outtype])

    if vocab_gguf:
        meta, _ = mf.read_gguf(vocab_gguf)
        for k, v in meta.items():
            if k.startswith("tokenizer."):
                if k == "tokenizer.ggml.token_type":
                    w.add(k, v, mf.T_ARR, mf.T_I32)
                elif k == "tokenizer.ggml.scores":
                    w.add(k, [float(x) for x in v], mf.T_ARR, mf.T_F32)
                elif k.endswith("_token_id"):
                    w.add(k, int(v), mf.T_U32)
                else:
                    w.add(k, v)
    else:
        tokenizer_from_json(model_dir, w)

    factors = rope_freq_factors(cfg, head_dim)
    if factors is not None and arch == "llama":
        w.add_tensor("rope_freqs.weight", factors, "f32")
    bar = Progress(f"converting {os.path.basename(os.path.normpath(model_dir))}", len(tensors), unit="tensors")
    for i, name in enumerate(sorted(tensors, key=lambda s: (s.count("."), s))):
        bar.update(i, name)
        a = tensors[name]
        if name == "lm_head.weight" and cfg.get("tie_word_embeddings"):
            continue
        if arch == "llama" and name.endswith("self_attn.q_proj.weight"):
            a = mf.llama_permute(a, n_head)
        elif arch == "llama" and name.endswith("self_attn.k_proj.weight"):
            a = mf.llama_permute(a, n_head_kv)
        g = mf.gguf_name(name)
        is_output = g == "output.weight" or (g == "token_embd.weight" and cfg.get("tie_word_embeddings"))
        w.add_tensor(g, a, tensor_type(g, a.shape, outtype, cfg["num_hidden_layers"], is_output))
    bar.finish(f"{outtype}")
    w.write(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--outtype", choices=sorted(FILE_TYPES), default="bf16")
    ap.add_argument("--vocab-gguf", help="copy tokenizer.* metadata from this GGUF file")
    a = ap.parse_args()
    convert(a.model_dir, a.out, a.outtype, a.vocab_gguf)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""An independent numpy forward for the architectures troupe serves, written from their
definitions (Hugging Face's modeling_llama / mistral / qwen2 / qwen3) in float64. It shares no
code with the C++ engine and gives the reference logits the engine is tested against.

  /usr/bin/python3 scripts/reference_forward.py --model PATH --prompts '[[1, 2, 3], [4, 5]]' \
      --greedy 8 --out OUT

PATH is a Hugging Face directory or a GGUF file (read with model_files.py: GGML blocks
dequantized, Llama's permuted q/k rows put back). --round fast rounds each matmul's activations
as the engine's fast path does for the weight's stored type (bf16, or int8 blocks). Writes OUT.json ({"n_vocab", "prompts": [{"tokens",
"greedy", "logits_offset"}]}) and OUT.bin: float32 logits, [n_tokens, n_vocab] per prompt."""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_files as mf  # noqa: E402


def round_bf16(x):
    """x as f32, rounded to bf16 (nearest even), as float64."""
    return mf.bf16_bits_to_f32(mf.f32_to_bf16_bits(np.asarray(x, dtype=np.float32))).astype(np.float64)


def round_q8(x, block):
    """Rows of x as f32, quantized to int8 in blocks (d = amax / 127, q = nearest-even(x * 127 /
    amax), all in f32), as float64 q * d: what the engine's integer kernels multiply by."""
    x32 = np.asarray(x, dtype=np.float32)
    b = x32.reshape(-1, block)
    amax = np.abs(b).max(axis=1)
    iscale = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, np.float32(1)), np.float32(0))
    q = np.rint(b * iscale.astype(np.float32)[:, None])
    d = amax / np.float32(127)
    return (q.astype(np.float64) * d.astype(np.float64)[:, None]).reshape(x32.shape)


# The activation rounding of the engine's fast path (kernels/cpu/matmul.hpp) per stored weight type.
FAST_ROUNDING = {"bf16": round_bf16, "q8_0": lambda x: round_q8(x, 32), "q4_0": lambda x: round_q8(x, 32),
                 "q4_K": lambda x: round_q8(x, 256), "q5_K": lambda x: round_q8(x, 256),
                 "q6_K": lambda x: round_q8(x, 256)}


class model:
    def __init__(self, path, rounding=None):
        """rounding: None (exact), or "fast": round each matmul's activations as the engine's
        fast path does for that weight's stored type."""
        self.types = {}
        if os.path.isdir(path):
            self._load_hf(path)
        else:
            self._load_gguf(path)
        self.rounding = rounding
        self.hd = self.head_dim
        self.inv_freq = self._inv_freq()

    def has_fast_rounding(self):
        return any(t in FAST_ROUNDING for t in self.types.values())

    def linear(self, x, name):
        if self.rounding == "fast":
            f = FAST_ROUNDING.get(self.types.get(name))
            if f is not None:
                x = f(x)
        return x @ self.w[name].T

    def _load_hf(self, d):
        c = json.load(open(os.path.join(d, "config.json")))
        self.arch = c["architectures"][0]
        self.n_layer, self.n_head = c["num_hidden_layers"], c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads") or self.n_head
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.n_head
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        self.scaling = c.get("rope_scaling")
        self.freq_factors = None
        window = self.arch == "MistralForCausalLM" or (self.arch == "Qwen2ForCausalLM" and c.get("use_sliding_window"))
        self.window = c.get("sliding_window") if window else None
        self.w = {k: v.astype(np.float64) for k, v in mf.read_safetensors(os.path.join(d, "model.safetensors")).items()}
        dt = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}.get(c.get("torch_dtype"), "f32")
        self.types = {k: dt for k, v in self.w.items() if v.ndim == 2}
        if "lm_head.weight" not in self.w:
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"]
            self.types["lm_head.weight"] = self.types.get("model.embed_tokens.weight")

    def _load_gguf(self, p):
        gtypes = {}
        meta, t = mf.read_gguf(p, gtypes)
        a = meta["general.architecture"]
        self.arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[a]
        self.n_layer, self.n_head = meta[a + ".block_count"], meta[a + ".attention.head_count"]
        self.n_kv = meta.get(a + ".attention.head_count_kv", self.n_head)
        self.head_dim = meta.get(a + ".attention.key_length", meta[a + ".embedding_length"] // self.n_head)
        self.eps = meta[a + ".attention.layer_norm_rms_epsilon"]
        self.theta = meta.get(a + ".rope.freq_base", 10000.0)
        self.scaling = None
        self.window = meta.get(a + ".attention.sliding_window")
        self.freq_factors = t.get("rope_freqs.weight")
        self.w = {}
        for name, arr in t.items():
            hf = mf.hf_name_of(name)
            if hf is None:
                continue
            arr = arr.astype(np.float64)
            if a == "llama" and hf.endswith("q_proj.weight"):
                arr = mf.llama_unpermute(arr, self.n_head)
            if a == "llama" and hf.endswith("k_proj.weight"):
                arr = mf.llama_unpermute(arr, self.n_kv)
            self.w[hf] = arr
            self.types[hf] = gtypes[name]
        if "lm_head.weight" not in self.w:
            self.w["lm_head.weight"] = self.w["model.embed_tokens.weight"]
            self.types["lm_head.weight"] = self.types["model.embed_tokens.weight"]

    def _inv_freq(self):
        d = self.head_dim
        inv = 1.0 / (self.theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
        s = self.scaling or {}
        kind = s.get("rope_type", s.get("type"))
        if kind == "linear":
            inv = inv / s["factor"]
        elif kind == "llama3":
            factor, low, high = s["factor"], s.get("low_freq_factor", 1.0), s.get("high_freq_factor", 4.0)
            old = s.get("original_max_position_embeddings", 8192)
            low_wl, high_wl = old / low, old / high
            wl = 2 * math.pi / inv
            scaled = np.where(wl > low_wl, inv / factor, inv)
            smooth = (old / wl - low) / (high - low)
            smoothed = (1 - smooth) * scaled / factor + smooth * scaled
            medium = ~(wl < high_wl) & ~(wl > low_wl)
            inv = np.where(medium, smoothed, scaled)
        if self.freq_factors is not None:
            inv = inv / self.freq_factors.astype(np.float64)
        return inv

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):  # x [T, heads, hd], rotate_half convention
        ang = pos[:, None].astype(np.float64) * self.inv_freq[None, :]
        cos = np.concatenate([np.cos(ang), np.cos(ang)], -1)[:, None, :]
        sin = np.concatenate([np.sin(ang), np.sin(ang)], -1)[:, None, :]
        h = self.hd // 2
        rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin

    def forward(self, tokens):
        """Logits [T, n_vocab] for every position of one sequence."""
        return self.linear(self.hidden(tokens), "lm_head.weight")

    def hidden(self, tokens):
        """Final hidden states [T, n_embd] after the final norm (what embeddings pool)."""
        W, T = self.w, len(tokens)
        pos = np.arange(T)
        x = W["model.embed_tokens.weight"][np.array(tokens)]
        i_idx, j_idx = np.meshgrid(pos, pos, indexing="ij")
        allowed = j_idx <= i_idx
        if self.window:
            allowed &= (i_idx - j_idx) < self.window
        group = self.n_head // self.n_kv
        for li in range(self.n_layer):
            p = f"model.layers.{li}."
            h = self.rms(x, W[p + "input_layernorm.weight"])
            q = self.linear(h, p + "self_attn.q_proj.weight")
            k = self.linear(h, p + "self_attn.k_proj.weight")
            v = self.linear(h, p + "self_attn.v_proj.weight")
            if p + "self_attn.q_proj.bias" in W:
                q = q + W[p + "self_attn.q_proj.bias"]
                k = k + W[p + "self_attn.k_proj.bias"]
                v = v + W[p + "self_attn.v_proj.bias"]
            q = q.reshape(T, self.n_head, self.hd)
            k = k.reshape(T, self.n_kv, self.hd)
            v = v.reshape(T, self.n_kv, self.hd)
            if p + "self_attn.q_norm.weight" in W:
                q = self.rms(q, W[p + "self_attn.q_norm.weight"])
                k = self.rms(k, W[p + "self_attn.k_norm.weight"])
            q, k = self.rope(q, pos), self.rope(k, pos)
            o = np.zeros((T, self.n_head, self.hd))
            for hh in range(self.n_head):
                kv = hh // group
                s = (q[:, hh] @ k[:, kv].T) / math.sqrt(self.hd)
                s = np.where(allowed, s, -np.inf)
                s = np.exp(s - s.max(-1, keepdims=True))
                s /= s.sum(-1, keepdims=True)
                o[:, hh] = s @ v[:, kv]
            x = x + self.linear(o.reshape(T, -1), p + "self_attn.o_proj.weight")
            h = self.rms(x, W[p + "post_attention_layernorm.weight"])
            g = self.linear(h, p + "mlp.gate_proj.weight")
            u = self.linear(h, p + "mlp.up_proj.weight")
            x = x + self.linear((g / (1 + np.exp(-g))) * u, p + "mlp.down_proj.weight")
        return self.rms(x, W["model.norm.weight"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="JSON list of token-id lists")
    ap.add_argument("--greedy", type=int, default=0, help="greedy continuation length")
    ap.add_argument("--out", required=True)
    ap.add_argument("--round", choices=["fast"], help="simulate the fast path's activation rounding")
    ap.add_argument("--embeddings", action="store_true",
                    help="write, per prompt, its mean- and last-token-pooled L2-normalised embeddings "
                         "(OUT.json only) instead of logits")
    a = ap.parse_args()
    if a.embeddings:
        m = model(a.model, a.round)
        out = {"prompts": []}
        for toks in json.loads(a.prompts):
            h = m.hidden(toks)
            mean, last = h.mean(0), h[-1]
            out["prompts"].append({"tokens": toks, "mean": (mean / np.linalg.norm(mean)).tolist(),
                                   "last": (last / np.linalg.norm(last)).tolist()})
        json.dump(out, open(a.out + ".json", "w"))
        return
    m = model(a.model, a.round)
    prompts = json.loads(a.prompts)
    out = {"prompts": []}
    offset = 0
    with open(a.out + ".bin", "wb") as binf:
        for toks in prompts:
            logits = m.forward(toks)
            out["n_vocab"] = logits.shape[1]
            binf.write(logits.astype("<f4").tobytes())
            seq, greedy = list(toks), []
            nxt = int(np.argmax(logits[-1]))
            for step in range(a.greedy):
                greedy.append(nxt)
                seq.append(nxt)
                if step + 1 < a.greedy:
                    nxt = int(np.argmax(m.forward(seq)[-1]))
            out["prompts"].append({"tokens": toks, "greedy": greedy, "logits_offset": offset})
            offset += logits.size
    json.dump(out, open(a.out + ".json", "w"))


if __name__ == "__main__":
    main()

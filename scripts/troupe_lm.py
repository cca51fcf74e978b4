"""Plain-PyTorch models for the project's own small checkpoints: a Llama target, an MTP module
in the DeepSeek-V3 form and an Eagle-3 head, with a bf16 safetensors writer and reader.

Shared by scripts/train_reference_models.py, scripts/measure_acceptance.py and
scripts/torch_reference.py. Everything follows Hugging Face's Llama conventions exactly
(rotate_half "NEOX" RoPE, RMSNorm computed in float32, tensor names) because the C++ engine
loads these files and must reproduce these logits. Run with Debian's /usr/bin/python3.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# Building blocks (Hugging Face Llama semantics)
# ----------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_cos_sin(positions, head_dim, theta):
    """positions: [T] or [B, T] int64 -> cos, sin of shape [..., T, head_dim] (HF layout:
    the frequencies repeated over the two halves)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = positions.to(torch.float32)[..., None] * inv_freq  # [..., T, head_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x, cos, sin):
    # x: [B, n_head, T, head_dim]; cos/sin: [T, head_dim] or [B, T, head_dim]
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, in_dim, hidden, n_head, n_head_kv, head_dim):
        super().__init__()
        self.n_head, self.n_head_kv, self.head_dim = n_head, n_head_kv, head_dim
        self.q_proj = nn.Linear(in_dim, n_head * head_dim, bias=False)
        self.k_proj = nn.Linear(in_dim, n_head_kv * head_dim, bias=False)
        self.v_proj = nn.Linear(in_dim, n_head_kv * head_dim, bias=False)
        self.o_proj = nn.Linear(n_head * head_dim, hidden, bias=False)

    def qkv(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_head_kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_head_kv, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def expand_kv(self, t):
        rep = self.n_head // self.n_head_kv
        return t if rep == 1 else t.repeat_interleave(rep, dim=1)

    def forward(self, x, cos, sin, mask):
        """Plain causal self-attention; mask: additive [T, T] (or broadcastable)."""
        B, T, _ = x.shape
        q, k, v = self.qkv(x, cos, sin)
        k, v = self.expand_kv(k), self.expand_kv(v)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim)) + mask
        att = torch.softmax(att.float(), dim=-1).to(q.dtype)
        y = (att @ v).transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, hidden, ff):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, ff, bias=False)
        self.up_proj = nn.Linear(hidden, ff, bias=False)
        self.down_proj = nn.Linear(ff, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg, attn_in=None):
        super().__init__()
        h = cfg["hidden_size"]
        self.input_layernorm = RMSNorm(h, cfg["rms_norm_eps"])
        self.self_attn = Attention(attn_in or h, h, cfg["num_attention_heads"],
                                   cfg["num_key_value_heads"], head_dim_of(cfg))
        self.post_attention_layernorm = RMSNorm(h, cfg["rms_norm_eps"])
        self.mlp = MLP(h, cfg["intermediate_size"])

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


def head_dim_of(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def causal_mask(T, dtype=torch.float32):
    return torch.full((T, T), float("-inf"), dtype=dtype).triu(1)


def init_weights(module, n_layers, std=0.02):
    """GPT-2 style: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * n_layers)."""
    for name, p in module.named_parameters():
        if p.dim() == 1:
            nn.init.ones_(p)
        elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
            nn.init.normal_(p, std=std / math.sqrt(2 * n_layers))
        else:
            nn.init.normal_(p, std=std)


# ----------------------------------------------------------------------------------------------
# The target (and the draft model): LlamaForCausalLM with tied embeddings
# ----------------------------------------------------------------------------------------------

class LlamaModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    """HF names: model.embed_tokens, model.layers.N.*, model.norm; lm_head tied to embed_tokens."""

    def __init__(self, cfg):
        super().__init__()
        assert cfg["tie_word_embeddings"]
        self.cfg = cfg
        self.model = LlamaModel(cfg)

    def head(self, h):
        return h @ self.model.embed_tokens.weight.t()

    def forward(self, ids, positions=None, aux_layer_ids=(), return_hidden=False):
        """ids: [B, T] -> logits [B, T, V] (and, when asked, the final normed hidden state
        [B, T, H] and the residual stream entering each layer in aux_layer_ids, vLLM's
        eagle_aux_hidden_state_layer_ids convention: id j = output of layer j - 1)."""
        B, T = ids.shape
        if positions is None:
            positions = torch.arange(T)
        cos, sin = rope_cos_sin(positions, head_dim_of(self.cfg), self.cfg["rope_theta"])
        mask = causal_mask(T)
        x = self.model.embed_tokens(ids)
        aux = []
        for i, layer in enumerate(self.model.layers):
            if i in aux_layer_ids:
                aux.append(x)
            x = layer(x, cos, sin, mask)
        h = self.model.norm(x)
        logits = self.head(h)
        if return_hidden:
            return logits, h, aux
        return logits


@torch.no_grad()
def greedy_generate(model, prompts, n_new, eos_id=None):
    """Greedy continuation of equal-length prompts [B, P] by n_new tokens with a KV cache.
    Returns [B, P + n_new] (no early stop: eos_id is ignored on purpose so that every row has
    the same length; callers cut at the first eos if they want)."""
    cfg = model.cfg
    hd = head_dim_of(cfg)
    B, P = prompts.shape
    caches = [None] * cfg["num_hidden_layers"]
    out = prompts
    x_ids = prompts
    start = 0
    for _ in range(n_new):
        T = x_ids.shape[1]
        pos = torch.arange(start, start + T)
        cos, sin = rope_cos_sin(pos, hd, cfg["rope_theta"])
        x = model.model.embed_tokens(x_ids)
        for li, layer in enumerate(model.model.layers):
            at = layer.self_attn
            q, k, v = at.qkv(layer.input_layernorm(x), cos, sin)
            if caches[li] is not None:
                k = torch.cat([caches[li][0], k], dim=2)
                v = torch.cat([caches[li][1], v], dim=2)
            caches[li] = (k, v)
            S = k.shape[2]
            mask = torch.full((T, S), float("-inf")).triu(S - T + 1)
            att = (q @ at.expand_kv(k).transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
            att = torch.softmax(att.float(), dim=-1)
            y = (att @ at.expand_kv(v)).transpose(1, 2).reshape(B, T, at.n_head * hd)
            x = x + at.o_proj(y)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        logits = model.head(model.model.norm(x[:, -1:]))
        nxt = logits.argmax(-1)
        out = torch.cat([out, nxt], dim=1)
        start += T
        x_ids = nxt
    return out


# ----------------------------------------------------------------------------------------------
# Speculative heads that sit on a frozen target: MTP (DeepSeek-V3 form) and Eagle-3.
#
# Both read, at position i, a hidden state tied to position i and the embedding of token i+1,
# and predict token i+2. Drafting k tokens chains the head: step j >= 1 feeds the head's own
# pre-norm output hidden state back in place of the target's. The chain's attention sees the
# step-0 entries (built from the target's hidden states) of positions <= i and the head's own
# entries of that chain (positions i+1 .. i+j), exactly what a KV cache holds at inference.
# ----------------------------------------------------------------------------------------------

class MTPModule(nn.Module):
    """DeepSeek-V3 MTP layer; tensor names under model.layers.<num_hidden_layers>.:
    enorm, hnorm, eh_proj, the Llama block (input_layernorm, self_attn.*,
    post_attention_layernorm, mlp.*), shared_head.norm. The head and embedding are the target's.

    in  = eh_proj(cat[enorm(embed(x_{i+1})), hnorm(h_i)])
    out = block(in)            # pre-norm residual stream, fed back as h for the next step
    logits = embed_tokens.weight @ shared_head.norm(out)
    Step 0's h_i is the target's final hidden state after model.norm (what its lm_head reads).
    """

    def __init__(self, cfg):
        super().__init__()
        h = cfg["hidden_size"]
        self.enorm = RMSNorm(h, cfg["rms_norm_eps"])
        self.hnorm = RMSNorm(h, cfg["rms_norm_eps"])
        self.eh_proj = nn.Linear(2 * h, h, bias=False)
        self.block = DecoderLayer(cfg)
        self.shared_head_norm = RMSNorm(h, cfg["rms_norm_eps"])

    def step_input(self, emb, hidden):
        return self.eh_proj(torch.cat([self.enorm(emb), self.hnorm(hidden)], dim=-1))

    def export_tensors(self, layer_idx):
        p = f"model.layers.{layer_idx}."
        out = {}
        for name, t in self.state_dict().items():
            if name.startswith("block."):
                out[p + name[len("block."):]] = t
            elif name.startswith("shared_head_norm."):
                out[p + "shared_head.norm." + name[len("shared_head_norm."):]] = t
            else:
                out[p + name] = t
        return out


class Eagle3Head(nn.Module):
    """EAGLE-3 draft head, public checkpoint naming: fc, midlayer.{hidden_norm, input_layernorm,
    self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.*}, norm, lm_head. embed_tokens is
    the target's (not stored).

    g_i   = fc(cat[low_i, mid_i, high_i])          # step 0: the target's aux hidden states
    a_in  = cat[input_layernorm(embed(x_{i+1})), hidden_norm(g_i)]   # q/k/v read 2*hidden
    r     = g_i + o_proj(attn(a_in))
    out   = r + mlp(post_attention_layernorm(r))   # pre-norm; fed back as g for the next step
    logits = lm_head(norm(out))
    """

    def __init__(self, cfg):
        super().__init__()
        h = cfg["hidden_size"]
        eps = cfg["rms_norm_eps"]
        self.fc = nn.Linear(3 * cfg.get("target_hidden_size", h), h, bias=False)
        self.midlayer = nn.Module()
        self.midlayer.hidden_norm = RMSNorm(h, eps)
        self.midlayer.input_layernorm = RMSNorm(h, eps)
        self.midlayer.self_attn = Attention(2 * h, h, cfg["num_attention_heads"],
                                            cfg["num_key_value_heads"], head_dim_of(cfg))
        self.midlayer.post_attention_layernorm = RMSNorm(h, eps)
        self.midlayer.mlp = MLP(h, cfg["intermediate_size"])
        self.norm = RMSNorm(h, eps)
        self.lm_head = nn.Linear(h, cfg.get("draft_vocab_size", cfg["vocab_size"]), bias=False)

    def export_tensors(self):
        return dict(self.state_dict())


def head_attention(attn, q, k0, v0, chain_k, chain_v):
    """Attention for chain step j of a speculative head over all bases at once.

    q: [B, nh, T, d] queries of step j (row i = the chain based at i, at position i + j);
    k0, v0: [B, nkv, T, d] step-0 entries (row t = position t, from the target's states);
    chain_k/v: lists of [B, nkv, T, d] entries of steps 1..j (row i = that chain's entry).
    The query of base i sees step-0 positions <= i and its own chain's entries.
    """
    T = q.shape[2]
    scale = 1.0 / math.sqrt(attn.head_dim)
    k0, v0 = attn.expand_kv(k0), attn.expand_kv(v0)
    s0 = (q @ k0.transpose(-1, -2)) * scale + causal_mask(T)          # [B, nh, T, T]
    parts = [s0]
    cks = [attn.expand_kv(k) for k in chain_k]
    cvs = [attn.expand_kv(v) for v in chain_v]
    for k in cks:
        parts.append(((q * k).sum(-1) * scale)[..., None])            # [B, nh, T, 1]
    s = torch.softmax(torch.cat(parts, dim=-1).float(), dim=-1).to(q.dtype)
    y = s[..., :T] @ v0
    for j, v in enumerate(cvs):
        y = y + s[..., T + j:T + j + 1] * v
    B = q.shape[0]
    return y.transpose(1, 2).reshape(B, T, attn.n_head * attn.head_dim)


def run_head_chain(kind, head, target_cfg, embed, hidden0, tokens, n_steps):
    """Unrolls an MTP module or Eagle-3 head for n_steps over every base position at once.

    hidden0: [B, T, *] step-0 input hidden (MTP: target's normed final hidden; Eagle-3: the
    concatenated aux hidden states); tokens: [B, T + n_steps] where tokens[:, i + 1 + j] is the
    token embedded at step j for base i. Returns a list of n_steps output hidden states after
    the final norm, [B, T, H]; step j's row i predicts token i + 2 + j.
    """
    B, T = hidden0.shape[:2]
    hd = head_dim_of(target_cfg)
    theta = target_cfg["rope_theta"]
    if kind == "mtp":
        blk = head.block
        attn, ln_attn, ln_mlp, mlp = blk.self_attn, blk.input_layernorm, \
            blk.post_attention_layernorm, blk.mlp
        final_norm = head.shared_head_norm
        g = hidden0
    else:
        ml = head.midlayer
        attn, ln_mlp, mlp = ml.self_attn, ml.post_attention_layernorm, ml.mlp
        final_norm = head.norm
        g = head.fc(hidden0)
    k0 = v0 = None
    chain_k, chain_v, outs = [], [], []
    base = torch.arange(T)
    for j in range(n_steps):
        emb = embed(tokens[:, 1 + j:1 + j + T])
        cos, sin = rope_cos_sin(base + j, hd, theta)
        if kind == "mtp":
            resid = head.step_input(emb, g)
            a_in = ln_attn(resid)
        else:
            resid = g
            a_in = torch.cat([head.midlayer.input_layernorm(emb), head.midlayer.hidden_norm(g)],
                             dim=-1)
        q, k, v = attn.qkv(a_in, cos, sin)
        if j == 0:
            k0, v0 = k, v
        else:
            chain_k.append(k)
            chain_v.append(v)
        y = attn.o_proj(head_attention(attn, q, k0, v0, chain_k, chain_v))
        r = resid + y
        out = r + mlp(ln_mlp(r))
        outs.append(final_norm(out))
        g = out
    return outs


# ----------------------------------------------------------------------------------------------
# bf16 safetensors, written and read with numpy (Debian has no python3-safetensors)
# ----------------------------------------------------------------------------------------------

def save_safetensors(path, tensors, metadata=None):
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.is_floating_point():
            t = t.to(torch.bfloat16)
            raw = t.view(torch.int16).numpy().tobytes()
            dtype = "BF16"
        elif t.dtype == torch.int64:
            raw, dtype = t.numpy().tobytes(), "I64"
        else:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        if e["dtype"] == "BF16":
            arr = np.frombuffer(data[a:b], dtype=np.int16).copy()
            t = torch.from_numpy(arr).view(torch.bfloat16).float()
        elif e["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).copy())
        elif e["dtype"] == "I64":
            t = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.int64).copy())
        else:
            raise ValueError(f"{path}: {name}: dtype {e['dtype']}")
        out[name] = t.reshape(e["shape"])
    return out


def round_to_bf16_(module):
    """Rounds every parameter to bf16 in place (kept as float32), so that PyTorch evaluates
    exactly the weights that are shipped."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.bfloat16).float())


# ----------------------------------------------------------------------------------------------
# Loading the shipped directories
# ----------------------------------------------------------------------------------------------

def load_config(d):
    with open(os.path.join(d, "config.json")) as f:
        return json.load(f)


def load_llama(d):
    """The decoder stack only: tensors of layers past num_hidden_layers (the MTP layers that
    troupe-py-7m carries, DeepSeek-V3's layout) are left out."""
    cfg = load_config(d)
    m = LlamaForCausalLM(cfg)
    sd = load_safetensors(os.path.join(d, "model.safetensors"))
    mtp = tuple(f"model.layers.{cfg['num_hidden_layers'] + i}."
                for i in range(cfg.get("num_nextn_predict_layers", 0)))
    sd = {k: t for k, t in sd.items() if not (mtp and k.startswith(mtp))}
    m.load_state_dict(sd, strict=True)
    return m.eval()


def load_mtp(d):
    """Reads the first MTP layer of a checkpoint (DeepSeek-V3 names under
    model.layers.<num_hidden_layers>.): the target's directory, which holds it beside its own
    layers, or a directory holding the module alone."""
    cfg = load_config(d)
    assert cfg.get("num_nextn_predict_layers", 0) >= 1, f"{d}: no num_nextn_predict_layers"
    m = MTPModule(cfg)
    p = f"model.layers.{cfg['num_hidden_layers']}."
    local = {}
    for k, t in load_safetensors(os.path.join(d, "model.safetensors")).items():
        if not k.startswith(p):
            continue
        s = k[len(p):]
        if s.startswith("shared_head.norm."):
            local["shared_head_norm." + s[len("shared_head.norm."):]] = t
        elif s.split(".")[0] in ("enorm", "hnorm", "eh_proj"):
            local[s] = t
        else:
            local["block." + s] = t
    m.load_state_dict(local, strict=True)
    return m.eval()


def load_eagle3(d):
    cfg = load_config(d)
    m = Eagle3Head(cfg)
    m.load_state_dict(load_safetensors(os.path.join(d, "model.safetensors")), strict=True)
    return m.eval(), cfg

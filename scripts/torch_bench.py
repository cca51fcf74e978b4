#!/usr/bin/env python3
"""The PyTorch floor for `troupe bench engine --device cuda`: the same shapes (Llama-3-8B: 32
layers, hidden 4096, 32 heads, 8 KV heads, FFN 14336, vocab 128256), random bf16 weights made on
the GPU, timed with CUDA events. Prints one JSON object with the field names troupe's bench
uses: prefill tokens/s, decode tokens/s at each batch size (a KV cache of --context tokens per
sequence), the bandwidth of a device-to-device copy, torch.matmul's bf16 throughput at the
prefill's shapes, and the bandwidth batch-1 decode reaches on the weights.

PyTorch eager (no CUDA graphs, no fused kernels beyond SDPA where this torch has it) is a floor:
troupe should beat it. Written for torch 1.13 and newer.

  python3 scripts/torch_bench.py [--prompt-tokens 512] [--batches 1,8,64,256] [--context 128]
  python3 scripts/torch_bench.py --device cpu --tiny   # a smoke test of the script itself"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

LLAMA3_8B = dict(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, head_dim=128, n_ff=14336,
                 n_vocab=128256, rope_theta=500000.0, eps=1e-5)
TINY = dict(n_layer=2, n_embd=256, n_head=4, n_head_kv=2, head_dim=64, n_ff=512, n_vocab=1000,
            rope_theta=10000.0, eps=1e-5)


class timer:
    """Seconds of work queued on the device (CUDA events), or wall time on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start = torch.cuda.Event(enable_timing=True)
            self.stop = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.stop.record()
            self.stop.synchronize()
            self.seconds = self.start.elapsed_time(self.stop) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0


def best_of(fn, device, reps):
    fn()  # warm-up: kernels chosen, caches allocated
    best = math.inf
    for _ in range(reps):
        with timer(device) as t:
            fn()
        best = min(best, t.seconds)
    return best


class model:
    """Random weights in the fused layout troupe uses: q/k/v stacked, gate/up stacked."""

    def __init__(self, c, device, dtype):
        self.c, self.device, self.dtype = c, device, dtype
        g = torch.Generator(device=device)
        g.manual_seed(1234)
        H, QD, KVD, FF = c["n_embd"], c["n_head"] * c["head_dim"], c["n_head_kv"] * c["head_dim"], c["n_ff"]

        def mat(n_out, n_in):
            w = torch.empty(n_out, n_in, device=device, dtype=dtype)
            return w.uniform_(-1 / math.sqrt(n_in), 1 / math.sqrt(n_in), generator=g)

        self.layers = [dict(wqkv=mat(QD + 2 * KVD, H), wo=mat(H, QD), wgu=mat(2 * FF, H), wdown=mat(H, FF),
                            attn_norm=torch.ones(H, device=device, dtype=dtype),
                            ffn_norm=torch.ones(H, device=device, dtype=dtype)) for _ in range(c["n_layer"])]
        self.embd = mat(c["n_vocab"], H)
        self.output = mat(c["n_vocab"], H)
        self.output_norm = torch.ones(H, device=device, dtype=dtype)
        half = c["head_dim"] // 2
        self.inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(0, half, device=device, dtype=torch.float32) / half))

    def weight_bytes(self):
        n = sum(t.numel() for l in self.layers for k, t in l.items() if k.startswith("w"))
        return (n + self.output.numel()) * self.output.element_size()

    def rms_norm(self, x, w):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.c["eps"])).to(self.dtype) * w

    def rope(self, x, pos):  # x: [B, heads, T, hd], neox halves
        ang = pos[:, None].float() * self.inv_freq[None, :]  # [T, half]
        cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
        a, b = x.chunk(2, dim=-1)
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

    def attention(self, q, k, v, causal):  # q [B, nh, T, hd], k/v [B, nkv, S, hd]
        group = self.c["n_head"] // self.c["n_head_kv"]
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
        if causal:
            T, S = q.shape[2], k.shape[2]
            mask = torch.ones(T, S, device=q.device, dtype=torch.bool).tril(S - T)
            s = s.masked_fill(~mask, float("-inf"))
        return (s.softmax(-1) @ v.float()).to(q.dtype)

    def forward(self, tokens, cache, pos0):
        """tokens [B, T] at positions pos0.., cache: per layer (k, v) [B, nkv, max, hd]."""
        c = self.c
        B, T = tokens.shape
        nh, nkv, hd = c["n_head"], c["n_head_kv"], c["head_dim"]
        QD, KVD = nh * hd, nkv * hd
        pos = torch.arange(pos0, pos0 + T, device=self.device)
        x = self.embd[tokens]  # [B, T, H]
        for l, (kc, vc) in zip(self.layers, cache):
            qkv = self.rms_norm(x, l["attn_norm"]) @ l["wqkv"].t()
            q, k, v = qkv.split([QD, KVD, KVD], dim=-1)
            q = self.rope(q.view(B, T, nh, hd).transpose(1, 2), pos)
            k = self.rope(k.view(B, T, nkv, hd).transpose(1, 2), pos)
            kc[:, :, pos0:pos0 + T] = k
            vc[:, :, pos0:pos0 + T] = v.view(B, T, nkv, hd).transpose(1, 2)
            a = self.attention(q, kc[:, :, :pos0 + T], vc[:, :, :pos0 + T], causal=T > 1)
            x = x + a.transpose(1, 2).reshape(B, T, QD) @ l["wo"].t()
            gu = self.rms_norm(x, l["ffn_norm"]) @ l["wgu"].t()
            g, u = gu.chunk(2, dim=-1)
            x = x + (F.silu(g) * u) @ l["wdown"].t()
        return self.rms_norm(x[:, -1], self.output_norm) @ self.output.t()  # [B, V], the last position

    def new_cache(self, batch, length):
        c = self.c
        shape = (batch, c["n_head_kv"], length, c["head_dim"])
        return [(torch.zeros(shape, device=self.device, dtype=self.dtype),
                 torch.zeros(shape, device=self.device, dtype=self.dtype)) for _ in self.layers]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small shapes (a smoke test)")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--batches", default="1,8,64,256")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--decode-steps", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_bench: no CUDA device for torch (torch %s)" % torch.__version__)
    c = TINY if a.tiny else LLAMA3_8B
    dtype = torch.bfloat16
    batches = [int(b) for b in a.batches.split(",")]
    out = {"torch": torch.__version__, "model": "random bf16 weights in %s" % ("a tiny shape" if a.tiny else "Llama-3-8B's shape")}
    if device.type == "cuda":
        out["device"] = torch.cuda.get_device_name(device)

    # Bandwidth: a device-to-device copy, counting bytes read plus bytes written (as troupe does).
    n = (64 << 20) if a.tiny else (2 << 30)
    src = torch.empty(n, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    copy_s = best_of(lambda: dst.copy_(src), device, 10)
    bandwidth = 2 * n / copy_s
    out["copy_bandwidth_gb_s"] = bandwidth / 1e9
    del src, dst

    m = model(c, device, dtype)
    torch.manual_seed(7)
    with torch.no_grad():
        # Prefill: one prompt, logits for its last position.
        prompt = torch.randint(0, c["n_vocab"], (1, a.prompt_tokens), device=device)
        cache = m.new_cache(1, a.prompt_tokens)
        prefill_s = best_of(lambda: m.forward(prompt, cache, 0), device, a.reps)
        H, QD, KVD, FF, L = c["n_embd"], c["n_head"] * c["head_dim"], c["n_head_kv"] * c["head_dim"], c["n_ff"], c["n_layer"]
        shapes = [(QD + 2 * KVD, H), (H, QD), (2 * FF, H), (H, FF)]  # (n, k) per layer, m = prompt tokens
        xs = {k: torch.randn(a.prompt_tokens, k, device=device, dtype=dtype) for _, k in shapes}
        ws = [torch.randn(n_, k, device=device, dtype=dtype) for n_, k in shapes]

        def gemms():
            for (n_, k), w in zip(shapes, ws):
                xs[k] @ w.t()

        gemm_s = best_of(gemms, device, a.reps) * L
        flops = 2.0 * a.prompt_tokens * sum(n_ * k for n_, k in shapes) * L
        out["prefill"] = {"prompt_tokens": a.prompt_tokens, "seconds": prefill_s,
                          "tokens_per_s": a.prompt_tokens / prefill_s, "matmul_tflop_s": flops / prefill_s / 1e12,
                          "torch_matmul_seconds": gemm_s, "torch_matmul_tflop_s": flops / gemm_s / 1e12,
                          "fraction_of_torch_matmul": gemm_s / prefill_s}
        del cache, xs, ws

        decode = []
        wbytes = m.weight_bytes()
        for batch in batches:
            cache = m.new_cache(batch, a.context + a.decode_steps + 1)
            tok = torch.randint(0, c["n_vocab"], (batch, 1), device=device)
            step = [0]

            def steps():
                for s in range(a.decode_steps):
                    m.forward(tok, cache, a.context + s)
                step[0] += 1

            secs = best_of(steps, device, 1)
            tps = batch * a.decode_steps / secs
            d = {"batch": batch, "tokens_per_s": tps, "step_ms": 1000 * secs / a.decode_steps}
            if batch == 1:
                d["weight_bytes_per_step"] = wbytes
                d["bandwidth_used_gb_s"] = wbytes * a.decode_steps / secs / 1e9
                d["fraction_of_copy_bandwidth"] = wbytes * a.decode_steps / secs / bandwidth
            decode.append(d)
            del cache
        out["decode"] = decode
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

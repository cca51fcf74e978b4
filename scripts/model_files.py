"""Reads and writes the model file formats troupe serves, in numpy only (no torch, no gguf-py):
safetensors (f32/f16/bf16) and GGUF v3 (f32/f16/bf16 and GGML's q8_0, q4_0, q4_K, q5_K, q6_K
blocks, quantized with ports of ggml's reference quantizers). Shared by make_test_model.py,
hf_to_gguf.py and reference_forward.py; it shares no code with the C++ engine."""
import json
import struct

import numpy as np

# ---------------------------------------------------------------- 16-bit floats

def f32_to_bf16_bits(x):
    """Round to nearest even, as torch does."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype(np.uint16)


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to(x, dtype):
    """x as the values stored in a file of that dtype, back in f32."""
    if dtype == "f32":
        return np.asarray(x, dtype=np.float32)
    if dtype == "f16":
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        return bf16_bits_to_f32(f32_to_bf16_bits(x))
    if dtype == "q8_0":
        return q8_0_dequantize(q8_0_quantize(x), np.asarray(x).shape)
    raise ValueError(dtype)

# ---------------------------------------------------------------- safetensors

_ST_DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2),
              "I32": (np.int32, 4), "I64": (np.int64, 8), "U8": (np.uint8, 1)}


def write_safetensors(path, tensors, dtype="f32", metadata=None):
    """tensors: {name: float32 array}; dtype: f32 | f16 | bf16 for every tensor."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        a = np.asarray(tensors[name], dtype=np.float32)
        if dtype == "f32":
            raw, st = a.astype("<f4").tobytes(), "F32"
        elif dtype == "f16":
            raw, st = a.astype("<f2").tobytes(), "F16"
        elif dtype == "bf16":
            raw, st = f32_to_bf16_bits(a).astype("<u2").tobytes(), "BF16"
        else:
            raise ValueError(dtype)
        header[name] = {"dtype": st, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """{name: float32 array} (integers stay integers)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        np_t, _ = _ST_DTYPES[e["dtype"]]
        b, end = e["data_offsets"]
        a = np.frombuffer(data, dtype=np.dtype(np_t).newbyteorder("<"), count=(end - b) // np.dtype(np_t).itemsize,
                          offset=base + b).reshape(e["shape"])
        if e["dtype"] == "BF16":
            a = bf16_bits_to_f32(a)
        elif e["dtype"] in ("F16", "F32"):
            a = a.astype(np.float32)
        out[name] = a
    return out

# ---------------------------------------------------------------- q8_0

def q8_0_quantize(x):
    """GGML's Q8_0 over the last axis: per block of 32, d = amax / 127, q = round(x / d).
    Returns the raw bytes (34 per block: f16 d, then 32 int8)."""
    x = np.asarray(x, dtype=np.float32)
    assert x.shape[-1] % 32 == 0
    blocks = x.reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0).astype(np.float32)
    q = np.round(blocks * inv[:, None]).astype(np.int8)  # numpy rounds half to even; ggml rounds away
    # ggml uses roundf (half away from zero): redo the halves that differ
    scaled = blocks * inv[:, None]
    q = np.where(np.abs(scaled - np.trunc(scaled)) == 0.5, np.trunc(scaled) + np.sign(scaled), q).astype(np.int8)
    out = np.zeros((blocks.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def q8_0_dequantize(raw, shape):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
    d = b[:, 0:2].copy().view(np.float16).astype(np.float32).reshape(-1)
    q = b[:, 2:].copy().view(np.int8).astype(np.float32)
    return (q * d[:, None]).reshape(shape)

# ---------------------------------------------------------------- q4_0 and the K types
# Block layouts as in ggml-common.h (kernels/cpu/ggml_blocks.hpp describes them too). The
# quantizers follow ggml-quants.c's reference ones (quantize_row_*_ref: make_qkx2_quants for q4_K
# and q5_K, make_qx_quants for q6_K) with numpy's float32 arithmetic; nearest_int rounds half to
# even, as ggml's does.

QK_K = 256
BLOCK = {"q8_0": (32, 34), "q4_0": (32, 18), "q4_K": (256, 144), "q5_K": (256, 176), "q6_K": (256, 210)}
F32 = np.float32


def _f16_bytes(v):
    return np.asarray(v, dtype=np.float32).astype(np.float16).view(np.uint8).reshape(-1, 2)


def _f16_at(b, col):
    return b[:, col:col + 2].copy().view(np.float16).astype(np.float32).reshape(-1)


def q4_0_quantize(x):
    blocks = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    imax = np.abs(blocks).argmax(axis=1)
    mx = blocks[np.arange(len(blocks)), imax]
    d = (mx / F32(-8)).astype(np.float32)
    inv = np.where(d == 0, F32(0), F32(1) / np.where(d == 0, F32(1), d)).astype(np.float32)
    q = np.clip(np.trunc(blocks * inv[:, None] + F32(8.5)), 0, 15).astype(np.uint8)
    out = np.zeros((len(blocks), 18), dtype=np.uint8)
    out[:, 0:2] = _f16_bytes(d)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def q4_0_dequantize(raw, shape):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = _f16_at(b, 0)
    qs = b[:, 2:]
    q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32) - F32(8)
    return (d[:, None] * q).astype(np.float32).reshape(shape)


def _qkx2(x, nmax, rmin, rdelta, nstep):
    """make_qkx2_quants over rows of x [n, 32]: (L [n, 32], scale [n], -min [n])."""
    x = x.astype(np.float32)
    n = len(x)
    av = np.sqrt((x * x).sum(1, dtype=np.float32) / F32(32)).astype(np.float32)
    w = (av[:, None] + np.abs(x)).astype(np.float32)
    mn = np.minimum(x.min(1), F32(0))
    mx = x.max(1)
    flat = mx == mn
    rng = np.where(flat, F32(1), mx - mn).astype(np.float32)
    sum_w = w.sum(1, dtype=np.float32)
    sum_x = (w * x).sum(1, dtype=np.float32)
    iscale = (F32(nmax) / rng).astype(np.float32)
    scale = (F32(1) / iscale).astype(np.float32)
    L = np.clip(np.rint(iscale[:, None] * (x - mn[:, None])), 0, nmax).astype(np.float32)
    diff = scale[:, None] * L + mn[:, None] - x
    best = (w * diff * diff).sum(1, dtype=np.float32)
    mn_best = mn.copy()
    for i in range(nstep + 1):
        isc = ((F32(rmin) + F32(rdelta) * F32(i) + F32(nmax)) / rng).astype(np.float32)
        La = np.clip(np.rint(isc[:, None] * (x - mn[:, None])), 0, nmax).astype(np.float32)
        sl = (w * La).sum(1, dtype=np.float32)
        sl2 = (w * La * La).sum(1, dtype=np.float32)
        sxl = (w * La * x).sum(1, dtype=np.float32)
        D = sum_w * sl2 - sl * sl
        ok = D > 0
        Ds = np.where(ok, D, F32(1))
        this_scale = ((sum_w * sxl - sum_x * sl) / Ds).astype(np.float32)
        this_min = ((sl2 * sum_x - sl * sxl) / Ds).astype(np.float32)
        pos = this_min > 0
        this_scale = np.where(pos, sxl / np.where(sl2 > 0, sl2, F32(1)), this_scale).astype(np.float32)
        this_min = np.where(pos, F32(0), this_min).astype(np.float32)
        diff = this_scale[:, None] * La + this_min[:, None] - x
        err = (w * diff * diff).sum(1, dtype=np.float32)
        better = ok & (err < best)
        L = np.where(better[:, None], La, L)
        best = np.where(better, err, best)
        scale = np.where(better, this_scale, scale).astype(np.float32)
        mn_best = np.where(better, this_min, mn_best).astype(np.float32)
    L = np.where(flat[:, None], F32(0), L)
    scale = np.where(flat, F32(0), scale).astype(np.float32)
    return L.astype(np.uint8), scale, (-mn_best).astype(np.float32)


def _pack_scales_k4(ls, lm):
    """8 6-bit scales and mins per block [n, 8] -> the 12 packed bytes [n, 12]."""
    ls, lm = ls.astype(np.uint8), lm.astype(np.uint8)
    out = np.zeros((len(ls), 12), dtype=np.uint8)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 15) | ((lm[:, 4:8] & 15) << 4)
    return out


def _unpack_scales_k4(s):
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([d & 63, (md & 15) | ((d >> 6) << 4)], axis=1)
    mn = np.concatenate([m & 63, (md >> 4) | ((m >> 6) << 4)], axis=1)
    return sc, mn


def _k_quantize(x, nmax, rmin, rdelta, nstep):
    """Shared q4_K / q5_K: (L [nb, 256], scales bytes [nb, 12], d, dmin)."""
    blocks = np.asarray(x, dtype=np.float32).reshape(-1, QK_K)
    nb = len(blocks)
    sub = blocks.reshape(-1, 32)
    L, scale, mins = _qkx2(sub, nmax, rmin, rdelta, nstep)
    scale, mins = scale.reshape(nb, 8), mins.reshape(nb, 8)
    max_scale, max_min = scale.max(1), mins.max(1)
    inv_s = np.where(max_scale > 0, F32(63) / np.where(max_scale > 0, max_scale, F32(1)), F32(0)).astype(np.float32)
    inv_m = np.where(max_min > 0, F32(63) / np.where(max_min > 0, max_min, F32(1)), F32(0)).astype(np.float32)
    ls = np.minimum(np.rint(inv_s[:, None] * scale), 63)
    lm = np.minimum(np.rint(inv_m[:, None] * mins), 63)
    packed = _pack_scales_k4(ls, lm)
    d = (max_scale / F32(63)).astype(np.float16).astype(np.float32)
    dmin = (max_min / F32(63)).astype(np.float16).astype(np.float32)
    sc, mn = _unpack_scales_k4(packed)
    d1 = (d[:, None] * sc.astype(np.float32)).astype(np.float32)
    dm = (dmin[:, None] * mn.astype(np.float32)).astype(np.float32)
    xs = blocks.reshape(nb, 8, 32)
    safe = np.where(d1 == 0, F32(1), d1)
    L2 = np.clip(np.rint((xs + dm[:, :, None]) / safe[:, :, None]), 0, nmax)
    L = np.where((d1 == 0)[:, :, None], L.reshape(nb, 8, 32), L2).astype(np.uint8).reshape(nb, QK_K)
    return L, packed, d, dmin


def q4_k_quantize(x):
    L, packed, d, dmin = _k_quantize(x, 15, -1.0, 0.1, 20)
    nb = len(L)
    out = np.zeros((nb, 144), dtype=np.uint8)
    out[:, 0:2], out[:, 2:4], out[:, 4:16] = _f16_bytes(d), _f16_bytes(dmin), packed
    Lc = L.reshape(nb, 4, 2, 32)
    out[:, 16:] = (Lc[:, :, 0] | (Lc[:, :, 1] << 4)).reshape(nb, 128)
    return out.tobytes()


def q5_k_quantize(x):
    L, packed, d, dmin = _k_quantize(x, 31, -0.5, 0.1, 15)
    nb = len(L)
    out = np.zeros((nb, 176), dtype=np.uint8)
    out[:, 0:2], out[:, 2:4], out[:, 4:16] = _f16_bytes(d), _f16_bytes(dmin), packed
    Ls = L.reshape(nb, 8, 32)
    qh = np.zeros((nb, 32), dtype=np.uint8)
    for s in range(8):
        qh |= ((Ls[:, s] >> 4) & 1) << s
    out[:, 16:48] = qh
    lo = (Ls & 15).reshape(nb, 4, 2, 32)
    out[:, 48:] = (lo[:, :, 0] | (lo[:, :, 1] << 4)).reshape(nb, 128)
    return out.tobytes()


def _qx(x, nmax):
    """make_qx_quants(n, nmax, x, L, rmse_type=1) over rows of x [n, 16]: (L + nmax, scale)."""
    x = x.astype(np.float32)
    n = len(x)
    imax = np.abs(x).argmax(1)
    mx = x[np.arange(n), imax]
    zero = np.abs(mx) < F32(1e-15)
    mxs = np.where(zero, F32(1), mx)
    w = (x * x).astype(np.float32)

    def try_scale(iscale):
        l = np.clip(np.rint(iscale[:, None] * x), -nmax, nmax - 1).astype(np.float32)
        return l, (w * x * l).sum(1, dtype=np.float32), (w * l * l).sum(1, dtype=np.float32)
    iscale = (F32(-nmax) / mxs).astype(np.float32)
    l, sumlx, suml2 = try_scale(iscale)
    scale = np.where(suml2 > 0, sumlx / np.where(suml2 > 0, suml2, F32(1)), F32(0)).astype(np.float32)
    best = (scale * sumlx).astype(np.float32)
    L = l
    for i in range(-9, 10):
        if i == 0:
            continue
        isc = (-(F32(nmax) + F32(0.1) * F32(i)) / mxs).astype(np.float32)
        la, slx, sl2 = try_scale(isc)
        better = (sl2 > 0) & (slx * slx > best * sl2)
        sc = (slx / np.where(sl2 > 0, sl2, F32(1))).astype(np.float32)
        L = np.where(better[:, None], la, L)
        scale = np.where(better, sc, scale).astype(np.float32)
        best = np.where(better, (sc * slx).astype(np.float32), best)
    L = np.where(zero[:, None], F32(0), L)
    scale = np.where(zero, F32(0), scale)
    return (L + nmax).astype(np.uint8), scale.astype(np.float32)


def q6_k_quantize(x):
    blocks = np.asarray(x, dtype=np.float32).reshape(-1, QK_K)
    nb = len(blocks)
    L, scales = _qx(blocks.reshape(-1, 16), 32)
    scales = scales.reshape(nb, 16)
    L = L.reshape(nb, QK_K)
    idx = np.abs(scales).argmax(1)
    max_scale = scales[np.arange(nb), idx]
    zero = np.abs(max_scale) < F32(1e-15)
    iscale = (F32(-128) / np.where(zero, F32(1), max_scale)).astype(np.float32)
    d = (F32(1) / iscale).astype(np.float16).astype(np.float32)
    sc = np.minimum(np.rint(iscale[:, None] * scales), 127).astype(np.int8)
    d1 = (d[:, None] * sc.astype(np.float32)).astype(np.float32)
    xs = blocks.reshape(nb, 16, 16)
    safe = np.where(d1 == 0, F32(1), d1)
    L2 = (np.clip(np.rint(xs / safe[:, :, None]), -32, 31) + 32)
    L = np.where((d1 == 0)[:, :, None], L.reshape(nb, 16, 16), L2).astype(np.uint8).reshape(nb, QK_K)
    d = np.where(zero, F32(0), d)
    sc = np.where(zero[:, None], np.int8(0), sc)
    L = np.where(zero[:, None], np.uint8(0), L)
    out = np.zeros((nb, 210), dtype=np.uint8)
    Lh = L.reshape(nb, 2, 4, 32)  # halves, chunks of 32
    ql = np.zeros((nb, 2, 64), dtype=np.uint8)
    ql[:, :, 0:32] = (Lh[:, :, 0] & 15) | ((Lh[:, :, 2] & 15) << 4)
    ql[:, :, 32:64] = (Lh[:, :, 1] & 15) | ((Lh[:, :, 3] & 15) << 4)
    qh = (Lh[:, :, 0] >> 4) | ((Lh[:, :, 1] >> 4) << 2) | ((Lh[:, :, 2] >> 4) << 4) | ((Lh[:, :, 3] >> 4) << 6)
    out[:, 0:128] = ql.reshape(nb, 128)
    out[:, 128:192] = qh.reshape(nb, 64)
    out[:, 192:208] = sc.view(np.uint8)
    out[:, 208:210] = _f16_bytes(d)
    return out.tobytes()


def q4_k_dequantize(raw, shape):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 144)
    d, dmin = _f16_at(b, 0), _f16_at(b, 2)
    sc, mn = _unpack_scales_k4(b[:, 4:16])
    qs = b[:, 16:].reshape(-1, 4, 32)
    q = np.stack([qs & 15, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    d1 = (d[:, None] * sc.astype(np.float32)).astype(np.float32)
    m1 = (dmin[:, None] * mn.astype(np.float32)).astype(np.float32)
    return (d1[:, :, None] * q - m1[:, :, None]).astype(np.float32).reshape(shape)


def q5_k_dequantize(raw, shape):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 176)
    d, dmin = _f16_at(b, 0), _f16_at(b, 2)
    sc, mn = _unpack_scales_k4(b[:, 4:16])
    qh = b[:, 16:48]
    qs = b[:, 48:].reshape(-1, 4, 32)
    lo = np.stack([qs & 15, qs >> 4], axis=2).reshape(-1, 8, 32)
    hi = np.stack([(qh >> s) & 1 for s in range(8)], axis=1)
    q = (lo | (hi << 4)).astype(np.float32)
    d1 = (d[:, None] * sc.astype(np.float32)).astype(np.float32)
    m1 = (dmin[:, None] * mn.astype(np.float32)).astype(np.float32)
    return (d1[:, :, None] * q - m1[:, :, None]).astype(np.float32).reshape(shape)


def q6_k_dequantize(raw, shape):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 210)
    ql = b[:, 0:128].reshape(-1, 2, 64)
    qh = b[:, 128:192].reshape(-1, 2, 32)
    sc = b[:, 192:208].copy().view(np.int8).astype(np.float32)
    d = _f16_at(b, 208)
    lo = np.stack([ql[:, :, :32] & 15, ql[:, :, 32:] & 15, ql[:, :, :32] >> 4, ql[:, :, 32:] >> 4], axis=2)
    hi = np.stack([(qh >> (2 * c)) & 3 for c in range(4)], axis=2)
    q = ((lo | (hi << 4)).astype(np.float32) - F32(32)).reshape(-1, 16, 16)
    d1 = (d[:, None] * sc).astype(np.float32)
    return (d1[:, :, None] * q).astype(np.float32).reshape(shape)


QUANTIZE = {"q8_0": lambda x: q8_0_quantize(x), "q4_0": q4_0_quantize, "q4_K": q4_k_quantize,
            "q5_K": q5_k_quantize, "q6_K": q6_k_quantize}
DEQUANTIZE = {"q8_0": q8_0_dequantize, "q4_0": q4_0_dequantize, "q4_K": q4_k_dequantize,
              "q5_K": q5_k_dequantize, "q6_K": q6_k_dequantize}

# ---------------------------------------------------------------- GGUF

GGML_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8, "q4_K": 12, "q5_K": 13, "q6_K": 14, "bf16": 30}
_GGML_NAMES = {v: k for k, v in GGML_TYPES.items()}
(T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64) = range(13)
_SCALAR_FMT = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
               T_F32: "<f", T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}


class gguf_writer:
    def __init__(self, alignment=32):
        self.kv = []        # (key, type, value, elem_type)
        self.tensors = []   # (name, shape outermost-first, ggml type, raw bytes)
        self.alignment = alignment

    def add(self, key, value, vtype=None, elem_type=None):
        if vtype is None:
            if isinstance(value, bool):
                vtype = T_BOOL
            elif isinstance(value, int):
                vtype = T_U32 if 0 <= value < 2**32 else T_I64
            elif isinstance(value, float):
                vtype = T_F32
            elif isinstance(value, str):
                vtype = T_STR
            elif isinstance(value, (list, tuple)):
                vtype = T_ARR
            else:
                raise TypeError(key)
        if vtype == T_ARR and elem_type is None:
            v0 = value[0] if len(value) else ""
            elem_type = T_STR if isinstance(v0, str) else T_F32 if isinstance(v0, float) else T_I32
        self.kv.append((key, vtype, value, elem_type))

    def add_tensor(self, name, array, ggml_type):
        a = np.asarray(array, dtype=np.float32)
        if ggml_type == "f32":
            raw = a.astype("<f4").tobytes()
        elif ggml_type == "f16":
            raw = a.astype("<f2").tobytes()
        elif ggml_type == "bf16":
            raw = f32_to_bf16_bits(a).astype("<u2").tobytes()
        elif ggml_type in QUANTIZE:
            raw = QUANTIZE[ggml_type](a)
        else:
            raise ValueError(ggml_type)
        self.tensors.append((name, list(a.shape), GGML_TYPES[ggml_type], raw))

    @staticmethod
    def _str(s):
        b = s.encode("utf-8") if isinstance(s, str) else s
        return struct.pack("<Q", len(b)) + b

    def _value(self, t, v, et):
        if t == T_STR:
            return self._str(v)
        if t == T_ARR:
            out = struct.pack("<IQ", et, len(v))
            return out + b"".join(self._value(et, x, None) for x in v)
        return struct.pack(_SCALAR_FMT[t], v)

    def write(self, path):
        out = bytearray(b"GGUF")
        out += struct.pack("<IQQ", 3, len(self.tensors), len(self.kv))
        for key, t, v, et in self.kv:
            out += self._str(key) + struct.pack("<I", t) + self._value(t, v, et)
        offset = 0
        offsets = []
        for name, shape, gt, raw in self.tensors:
            offsets.append(offset)
            out += self._str(name) + struct.pack("<I", len(shape))
            for d in reversed(shape):  # innermost first
                out += struct.pack("<Q", d)
            out += struct.pack("<IQ", gt, offset)
            offset += (len(raw) + self.alignment - 1) // self.alignment * self.alignment
        out += b"\0" * ((self.alignment - len(out) % self.alignment) % self.alignment)
        for name, shape, gt, raw in self.tensors:
            out += raw
            out += b"\0" * ((self.alignment - len(raw) % self.alignment) % self.alignment)
        with open(path, "wb") as f:
            f.write(out)


def read_gguf(path, types=None):
    """(metadata {key: value}, tensors {name: float32 array, outermost-first shape}); block
    types dequantized. If `types` is a dict, it receives {name: stored type name}."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("<Q")
        s = data[pos:pos + n]
        pos += n
        return s.decode("utf-8", errors="surrogateescape")

    def value(t):
        if t == T_STR:
            return string()
        if t == T_ARR:
            et, n = take("<I"), take("<Q")
            return [value(et) for _ in range(n)]
        return take(_SCALAR_FMT[t])

    assert data[:4] == b"GGUF", path
    pos = 4
    version, n_tensors, n_kv = take("<I"), take("<Q"), take("<Q")
    assert version in (2, 3)
    meta = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("<I"))
    align = meta.get("general.alignment", 32)
    infos = []
    for _ in range(n_tensors):
        name = string()
        nd = take("<I")
        dims = [take("<Q") for _ in range(nd)]
        gt, off = take("<I"), take("<Q")
        infos.append((name, list(reversed(dims)), gt, off))
    base = (pos + align - 1) // align * align
    tensors = {}
    for name, shape, gt, off in infos:
        n = int(np.prod(shape))
        start = base + off
        t = _GGML_NAMES[gt]
        if t == "f32":
            a = np.frombuffer(data, "<f4", n, start).astype(np.float32)
        elif t == "f16":
            a = np.frombuffer(data, "<f2", n, start).astype(np.float32)
        elif t == "bf16":
            a = bf16_bits_to_f32(np.frombuffer(data, "<u2", n, start))
        else:
            bv, bb = BLOCK[t]
            a = DEQUANTIZE[t](data[start:start + n // bv * bb], (n,))
        tensors[name] = a.reshape(shape)
        if types is not None:
            types[name] = t
    return meta, tensors

# ---------------------------------------------------------------- naming and layout

def llama_permute(w, n_head):
    """llama.cpp's converter reorders Llama's q/k rows so that adjacent pairs rotate."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


HF_TO_GGUF = [
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
]
HF_TO_GGUF_LAYER = [
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
]


def gguf_name(hf_name):
    for h, g in HF_TO_GGUF:
        if hf_name == h:
            return g
    parts = hf_name.split(".")
    if parts[:2] == ["model", "layers"]:
        rest = ".".join(parts[3:])
        for h, g in HF_TO_GGUF_LAYER:
            if rest == h:
                return f"blk.{parts[2]}.{g}"
    raise KeyError(hf_name)


def hf_name_of(gguf_tensor_name):
    for h, g in HF_TO_GGUF:
        if gguf_tensor_name == g:
            return h
    parts = gguf_tensor_name.split(".")
    if parts[0] == "blk":
        rest = ".".join(parts[2:])
        for h, g in HF_TO_GGUF_LAYER:
            if rest == g:
                return f"model.layers.{parts[1]}.{h}"
    return None

"""Reads and writes the model file formats troupe serves, in numpy only (no torch, no gguf-py):
safetensors (f32/f16/bf16) and GGUF v3 (f32/f16/bf16/q8_0). Shared by make_test_model.py,
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

# ---------------------------------------------------------------- GGUF

GGML_TYPES = {"f32": 0, "f16": 1, "q8_0": 8, "bf16": 30}
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
        elif ggml_type == "q8_0":
            raw = q8_0_quantize(a)
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


def read_gguf(path):
    """(metadata {key: value}, tensors {name: float32 array, outermost-first shape})."""
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
            a = q8_0_dequantize(data[start:start + n // 32 * 34], (n,))
        tensors[name] = a.reshape(shape)
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

#!/usr/bin/env python3
"""Folds the trained MTP module into the target's checkpoint, the way DeepSeek-V3 stores its
multi-token-prediction layers: the module's tensors under model.layers.<num_hidden_layers>.
(enorm, hnorm, eh_proj, the decoder layer's input_layernorm, self_attn.*,
post_attention_layernorm, mlp.*, and shared_head.norm; the embedding and head are the
target's own, tied) inside models/troupe-py-7m/model.safetensors, and
"num_nextn_predict_layers": 1 in its config.json. Loaders that know no MTP read layers
0 .. num_hidden_layers - 1 and ignore the rest, so the target's own forward is unchanged.

The bytes of every tensor are copied as they are (bf16), with Python's standard library only:

    python3 scripts/fold_mtp_into_target.py --mtp MTP_DIR [--target models/troupe-py-7m]

MTP_DIR holds the module as scripts/train_reference_models.py exported it (model.safetensors
with model.layers.6.* only, and a config.json with num_nextn_predict_layers). Running it again
on a target that already holds the layer replaces the layer's tensors with MTP_DIR's.
"""
import argparse
import json
import os
import struct


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {"format": "pt"})
    tensors = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        tensors[name] = (e["dtype"], e["shape"], data[a:b])
    return tensors, meta


def write_safetensors(path, tensors, meta):
    """The layout scripts/troupe_lm.py's save_safetensors writes: names sorted, compact JSON
    padded with spaces to 8 bytes."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = meta
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=os.path.join(root, "models", "troupe-py-7m"))
    ap.add_argument("--mtp", required=True, help="the MTP module's directory")
    a = ap.parse_args()

    with open(os.path.join(a.target, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(a.mtp, "config.json")) as f:
        mcfg = json.load(f)
    L = cfg["num_hidden_layers"]
    n_mtp = mcfg.get("num_nextn_predict_layers", 1)
    for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
              "head_dim", "vocab_size", "rms_norm_eps", "rope_theta", "num_hidden_layers"):
        if cfg.get(k) != mcfg.get(k):
            raise SystemExit(f"{a.mtp}/config.json: {k} is {mcfg.get(k)}, the target's is {cfg.get(k)}")

    target, meta = read_safetensors(os.path.join(a.target, "model.safetensors"))
    mtp, _ = read_safetensors(os.path.join(a.mtp, "model.safetensors"))
    prefixes = tuple(f"model.layers.{L + i}." for i in range(n_mtp))
    for name in mtp:
        if not name.startswith(prefixes):
            raise SystemExit(f"{a.mtp}/model.safetensors: {name} is not under {' or '.join(prefixes)}")
    kept = {k: v for k, v in target.items() if not k.startswith(prefixes)}
    kept.update(mtp)
    write_safetensors(os.path.join(a.target, "model.safetensors"), kept, meta)

    cfg["num_nextn_predict_layers"] = n_mtp
    with open(os.path.join(a.target, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    print(f"{a.target}: {len(mtp)} MTP tensors under {', '.join(prefixes)}; "
          f"num_nextn_predict_layers = {n_mtp}; {len(kept)} tensors in all")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks scripts/model_files.py's GGML block quantizers and dequantizers (used by hf_to_gguf.py
and the numpy reference) against gguf-py's numpy (de)quantization from llama.cpp, fetched by
scripts/fetch_test_data.sh: the blocks our converter writes must mean, to llama.cpp, the values
our reference forward reads from them; q8_0 and q4_0 must quantize bit for bit as ggml's
reference does; the K quantizers must be as accurate as their bit widths allow; and a converted
Q4_K_M / Q5_K_M file must hold the types of llama.cpp's recipe.

  TROUPE_TEST_DATA=~/.cache/troupe/testdata /usr/bin/python3 tests/scripts/gguf_quants_test.py"""
import json
import os
import sys
import tempfile
import unittest

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "scripts"))
test_data = os.environ.get("TROUPE_TEST_DATA", os.path.expanduser("~/.cache/troupe/testdata"))
sys.path.insert(0, os.path.join(test_data, "gguf-py"))

import model_files as mf  # noqa: E402
from gguf import quants as gq  # noqa: E402
from gguf.constants import GGMLQuantizationType as Q  # noqa: E402

GQ = {"q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_K": Q.Q4_K, "q5_K": Q.Q5_K, "q6_K": Q.Q6_K}
# Root-mean-square error of the round trip, relative to the data's, that each width must beat on
# Gaussian data (llama.cpp's own quantizers land near 0.004, 0.07, 0.06, 0.03, 0.015).
MAX_REL_RMSE = {"q8_0": 0.006, "q4_0": 0.1, "q4_K": 0.08, "q5_K": 0.04, "q6_K": 0.02}


def cases():
    rng = np.random.default_rng(1)
    yield "gaussian", rng.normal(size=(16, 1024)).astype(np.float32)
    heavy = rng.standard_t(3, size=(8, 512)).astype(np.float32)
    heavy[0, 7] = 40.0  # an outlier in one block
    yield "heavy tails", heavy
    mixed = rng.normal(size=(4, 512)).astype(np.float32)
    mixed[0, :256] = 0.0  # a zero block
    mixed[1, :256] = 0.5  # a constant block
    mixed[2, :] = np.abs(mixed[2, :])  # all positive (the K types' min is 0)
    mixed[3, :] *= 1e-3
    yield "edge blocks", mixed


class quants(unittest.TestCase):
    def test_our_blocks_mean_to_llama_cpp_what_they_mean_to_us(self):
        for t in GQ:
            for name, x in cases():
                raw = np.frombuffer(mf.QUANTIZE[t](x), dtype=np.uint8)
                ours = mf.DEQUANTIZE[t](raw.tobytes(), x.shape)
                bv, bb = mf.BLOCK[t]
                theirs = gq.dequantize(raw.reshape(x.shape[0], x.shape[1] // bv * bb), GQ[t])
                np.testing.assert_array_equal(ours, theirs, err_msg=f"{t}, {name}")

    def test_llama_cpp_blocks_mean_to_us_what_they_mean_to_llama_cpp(self):
        for t in ("q8_0", "q4_0"):  # the types gguf-py quantizes as ggml's reference does
            for name, x in cases():
                theirs = gq.quantize(x, GQ[t])
                np.testing.assert_array_equal(np.frombuffer(mf.QUANTIZE[t](x), dtype=np.uint8),
                                              theirs.reshape(-1), err_msg=f"{t}, {name}")
                np.testing.assert_array_equal(mf.DEQUANTIZE[t](theirs.tobytes(), x.shape),
                                              gq.dequantize(theirs, GQ[t]), err_msg=f"{t}, {name}")

    def test_quantizers_are_as_accurate_as_their_widths(self):
        x = next(cases())[1]
        for t, bound in MAX_REL_RMSE.items():
            y = mf.DEQUANTIZE[t](mf.QUANTIZE[t](x), x.shape)
            rel = np.sqrt(((y - x) ** 2).mean() / (x ** 2).mean())
            self.assertLess(rel, bound, t)
        for t in GQ:  # zero and constant blocks come back exactly
            for name, x in cases():
                if name == "edge blocks":
                    y = mf.DEQUANTIZE[t](mf.QUANTIZE[t](x), x.shape)
                    np.testing.assert_array_equal(y[0, :256], 0.0, err_msg=t)
                    np.testing.assert_allclose(y[1, :256], 0.5, rtol=2e-3, err_msg=t)

    def test_converter_writes_llama_cpp_recipes(self):
        import hf_to_gguf
        import make_test_model
        with tempfile.TemporaryDirectory() as d:
            cfg = dict(architectures=["LlamaForCausalLM"], hidden_size=256, intermediate_size=512,
                       num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
                       vocab_size=300, rms_norm_eps=1e-5, tie_word_embeddings=False,
                       max_position_embeddings=128)
            w = make_test_model.make_weights(cfg, seed=3)
            src = os.path.join(d, "hf")
            os.makedirs(src)
            json.dump(cfg, open(os.path.join(src, "config.json"), "w"))
            mf.write_safetensors(os.path.join(src, "model.safetensors"), w, "f32")
            vocab = os.path.join(test_data, "vocab", "ggml-vocab-llama-spm.gguf")
            more = {0, 3, 6, 7}  # llama.cpp's use_more_bits(i, 8): i < 1, i >= 7, (i - 1) % 3 == 2
            for ftype, base, bigger in (("q4_k_m", "q4_K", "q6_K"), ("q5_k_m", "q5_K", "q6_K")):
                out = os.path.join(d, ftype + ".gguf")
                hf_to_gguf.convert(src, out, ftype, vocab)
                types = {}
                meta, tensors = mf.read_gguf(out, types)
                self.assertEqual(meta["general.file_type"], {"q4_k_m": 15, "q5_k_m": 17}[ftype])
                self.assertEqual(types["output.weight"], "q6_K")
                self.assertEqual(types["token_embd.weight"], base)
                self.assertEqual(types["output_norm.weight"], "f32")
                for i in range(8):
                    want = bigger if i in more else base
                    self.assertEqual(types[f"blk.{i}.attn_v.weight"], want, (ftype, i))
                    self.assertEqual(types[f"blk.{i}.ffn_down.weight"], want, (ftype, i))
                    self.assertEqual(types[f"blk.{i}.attn_q.weight"], base)
                    self.assertEqual(types[f"blk.{i}.ffn_up.weight"], base)
                # every tensor reads back, through gguf-py, to what we read
                w0 = w["model.layers.0.mlp.up_proj.weight"]
                got = tensors["blk.0.ffn_up.weight"]
                self.assertLess(np.sqrt(((got - w0) ** 2).mean() / (w0 ** 2).mean()), MAX_REL_RMSE[base])


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/: a small GGUF v3 file with one tensor of every
type softmask reads (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K) and
metadata of every value type, and the reference values of each tensor,
dequantized by gguf-py (llama.cpp's own Python package), as JSON.

    python3 -m venv .venv && .venv/bin/pip install -r tools/reference/requirements.txt
    .venv/bin/python tools/reference/gguf_fixtures.py
    .venv/bin/python tools/reference/gguf_fixtures.py --smollm2   # after tools/fetch_smollm2.sh

Quantized blocks are random bytes with their scales set to finite, moderate
f16 values, so every bit pattern of the quants is exercised.
"""

import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter, quants

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "gguf")

rng = np.random.default_rng(20261129)


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def scale(n):
    """Finite f16 scales of either sign, well inside f16's range."""
    return f16_bytes(rng.uniform(-0.05, 0.05, n))


def blocks(kind, n):
    """`n` random blocks of a quantized type, scales made finite."""
    if kind == T.Q8_0:  # d, 32 x i8
        return np.concatenate([scale((n, 1)).reshape(n, 2), rng.integers(0, 256, (n, 32), dtype=np.uint8)], 1)
    if kind == T.Q4_0:  # d, 16 bytes of nibbles
        return np.concatenate([scale((n, 1)).reshape(n, 2), rng.integers(0, 256, (n, 16), dtype=np.uint8)], 1)
    if kind == T.Q4_1:  # d, m, 16 bytes
        return np.concatenate([scale((n, 2)).reshape(n, 4), rng.integers(0, 256, (n, 16), dtype=np.uint8)], 1)
    if kind == T.Q4_K:  # d, dmin, 12 scale bytes, 128 bytes
        return np.concatenate([scale((n, 2)).reshape(n, 4), rng.integers(0, 256, (n, 140), dtype=np.uint8)], 1)
    if kind == T.Q5_K:  # d, dmin, 12 scale bytes, 32 high bits, 128 bytes
        return np.concatenate([scale((n, 2)).reshape(n, 4), rng.integers(0, 256, (n, 172), dtype=np.uint8)], 1)
    if kind == T.Q6_K:  # 128 low, 64 high, 16 i8 scales, d
        return np.concatenate([rng.integers(0, 256, (n, 208), dtype=np.uint8), scale((n, 1)).reshape(n, 2)], 1)
    raise ValueError(kind)


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "tiny.gguf")
    w = GGUFWriter(path, "llama")
    # Metadata of every value type.
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.5)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo ✓")
    w.add_array("test.array", [1, 2, 3])
    w.add_array("test.strings", ["a", "bc"])
    w.add_uint64("test.u64", 2**63)
    w.add_int64("test.i64", -(2**62))
    w.add_float64("test.f64", 0.1)

    expected = {}

    def add(name, kind, shape, raw):
        """`shape` in PyTorch order (outermost first); `raw` the floats (F32,
        F16) or the data bytes, one row of bytes per row of the tensor."""
        if kind in (T.F32, T.F16):
            w.add_tensor(name, raw)
        else:
            w.add_tensor(name, raw, raw_dtype=kind)
        values = quants.dequantize(raw, kind).astype(np.float32).reshape(-1)
        assert values.size == shape[0] * shape[1]
        assert np.isfinite(values).all()
        expected[name] = {"shape": list(shape), "values": [float(v) for v in values]}

    add("f32", T.F32, [3, 4], rng.standard_normal((3, 4)).astype(np.float32))
    add("f16", T.F16, [2, 8], rng.standard_normal((2, 8)).astype(np.float16))
    bf = (rng.standard_normal(16).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    add("bf16", T.BF16, [4, 4], bf.view(np.uint8).reshape(4, 8))
    for kind, per_block, name in [
        (T.Q8_0, 32, "q8_0"), (T.Q4_0, 32, "q4_0"), (T.Q4_1, 32, "q4_1"),
        (T.Q4_K, 256, "q4_k"), (T.Q5_K, 256, "q5_k"), (T.Q6_K, 256, "q6_k"),
    ]:
        rows, cols = 3, 2 * per_block
        add(name, kind, [rows, cols], blocks(kind, rows * 2).reshape(rows, -1))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f)
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and expected.json")


def smollm2():
    """Prints the reference values tests/gguf.rs checks SmolLM2 against
    (after tools/fetch_smollm2.sh): per tensor, its type, the f64 sum of its
    values, the first three and the last."""
    path = os.path.join(ROOT, ".cache", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    from gguf import GGUFReader
    reader = GGUFReader(path)
    for name in ["token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight",
                 "output_norm.weight"]:
        t = next(t for t in reader.tensors if t.name == name)
        v = quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        print(name, t.tensor_type.name, repr(float(v.astype(np.float64).sum())),
              v[:3].tolist(), v[-1].item())


if __name__ == "__main__":
    import sys
    smollm2() if sys.argv[1:] == ["--smollm2"] else main()

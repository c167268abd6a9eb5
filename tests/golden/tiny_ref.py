#!/usr/bin/python3
"""tiny_ref.py - numpy reference for tests/golden/tiny_block.c.

    tiny_ref.py make IN.safetensors T SEED [EDIT...]
                                             writes weights w.*, inputs in.* and the
                                             expected outputs expect.*; an EDIT "-NAME"
                                             leaves tensor NAME out, "NAME:f32" stores it
                                             as float32 (for the harness's error tests)
    tiny_ref.py cmp IN.safetensors OUT.safetensors
                                             compares the harness's out.* with expect.*

The safetensors reader and writer here are a few lines of json and struct, on
purpose independent of the runtime's C code that the harness uses.
"""
import json
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F64": np.float64, "I32": np.int32}


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        code = {np.dtype(v): k for k, v in DT.items()}[a.dtype]
        b = a.tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + end], DT[e["dtype"]]).reshape(e["shape"])
    return out


def reference(x, pos, w, scale):
    # k = x W^T (the cache rows), y = k * scale + causal prefix sum of k + pos, z = row sums
    k = (x.astype(np.float64) @ w.astype(np.float64).T)
    y = k * scale + np.cumsum(k, axis=0) + pos[:, None]
    z = x.astype(np.float64).sum(axis=1, keepdims=True)
    return y, z


def main():
    if sys.argv[1] == "make":
        path, T, seed = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((T, 4)).astype(np.float32)
        pos = (np.arange(T) + 3).astype(np.int32)
        w = rng.standard_normal((4, 4)).astype(np.float32)
        scale = rng.standard_normal(4).astype(np.float32)
        y, z = reference(x, pos, w, scale)
        t = {"in.x": x, "in.pos": pos, "w.lin.weight": w, "w.scale": scale,
             "expect.y": y, "expect.z": z}
        for edit in sys.argv[5:]:
            if edit.startswith("-"):
                del t[edit[1:]]
            else:
                name, _ = edit.split(":")
                t[name] = t[name].astype(np.float32)
        write_st(path, t)
        return 0
    ref, got = read_st(sys.argv[2]), read_st(sys.argv[3])
    bad = 0
    for name in ("y", "z"):
        a, e = got["out." + name].astype(np.float64), ref["expect." + name]
        if a.shape != e.shape:
            print(f"{name}: shape {a.shape}, expected {e.shape}")
            bad += 1
            continue
        err = np.linalg.norm(a - e) / np.linalg.norm(e)
        if not err <= 1e-6:
            print(f"{name}: rel_l2_err={err:.3g} FAIL")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

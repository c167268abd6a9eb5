#!/usr/bin/python3
"""gen_ref.py - PyTorch references for tests/special/ref.fdl (issue 10,
defects 6, 7, 8): writes tests/special/BLOCK.safetensors with the weights
(w.*), the inputs (in.*, float32 with NaN, +-inf, huge, denormal and shifted
rows) and the outputs PyTorch computes in float64 on those float32 values
(out64.*).  The files are committed: `make test` reads them and needs no torch.

    /usr/bin/python3 tests/special/gen_ref.py [DIR]   (default tests/special)

Where fusec's rules differ from a plain PyTorch expression, on purpose
(docs/language.md, "NaN, Inf and extreme values"), the reference follows
fusec's rule and says so here:
  - softmax of a row that is entirely -inf: zeros (torch.softmax gives NaN;
    torch's scaled_dot_product_attention gives zeros for a fully masked row);
  - attention: a key the causal mask hides contributes nothing (softmax over
    the visible keys, then those value rows), as flash attention does; the
    eager `softmax(masked scores) @ v` would multiply a hidden NaN value row
    by 0 and give NaN.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

DT = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
NAN, INF = float("nan"), float("inf")


def write_st(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.tobytes()
        header[name] = {"dtype": DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def f32(a):
    return np.asarray(a, dtype=np.float32)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float32).astype(np.float64))


def out(t):
    return t.numpy().astype(np.float64)


rng = np.random.default_rng(10)


def nan_ops():
    T, N = 6, 11
    a = f32(rng.uniform(-2, 2, (T, N)))
    c = f32(rng.uniform(-2, 2, (T, N)))
    a[0, 3] = NAN            # relu, maximum (either side), max, a linear's row
    a[1, 0] = INF
    a[1, 5] = -INF
    a[2, :] = -INF           # max of a row of -inf
    a[3, 7] = NAN
    a[3, 8] = INF
    c[4, 2] = NAN            # minimum's second operand
    a[5, 1] = 3e38           # huge, finite
    a[5, 2] = 1e-42          # denormal
    w = f32(rng.uniform(-0.5, 0.5, (N, N)))
    A, C, W = t64(a), t64(c), t64(w)
    zero = torch.zeros_like(A)
    ref = {
        "r": torch.relu(A),
        "mx0": torch.maximum(A, zero),
        "mx1": torch.maximum(zero, A),
        "mn": torch.minimum(A, C),
        "mxr": torch.amax(A, dim=-1, keepdim=True),
        "er": torch.relu(A @ W.T),
    }
    return {"in.a": a, "in.c": c, "w.w": w}, ref


def softmax_rows(x):
    """torch.softmax over the last axis; a row of only -inf gives zeros."""
    y = torch.softmax(x, dim=-1)
    allinf = torch.all(x == -INF, dim=-1)
    y[allinf] = 0.0
    return y


def softmax_attn():
    T, N, H, HD = 6, 13, 2, 8
    s = f32(rng.uniform(-3, 3, (T, N)))
    s[0, 4] = NAN            # the whole row NaN
    s[1, 2] = INF            # exp(inf - inf): the whole row NaN
    s[2, 5] = -INF           # a zero in a finite row
    s[2, 6] = -INF
    s[3, :] = -INF           # zeros (fusec's rule)
    s[4, 3] = 80.0           # exp overflows without the max shift
    s[4, 4] = -80.0
    q = f32(rng.uniform(-1, 1, (T, H * HD)))
    k = f32(rng.uniform(-1, 1, (T, H * HD)))
    v = f32(rng.uniform(-1, 1, (T, H * HD)))
    v[T - 1, 3] = NAN        # only the last query sees it: rows 0..T-2 stay finite
    v[T - 2, HD + 1] = INF   # head 1, seen by the last two queries
    k[T - 3, 2] = NAN        # head 0: a NaN score for queries T-3.. only
    q[1, HD + 4] = INF       # query 1, head 1: scores of -inf only (zeros) or with +inf (NaN)
    Q, K, V = t64(q), t64(k), t64(v)
    o = torch.zeros(T, H * HD, dtype=torch.float64)
    for h in range(H):
        cols = slice(h * HD, (h + 1) * HD)
        for t in range(T):
            sc = (Q[t, cols] @ K[: t + 1, cols].T) / np.sqrt(HD)
            o[t, cols] = softmax_rows(sc) @ V[: t + 1, cols]
    ref = {"sm": softmax_rows(t64(s)), "o": o}
    return {"in.s": s, "in.q": q, "in.k": k, "in.v": v}, ref


def norms():
    T, D, F = 9, 37, 19
    x = f32(rng.uniform(-1, 1, (T, D)))
    x[0] *= 1e30             # x * x overflows float32
    x[1] *= 2e19             # just past float's square range
    x[2] *= f32(1e-40)       # denormals: x * x underflows
    x[3] = f32(1e6 + np.round(rng.uniform(-2, 2, D)))   # one-pass variance cancels
    x[4] = f32(1e6 + rng.uniform(-2, 2, D))
    x[5, 7] = NAN            # a NaN row stays NaN
    x[6, 3] = INF            # an inf: rms gives 0 and NaN, layer_norm NaN
    x[7] = 3.0               # a constant row: layer_norm gives b
    g = f32(rng.uniform(0.5, 1.5, D))
    b = f32(rng.uniform(-0.5, 0.5, D))
    w = f32(rng.uniform(-0.5, 0.5, (F, D)))
    X, G, B, W = t64(x), t64(g), t64(b), t64(w)

    def rms(eps):
        return X / torch.sqrt(torch.mean(X * X, dim=-1, keepdim=True) + eps) * G

    def ln(eps):
        return torch.nn.functional.layer_norm(X, (D,), G, B, eps=eps)

    ref = {"rms": rms(1e-5), "ln": ln(1e-5), "rms0": rms(1e-38), "ln0": ln(1e-38),
           "lnw": ln(1e-5) @ W.T, "rmsw": rms(1e-5) @ W.T}
    return {"in.x": x, "w.g": g, "w.b": b, "w.w": w}, ref


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for name, make in (("nan_ops", nan_ops), ("softmax_attn", softmax_attn), ("norms", norms)):
        ins, ref = make()
        tensors = dict(ins)
        for k, v in ref.items():
            tensors["out64." + k] = out(v)
        meta = {"generator": "tests/special/gen_ref.py", "torch": torch.__version__, "block": name}
        write_st(os.path.join(d, name + ".safetensors"), tensors, meta)


if __name__ == "__main__":
    main()

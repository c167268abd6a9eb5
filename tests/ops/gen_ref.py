#!/usr/bin/python3
"""gen_ref.py - PyTorch references for tests/ops/ops.fdl: writes
tests/ops/BLOCK.safetensors with the weights (w.*), the inputs (in.*) and the
outputs PyTorch computes in float64 on them (out64.*), plus bad_ids.safetensors
(embed with ids out of range, which forward must refuse with FR_EINDEX).  The
files are committed: `make test` reads them and needs no torch.

    /usr/bin/python3 tests/ops/gen_ref.py [DIR]   (default tests/ops)

Where fusec's rule is more specific than PyTorch's, the reference follows
fusec's rule (docs/language.md) and says so here:
  - topk: the order of tied values is the lower index first, which is
    torch.sort(descending=True, stable=True) (NaN largest, as torch.topk);
    torch.topk's own order among ties is unspecified (1.13 on CPU returns
    [2, 4, 1] for the top 3 of [1, 3, 3, 0, 3]).  The values are checked
    against torch.topk's too.
  - cast(x, i32) of NaN or of a value outside int32: PyTorch's result is
    undefined (x86 gives INT32_MIN for both); fusec saturates (NaN -> 0).
"""
import json
import os
import struct
import sys

import numpy as np
import torch

DT = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int32): "I32"}
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


def f64(t):
    return t.to(torch.float64).numpy()


def cast_i32(x):
    """fusec's cast(x, i32): toward zero (as torch), NaN 0, saturating."""
    x = x.to(torch.float64)
    out = torch.trunc(torch.nan_to_num(x, nan=0.0).clamp(-2147483648.0, 2147483647.0))
    inside = (x.abs() < 2147483647.0) & ~torch.isnan(x)
    assert torch.equal(out[inside], x[inside].to(torch.float32).to(torch.int32).to(torch.float64))
    return out


def topk(x, k):
    v, i = torch.sort(x, dim=-1, descending=True, stable=True)
    tv, _ = torch.topk(x, k, dim=-1)
    assert torch.equal(torch.nan_to_num(v[..., :k], nan=7.0), torch.nan_to_num(tv, nan=7.0))
    return v[..., :k], i[..., :k]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/ops"
    rng = np.random.default_rng(12)
    T, N = 7, 9
    x = rng.integers(-3, 4, (T, N)).astype(np.float32) * np.float32(0.75)   # many ties
    y = rng.standard_normal((T, N)).astype(np.float32) * np.float32(3)
    x[1, 2] = x[1, 6] = NAN
    x[2, 0], x[2, 8] = INF, -INF
    x[3, :] = 1.5                     # a row of ties
    x[4, 4] = NAN
    x[5, 1], x[5, 3] = 3e9, -3e9      # outside int32
    x[6, :] = np.float32(-2.5)
    x[6, 7] = np.float32(2.5)
    y[0, 3] = x[0, 3]                 # equal pairs
    y[2, 2] = x[2, 2]
    y[4, 5] = NAN
    y[3, 3] = 2147483520.0            # the largest float below 2^31
    y[3, 4] = -2147483648.0
    b = rng.standard_normal(N).astype(np.float32)
    tx, ty, tb = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(b)

    o = {}
    for name, fn in [("lt", torch.lt), ("le", torch.le), ("gt", torch.gt), ("ge", torch.ge), ("eq", torch.eq),
                     ("ne", torch.ne)]:
        o[name] = f64(fn(tx, ty))
    o["w"] = f64(torch.where(tx > 0.5, tx, ty))
    o["wb"] = f64(torch.where(tx < tb, tb, torch.tensor(0.0)).expand(T, N))
    o["ci"] = cast_i32(tx).numpy()
    o["cf"] = cast_i32(ty).numpy()
    t = {"w.b": b, "in.x": x, "in.y": y}
    t.update({"out64." + k: v for k, v in o.items()})
    write_st(os.path.join(out, "select.safetensors"), t, {"T": str(T)})

    o = {}
    v, i = topk(tx, 4)
    o["v"], o["i"] = f64(v), f64(i)
    o["am"] = f64(torch.argmax(tx, dim=-1, keepdim=True))
    assert torch.equal(torch.argmax(tx, dim=-1, keepdim=True), i[..., :1])
    o["g"] = f64(torch.gather(ty, -1, i))
    v1, i1 = topk(ty, N)
    o["v1"], o["i1"] = f64(v1), f64(i1)
    t = {"in.x": x, "in.y": y}
    t.update({"out64." + k: v for k, v in o.items()})
    write_st(os.path.join(out, "select_k.safetensors"), t, {"T": str(T)})

    V, D = 7, 5
    table = rng.standard_normal((V, D)).astype(np.float32)
    ids = np.array([0, 6, 3, 3, 1, 6, 2], np.int32)
    ids2 = rng.integers(0, V, (T, 3)).astype(np.int32)
    te = torch.nn.functional.embedding
    t = {"w.table": table, "in.ids": ids, "in.ids2": ids2,
         "out64.e": f64(te(torch.from_numpy(ids).long(), torch.from_numpy(table))),
         "out64.e2": f64(te(torch.from_numpy(ids2).long(), torch.from_numpy(table)))}
    write_st(os.path.join(out, "embed.safetensors"), t, {"T": str(T)})
    bad = dict(t)
    bad["in.ids"] = np.array([0, 6, 3, 7, 1, 6, 2], np.int32)   # 7 is outside [0, 7)
    write_st(os.path.join(out, "bad_ids.safetensors"), bad, {"T": str(T)})


if __name__ == "__main__":
    main()

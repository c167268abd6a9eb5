#!/usr/bin/python3
"""quant_ref.py - an independent numpy model of `fusec quantize` (tests/quant/run.sh).

The quantizers follow llama.cpp's reference ones (quantize_row_q8_0_ref and
quantize_row_q4_0_ref in ggml/src/ggml-quants.c), written from their
definition in float32 numpy arithmetic, not from compiler/dtype.c:

  q8_0  per block of 32: amax = max |x|, d = amax / 127, id = 1/d (0 if d == 0),
        q = roundf(x * id) (halves away from zero), the scale stored as f16(d)
  q4_0  per block of 32: max = the first element of largest magnitude (signed),
        d = max / -8, id = 1/d (0 if d == 0), q = min(15, (int8)(x * id + 8.5)),
        byte j = q[j] | q[16 + j] << 4
  rows whose length is not a multiple of 32 pad their last block with zeros;
  bf16/f16 round to nearest even.

A safetensors file is read and written here with json and numpy alone.

  quant_ref.py gen OUT             an F32/BF16/F16 checkpoint with hard cases
  quant_ref.py compare IN OUT TYPE OUT must be IN converted to TYPE, byte for byte
  quant_ref.py malformed DIR       quantized files that the reader must refuse
                                   (DIR/bad_*.safetensors; DIR/bad.txt: name and
                                   the message each must give)
  quant_ref.py linear OUT T [plain] a golden file for qlinear.fdl: in.x [T, 45],
                                   w.a q8_0 [13, 45], w.b q4_0 [5, 45], and out64.y,
                                   out64.z computed with the activations quantized
                                   as docs/quantization.md defines (per block of
                                   32, d = amax / 127, q = rint(x / d), ties to
                                   even); `plain` leaves them unquantized (a
                                   reference the kernels must fail against)
"""
import json
import struct
import sys

import numpy as np

QKEY = "fusec.quant."
NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "U8": np.uint8, "I32": np.int32}


def read_st(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n].decode())
    meta = hdr.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, t in hdr.items():
        a, b = t["data_offsets"]
        out[name] = (t["dtype"], list(t["shape"]), data[a:b])
    return out, meta


def write_st(path, tensors, meta=None):
    """tensors: name -> (dtype, shape, bytes), written in the order given."""
    hdr, off, blobs = {}, 0, []
    for name, (dt, shape, b) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    if meta:
        hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bf16_bits(x):
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, np.float32))
    return np.where(nan, ((u >> 16) | 0x40).astype(np.uint16), r)


def to_f32(dt, b, shape):
    if dt == "F32":
        return np.frombuffer(b, np.float32).reshape(shape)
    if dt == "F16":
        return np.frombuffer(b, np.float16).astype(np.float32).reshape(shape)
    if dt == "BF16":
        return (np.frombuffer(b, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    raise ValueError(dt)


def roundf(x):
    """C's roundf: halves away from zero (x - trunc(x) is exact)."""
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= np.float32(0.5), t + np.sign(x), t).astype(np.float32)


def q8_0_block(x):
    amax = np.float32(np.max(np.abs(x)))
    d = np.float32(amax / np.float32(127))
    idv = np.float32(np.float32(1) / d) if d != 0 else np.float32(0)
    q = roundf((x * idv).astype(np.float32)).astype(np.int8)
    return np.float16(d).tobytes() + q.tobytes()


def q4_0_block(x):
    i = int(np.argmax(np.abs(x)))          # the first of largest magnitude
    mx = np.float32(x[i]) if np.abs(x[i]) > 0 else np.float32(0)
    d = np.float32(mx / np.float32(-8))
    idv = np.float32(np.float32(1) / d) if d != 0 else np.float32(0)
    y = ((x * idv).astype(np.float32) + np.float32(8.5)).astype(np.float32)
    q = np.minimum(15, np.trunc(y).astype(np.int64))
    b = (q[:16] | (q[16:] << 4)).astype(np.uint8)
    return np.float16(d).tobytes() + b.tobytes()


def quantize(x, ty):
    """x: float32 array; returns (dtype, stored shape, bytes, metadata value or None)."""
    if ty == "bf16":
        return "BF16", list(x.shape), bf16_bits(x).tobytes(), None
    if ty == "f16":
        return "F16", list(x.shape), x.astype(np.float16).tobytes(), None
    blk = q8_0_block if ty == "q8_0" else q4_0_block
    bb = 34 if ty == "q8_0" else 18
    k = x.shape[-1]
    nb = (k + 31) // 32
    rows = x.reshape(-1, k)
    out = []
    for r in rows:
        p = np.zeros(nb * 32, np.float32)
        p[:k] = r
        for c in range(nb):
            out.append(blk(p[32 * c:32 * c + 32]))
    shape = list(x.shape[:-1]) + [nb * bb]
    return "U8", shape, b"".join(out), "%s%s" % (ty.upper(), json.dumps(list(x.shape)).replace(" ", ""))


def gen(path):
    rng = np.random.default_rng(11)
    t = {}

    def f32(name, a):
        t[name] = ("F32", list(a.shape), np.ascontiguousarray(a, np.float32).tobytes())

    f32("a.weight", rng.standard_normal((13, 45)).astype(np.float32))          # K = 45: a padded block
    f32("b.weight", (rng.standard_normal((5, 96)) * 1e-3).astype(np.float32))  # three full blocks
    f32("c.weight", rng.standard_normal((3, 7)).astype(np.float32))            # one padded block
    ties = np.tile(np.arange(-16, 16, dtype=np.float32) * np.float32(0.5), (2, 1))
    ties[1, 5] = 8.0                                      # q4_0 halves at d = -1
    halves = np.arange(-16, 16, dtype=np.float32) + np.float32(0.5)
    halves[31] = 127.0                                    # q8_0: d = 1, x * id = k + 1/2 exactly
    ties = np.vstack([ties, halves[None, :]])
    f32("ties.weight", ties)
    z = np.zeros((2, 64), np.float32)
    z[1, 40] = -3.0                                       # an all-zero block; a negative max
    z[1, 41] = 3.0                                        # ... tied in magnitude (the first wins)
    f32("zero.weight", z)
    f32("big.weight", (rng.standard_normal((2, 33)) * 6e4).astype(np.float32))  # scales near f16's top
    f32("tiny.weight", (rng.standard_normal((2, 32)) * 1e-7).astype(np.float32))  # subnormal f16 scales
    f32("norm.weight", rng.standard_normal(45).astype(np.float32))            # rank 1: stays f32
    # bf16 and f16 sources
    src = rng.standard_normal((4, 40)).astype(np.float32)
    t["bsrc.weight"] = ("BF16", [4, 40], bf16_bits(src).tobytes())
    t["hsrc.weight"] = ("F16", [4, 40], src.astype(np.float16).tobytes())
    t["pos"] = ("I32", [3], np.arange(3, dtype=np.int32).tobytes())
    write_st(path, t, {"config": "{\"note\": \"quant_ref\"}"})



def deq(ty, b, shape):
    """The float64 values of a q8_0/q4_0 tensor's bytes."""
    k = shape[-1]
    nb = (k + 31) // 32
    bb = 34 if ty == "q8_0" else 18
    raw = np.frombuffer(b, np.uint8).reshape(-1, nb, bb)
    d = raw[:, :, :2].copy().view(np.float16)[:, :, 0].astype(np.float64)
    if ty == "q8_0":
        q = raw[:, :, 2:].view(np.int8).astype(np.float64)
    else:
        n = raw[:, :, 2:].astype(np.int64)
        q = np.concatenate([n & 15, n >> 4], axis=2).astype(np.float64) - 8
    return (d[:, :, None] * q).reshape(raw.shape[0], nb * 32)[:, :k]


def quantize_act(x):
    """A row of activations as the q8_0/q4_0 linear sees it (float64 result)."""
    k = x.shape[-1]
    out = np.zeros(k, np.float64)
    for b0 in range(0, k, 32):
        xb = x[b0:b0 + 32].astype(np.float32)
        if not np.all(np.isfinite(xb)):
            out[b0:b0 + 32] = np.nan
            continue
        amax = np.float32(np.max(np.abs(xb)))
        d = np.float32(amax / np.float32(127))
        idv = np.float32(np.float32(1) / d) if d >= np.finfo(np.float32).tiny else np.float32(0)
        q = np.rint((xb * idv).astype(np.float32))        # numpy's rint: ties to even
        out[b0:b0 + 32] = np.float64(d) * q.astype(np.float64)
    return out


def linear(path, T, plain=False):
    rng = np.random.default_rng(5)
    T = int(T)
    x = (rng.standard_normal((T, 45)) * np.exp(rng.uniform(-3, 3, (T, 1)))).astype(np.float32)
    # a block whose largest element is 127: d = 1, and x * id = k + 1/2 exactly
    # for the halves (ties to even: 2.5 -> 2, -3.5 -> -4; roundf would give 3, -4)
    x[0, :32] = np.arange(-16, 16, dtype=np.float32) + np.float32(0.5)
    x[0, 31] = 127.0
    if T > 1:
        x[1, 32:] = 0.0                                   # an all-zero (padded) block
    if T > 2:
        x[2, :32] *= np.float32(1e-38)                    # d subnormal: the block counts 0
    t = {"in.x": ("F32", [T, 45], x.tobytes())}
    meta = {}
    outs = {}
    for name, ty, n in (("a", "q8_0", 13), ("b", "q4_0", 5)):
        w = rng.standard_normal((n, 45)).astype(np.float32)
        dt, shape, b, m = quantize(w, ty)
        t["w." + name] = (dt, shape, b)
        meta[QKEY + "w." + name] = m
        outs[name] = deq(ty, b, [n, 45])
    for oname, wname in (("y", "a"), ("z", "b")):
        wd = outs[wname]
        y = np.zeros((T, wd.shape[0]), np.float64)
        for r in range(T):
            xr = x[r].astype(np.float64) if plain else quantize_act(x[r])
            y[r] = wd @ xr
        t["out64." + oname] = ("F64", [T, wd.shape[0]], y.tobytes())
    write_st(path, t, meta)
    return 0

def compare(inp, out, ty):
    src, smeta = read_st(inp)
    dst, dmeta = read_st(out)
    bad = 0
    if set(src) != set(dst):
        print("names differ: %s vs %s" % (sorted(src), sorted(dst)))
        return 1
    for k, v in smeta.items():
        if dmeta.get(k) != v:
            print("metadata %s not copied" % k)
            bad += 1
    for name in sorted(src):
        dt, shape, b = src[name]
        conv = dt in ("F32", "BF16", "F16") and len(shape) == 2
        if conv:
            want = quantize(to_f32(dt, b, shape), ty)
        else:
            want = (dt, shape, b, None)
        got = dst[name]
        mv = dmeta.get(QKEY + name)
        if (got[0], got[1], mv) != (want[0], want[1], want[3]):
            print("%s: got %s %s %s, want %s %s %s" % (name, got[0], got[1], mv, want[0], want[1], want[3]))
            bad += 1
        elif got[2] != want[2]:
            a, w = np.frombuffer(got[2], np.uint8), np.frombuffer(want[2], np.uint8)
            i = int(np.nonzero(a != w)[0][0])
            print("%s: byte %d differs (%d, numpy %d) of %d" % (name, i, a[i], w[i], len(a)))
            bad += 1
    extra = [k for k in dmeta if k.startswith(QKEY) and k[len(QKEY):] not in dst]
    if extra:
        print("stray metadata %s" % extra)
        bad += 1
    print("%s: %d tensors, %d differ" % (ty, len(src), bad))
    return 1 if bad else 0


def malformed(d):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 45)).astype(np.float32)
    good = quantize(x, "q8_0")
    g4 = quantize(x, "q4_0")
    cases = []

    def case(name, tensors, meta, msg):
        write_st("%s/bad_%s.safetensors" % (d, name), tensors, meta)
        cases.append("%s\t%s" % (name, msg))

    w = {"w": (good[0], good[1], good[2])}
    m = {QKEY + "w": good[3]}
    write_st("%s/good_q8_0.safetensors" % d, w, m)
    write_st("%s/good_q4_0.safetensors" % d, {"w": g4[:3]}, {QKEY + "w": g4[3]})
    case("short", {"w": ("U8", [3, 67], good[2][:3 * 67])}, m, "blocks need U8")
    case("wrongshape", w, {QKEY + "w": "Q8_0[3,70]"}, "blocks need U8")
    case("notu8", {"w": ("F32", [3, 45], x.tobytes())}, {QKEY + "w": "Q8_0[3,45]"}, "stored as U8")
    case("unknown", w, {QKEY + "w": "Q5_1[3,45]"}, "unknown quantized type")
    case("syntax", w, {QKEY + "w": "Q8_0[3,,45]"}, "whole numbers")
    case("trailing", w, {QKEY + "w": "Q8_0[3,45]x"}, "trailing characters")
    case("noname", w, {QKEY + "v": good[3]}, "names no tensor")
    case("rank0", w, {QKEY + "w": "Q8_0[]"}, "quantized shape")
    b = bytearray(good[2])
    b[34 + 2 + 20] = 1                                # row 0, last block, element 20 >= 45 % 32
    case("padding", {"w": ("U8", good[1], bytes(b))}, m, "non-zero padding")
    b4 = bytearray(g4[2])
    b4[18 + 2 + 14] = 0x11                            # q4_0 row 0 block 1: nibbles 1, not 8
    case("padding4", {"w": ("U8", g4[1], bytes(b4))}, {QKEY + "w": g4[3]}, "non-zero padding")
    b = bytearray(good[2])
    b[34 * 3] = 0x00
    b[34 * 3 + 1] = 0x7C                              # row 1 block 0: scale +inf
    case("infscale", {"w": ("U8", good[1], bytes(b))}, m, "not finite")
    b = bytearray(good[2])
    b[1] = 0xFE                                       # row 0 block 0: a NaN scale
    case("nanscale", {"w": ("U8", good[1], bytes(b))}, m, "not finite")
    open("%s/bad.txt" % d, "w").write("\n".join(cases) + "\n")
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "gen" and len(sys.argv) == 3:
        sys.exit(gen(sys.argv[2]))
    if cmd == "compare" and len(sys.argv) == 5:
        sys.exit(compare(*sys.argv[2:]))
    if cmd == "malformed" and len(sys.argv) == 3:
        sys.exit(malformed(sys.argv[2]))
    if cmd == "linear" and len(sys.argv) in (4, 5):
        sys.exit(linear(sys.argv[2], sys.argv[3], len(sys.argv) == 5 and sys.argv[4] == "plain"))
    sys.exit(__doc__)

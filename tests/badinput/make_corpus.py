#!/usr/bin/python3
"""make_corpus.py [--big DIR] - writes the bad-input corpus that run.sh
pins fusec's messages on: tests/badinput/st/*.safetensors (bad weight files)
and tests/badinput/fdl/*.fdl (bad source files).  With --big DIR it writes
instead the inputs too large to keep in the tree (deep nesting, long
lines, long import chains, a 2000-statement block) into DIR.

Every file starts from the same valid file for block.fdl: weights w.*,
inputs in.* (T = 3) and the reference out.y computed here with numpy in
float64.  ok.safetensors is that file; each other one breaks exactly one
thing: the container (truncated, corrupt length, bad JSON, offsets,
dtypes, shapes, names) or the agreement with the block (wrong dtype, wrong
shape, missing, misspelt and extra weights, inputs that disagree).  The
output is deterministic (fixed seed), so the committed files can be
regenerated and diffed.
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
T = 3


def reference(x, pos, nw, pw):
    x = x.astype(np.float64)
    h = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + 1e-5) * nw
    q = h @ pw.astype(np.float64).T
    hd = 2
    inv = 10000.0 ** (-np.arange(0, hd, 2) / hd)
    ang = pos[:, None].astype(np.float64) * inv[None, :]
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)
    out = np.empty_like(q)
    for h0 in range(0, q.shape[1], hd):
        x1, x2 = q[:, h0:h0 + hd // 2], q[:, h0 + hd // 2:h0 + hd]
        rot = np.concatenate([-x2, x1], axis=-1)
        out[:, h0:h0 + hd] = q[:, h0:h0 + hd] * cos + rot * sin
    return out


def tensors():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((T, 4)).astype(np.float32)
    pos = np.arange(T, dtype=np.int32)
    nw = (1 + 0.1 * rng.standard_normal(4)).astype(np.float32)
    pw = (rng.standard_normal((4, 4)) / 2).astype(np.float32)
    return {"in.x": x, "in.pos": pos, "w.norm.weight": nw, "w.proj.weight": pw,
            "out.y": reference(x, pos, nw, pw)}


CODES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int32): "I32",
         np.dtype(np.int64): "I64", np.dtype(np.float16): "F16", np.dtype(np.uint8): "U8"}


def layout(ts, order=None):
    """(header dict, data bytes) for tensors in name order."""
    header, data = {}, b""
    for name in order or sorted(ts):
        a = np.ascontiguousarray(ts[name])
        b = a.tobytes()
        header[name] = {"dtype": CODES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    return header, data


def pack(header_bytes, data, pad=True):
    if pad:
        header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


def file_of(ts):
    h, d = layout(ts)
    return pack(json.dumps(h).encode(), d)


def edit_header(fn):
    """The valid file with its parsed header changed by fn(header)."""
    h, d = layout(tensors())
    fn(h)
    return pack(json.dumps(h).encode(), d)


def without(name, **extra):
    ts = tensors()
    del ts[name]
    ts.update(extra)
    return file_of(ts)


def replaced(name, value):
    ts = tensors()
    ts[name] = value
    return file_of(ts)


def cases():
    ok = file_of(tensors())
    h, d = layout(tensors())
    hb = json.dumps(h).encode()
    n = len(pack(hb, b""))
    ts = tensors()
    c = {}
    c["ok"] = ok
    # the container
    c["empty"] = b""
    c["short_length"] = b"\x10\x00\x00\x00\x00"
    c["header_length_huge"] = struct.pack("<Q", 1 << 62) + ok[8:]
    c["header_length_past_eof"] = struct.pack("<Q", len(ok)) + ok[8:]
    c["truncated_header"] = ok[:n // 2]
    c["truncated_data"] = ok[:len(ok) - 10]
    c["bad_json"] = pack(hb.replace(b'"dtype"', b'"dtype" "', 1), d)
    c["header_not_object"] = pack(b"[1, 2, 3]", b"")
    c["header_deep_nesting"] = pack(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", b"")
    c["header_not_utf8"] = pack(hb.replace(b"w.norm.weight", b"w.norm.\xff\xfeight", 1), d)
    c["trailing_garbage_in_header"] = pack(hb + b" x", d, pad=False)
    c["unknown_dtype"] = edit_header(lambda h: h["w.proj.weight"].update(dtype="Q4_K"))
    c["shape_negative"] = edit_header(lambda h: h["w.norm.weight"].update(shape=[-4]))
    c["shape_not_integer"] = edit_header(lambda h: h["w.norm.weight"].update(shape=[4.5]))
    c["shape_overflow"] = edit_header(lambda h: h["w.proj.weight"].update(shape=[1 << 40, 1 << 40, 1 << 40]))
    c["offsets_wrong_size"] = edit_header(
        lambda h: h["w.norm.weight"].update(data_offsets=[h["w.norm.weight"]["data_offsets"][0],
                                                          h["w.norm.weight"]["data_offsets"][1] - 4]))
    c["offsets_past_end"] = edit_header(
        lambda h: h["out.y"].update(data_offsets=[len(d) + 8, len(d) + 8 + 96]))
    c["offsets_overlap"] = edit_header(
        lambda h: h["w.norm.weight"].update(data_offsets=list(h["w.proj.weight"]["data_offsets"][:1])
                                            + [h["w.proj.weight"]["data_offsets"][0] + 16]))
    c["offsets_reversed"] = edit_header(
        lambda h: h["w.norm.weight"].update(data_offsets=h["w.norm.weight"]["data_offsets"][::-1]))
    c["missing_dtype_field"] = edit_header(lambda h: h["w.norm.weight"].pop("dtype"))
    c["duplicate_name"] = pack(hb.replace(b'"in.pos"', b'"in.x"', 1), d)
    c["metadata_not_strings"] = edit_header(lambda h: h.update({"__metadata__": {"a": 1}}))
    # agreement with the block
    c["weight_wrong_dtype"] = replaced("w.proj.weight", ts["w.proj.weight"].astype(np.float64))
    c["weight_f16"] = replaced("w.norm.weight", ts["w.norm.weight"].astype(np.float16))
    c["weight_wrong_shape"] = replaced("w.proj.weight", ts["w.proj.weight"][:, :3].copy())
    c["weight_wrong_rank"] = replaced("w.proj.weight", ts["w.proj.weight"].reshape(16))
    c["weight_missing"] = without("w.proj.weight")
    c["weight_misspelt"] = without("w.proj.weight", **{"w.proj.weigth": ts["w.proj.weight"]})
    c["weight_extra"] = file_of(dict(ts, **{"w.proj.bias": np.zeros(4, np.float32)}))
    c["input_wrong_dtype"] = replaced("in.pos", ts["in.pos"].astype(np.float32))
    c["input_missing"] = without("in.x")
    c["input_extra"] = file_of(dict(ts, **{"in.mask": np.zeros(T, np.float32)}))
    c["input_wrong_rank"] = replaced("in.x", ts["in.x"].reshape(T * 4))
    c["input_wrong_width"] = replaced("in.x", np.zeros((T, 5), np.float32))
    c["inputs_disagree_on_T"] = replaced("in.pos", np.arange(T + 1, dtype=np.int32))
    c["no_tokens"] = file_of({"in.x": np.zeros((0, 4), np.float32), "in.pos": np.zeros(0, np.int32),
                              "w.norm.weight": ts["w.norm.weight"], "w.proj.weight": ts["w.proj.weight"],
                              "out.y": np.zeros((0, 4))})
    c["reference_missing"] = without("out.y")
    c["reference_wrong_shape"] = replaced("out.y", ts["out.y"][:2].copy())
    c["reference_u8"] = replaced("out.y", np.zeros((T, 4), np.uint8))
    return c


GOOD = b"block b {\n    dim T;\n    input x: f32[T, 4];\n    output y = silu(x);\n}\n"


def block(body):
    return b"block b {\n    dim T;\n    input x: f32[T, 4];\n" + body + b"}\n"


def fdl_cases():
    """Bad source files: bytes that are not the language, numbers and dims
    out of range, imports of things that are not source files."""
    c = {}
    c["binary_elf"] = b"\x7fELF\x02\x01\x01\x00" + bytes(range(0, 256, 7)) + b"\x00\x00"
    c["binary_random"] = bytes((i * 167 + 13) % 256 for i in range(300))
    c["nul_byte"] = GOOD.replace(b"silu(x)", b"si\x00lu(x)")
    c["latin1_identifier"] = GOOD.replace(b"input x:", b"input caf\xe9:")
    c["utf8_identifier"] = GOOD.replace(b"input x:", b"input x\xc3\xa9:")
    c["utf8_bom"] = b"\xef\xbb\xbf" + GOOD
    c["invalid_utf8_in_string"] = block(b'    output y = linear(x, x, layout = "in\xff_out");\n')
    c["utf16"] = GOOD.decode().encode("utf-16")
    c["empty"] = b""
    c["only_comments"] = b"// nothing here\n/* at all */\n"
    c["unterminated_block"] = GOOD[:-2]
    c["truncated_mid_token"] = GOOD[:GOOD.index(b"silu") + 2]
    c["integer_too_large"] = block(b"    dim D = 99999999999999999999;\n    output y = x;\n")
    c["dim_huge"] = b"block b {\n    dim T;\n    dim D = 4611686018427387904;\n    input x: f32[T, D];\n" \
        b"    output y = silu(x);\n}\n"
    c["dim_product_huge"] = b"block b {\n    dim T;\n    dim D = 3037000500;\n    input x: f32[T, D, D];\n" \
        b"    output y = silu(x);\n}\n"
    c["weight_huge"] = block(b"    weight w: f32[100000000000, 100000000000];\n    output y = x * sum(sum(w), axis = 0);\n")
    c["dim_mul_overflow"] = block(b"    dim D = 4611686018427387904 * 4;\n    output y = x;\n")
    c["dim_add_overflow"] = block(b"    dim D = 9223372036854775807 + 1;\n    output y = x;\n")
    c["dim_coefficient_overflow"] = b"block b {\n    dim T;\n    input x: f32[9223372036854775807 * T, 4];\n" \
        b"    output y = silu(x);\n}\n"
    c["dim_zero"] = block(b"    dim D = 0;\n    weight w: f32[D];\n    output y = x;\n")
    c["axis_huge"] = block(b"    output y = sum(x, axis = 9223372036854775807);\n")
    c["slice_huge"] = block(b"    output y = slice(x, axis = 1, start = 9223372036854775807, len = 9223372036854775807);\n")
    c["float_overflow"] = block(b"    output y = x * 1e999;\n")
    c["import_dev_zero"] = b'import "/dev/zero";\n' + GOOD
    c["import_directory"] = b'import ".";\n' + GOOD
    c["import_binary"] = b'import "binary_elf.fdl";\n' + GOOD
    c["import_self"] = b'import "import_self.fdl";\n' + GOOD
    return c


def big_cases(out):
    """Inputs too large to commit, as (name, bytes)."""
    c = {}
    c["deep_parens"] = block(b"    output y = " + b"(" * 50000 + b"x" + b")" * 50000 + b";\n")
    c["deep_unary_minus"] = block(b"    output y = " + b"-" * 200000 + b"x;\n")
    c["deep_dim_expression"] = block(b"    dim D = " + b"(" * 50000 + b"4" + b")" * 50000 +
                                     b";\n    output y = x;\n")
    c["deep_type"] = b"block b {\n    dim T;\n    input x: f32[T, " + b"(" * 50000 + b"4" + b")" * 50000 + \
        b"];\n    output y = silu(x);\n}\n"
    c["deep_list"] = block(b"    output y = reshape(x, " + b"[" * 50000 + b"]" * 50000 + b");\n")
    c["deep_keyword"] = block(b"    output y = sum(x, axis = " + b"-(" * 30000 + b"1" + b")" * 30000 + b");\n")
    c["long_sum"] = block(b"    output y = " + b" + ".join(b"x" for _ in range(5000)) + b";\n")
    c["long_line"] = block(b"    output y = silu(x);" + b" " * 2000000 + b"oops\n")
    c["long_identifier"] = block(b"    " + b"v" * 1000000 + b" = silu(x);\n    output y = " + b"w" * 1000000 + b";\n")
    c["many_errors"] = block(b"    y = nope;\n" * 1000 + b"    output y = x;\n")
    c["fn_nested_calls"] = b"".join(b"fn g%d(x) { return g%d(x); }\n" % (i, i + 1) for i in range(100)) + \
        b"fn g100(x) { return silu(x); }\n" + block(b"    output y = g0(x);\n")
    body = b"    v0 = x;\n" + b"".join(b"    v%d = silu(v%d) * 0.5 + v%d * 0.5;\n" % (i, i - 1, i - 1)
                                     for i in range(1, 2001))
    c["long_chain"] = block(body + b"    output y = v2000;\n")
    os.makedirs(os.path.join(out, "imports"), exist_ok=True)
    for i in range(100):
        with open(os.path.join(out, "imports", "m%d.fdl" % i), "wb") as f:
            f.write(b'import "m%d.fdl";\nconst c%d = 1.0;\n' % (i + 1, i))
    with open(os.path.join(out, "imports", "m100.fdl"), "wb") as f:
        f.write(b"const c100 = 1.0;\n")
    c["import_chain"] = b'import "imports/m0.fdl";\n' + GOOD
    return c


def write_all(out, cases, ext):
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(cases.items()):
        with open(os.path.join(out, name + ext), "wb") as f:
            f.write(data)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--big":
        write_all(sys.argv[2], big_cases(sys.argv[2]), ".fdl")
        return
    write_all(os.path.join(HERE, "st"), cases(), ".safetensors")
    write_all(os.path.join(HERE, "fdl"), fdl_cases(), ".fdl")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""make_seeds.py DIR - small safetensors files that seed the fuzz_st corpus.

Each seed is valid and small (the fuzzer mutates from the success path):
the weights fuzz_st.c's block binds, every dtype, scalars, empty and
rank-8 tensors, data placed at odd offsets (the reader copies those into an
aligned buffer), metadata, and the real golden files' headers with their
tensors shrunk to a few elements.  Python's json and struct only; the
format is written by hand so that offsets and padding can be chosen.
"""
import json
import os
import struct
import sys

SIZES = {"F64": 8, "F32": 4, "I64": 8, "I32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1, "BOOL": 1}


def write(path, tensors, metadata=None, pad_to=8, gap=0):
    """tensors: list of (name, dtype, shape); data bytes are 1, 2, 3, ...;
    gap bytes are left between tensors (the offsets say where each is)."""
    header, blobs, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape in tensors:
        n = SIZES[dt]
        for d in shape:
            n *= d
        off += gap
        blobs += b"\0" * gap
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + n]}
        blobs += bytes((i * 7 + 1) & 0xFF for i in range(n))
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad_to:
        h += b" " * (-len(h) % pad_to)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blobs)


def shrunk_golden(src, dst):
    """The golden file's header (names, dtypes, metadata) with every tensor
    shrunk to at most 2 elements per dim."""
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    meta = h.pop("__metadata__", None)
    tensors = [(k, v["dtype"], [min(d, 2) for d in v["shape"]]) for k, v in sorted(h.items())]
    write(dst, tensors, meta)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    block = [("w.input_layernorm.weight", "F32", [4]), ("w.self_attn.q_proj.weight", "F32", [4, 4]),
             ("w.position_ids", "I32", [3]), ("w.scale", "F32", [])]
    write(f"{out}/block.safetensors", block, {"format": "pt"})
    write(f"{out}/block_misaligned.safetensors", [("a.byte", "U8", [1])] + block, pad_to=0)
    write(f"{out}/block_gaps.safetensors", block, gap=3)
    write(f"{out}/dtypes.safetensors", [(f"t.{d.lower()}", d, [2, 3]) for d in SIZES])
    write(f"{out}/shapes.safetensors", [("scalar", "F32", []), ("empty", "F32", [0]), ("empty2", "F32", [3, 0, 2]),
                                        ("rank8", "I8", [1, 2, 1, 2, 1, 1, 2, 1]), ("big1", "F32", [1, 1, 1, 1])])
    write(f"{out}/empty.safetensors", [])
    write(f"{out}/metadata.safetensors", [("x", "F32", [1])], {"a": "b", "unicode": "\u00e9\u4e2d", "esc": "q\"\\\n"})
    gold = os.environ.get("GOLDEN_DIR", "")
    for name in ("llama_layer", "gpt2_block"):
        src = os.path.join(gold, name + ".safetensors")
        if gold and os.path.exists(src):
            shrunk_golden(src, f"{out}/{name}_shrunk.safetensors")


if __name__ == "__main__":
    main()

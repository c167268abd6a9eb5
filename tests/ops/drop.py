#!/usr/bin/python3
"""drop.py IN OUT NAME... - a copy of safetensors file IN without the named
tensors (the golden Llama layer's in.position_ids, for a block that makes its
positions itself)."""
import json
import struct
import sys

src, dst, names = sys.argv[1], sys.argv[2], set(sys.argv[3:])
data = open(src, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
head = json.loads(data[8:8 + n])
body = data[8 + n:]
out, blobs, off = {}, [], 0
for k, v in head.items():
    if k == "__metadata__":
        out[k] = v
        continue
    if k in names:
        continue
    b = body[v["data_offsets"][0]:v["data_offsets"][1]]
    out[k] = dict(v, data_offsets=[off, off + len(b)])
    blobs.append(b)
    off += len(b)
h = json.dumps(out).encode()
h += b" " * (-len(h) % 8)
open(dst, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

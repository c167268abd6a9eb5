#!/usr/bin/python3
"""tests/model/shard.py GOLDEN OUTDIR - a Hugging Face-style checkpoint made
from a whole-model golden file: its w.* tensors, without the prefix, spread
over two shards (model-00001-of-00002.safetensors: the embedding and layer 0;
model-00002-of-00002.safetensors: the rest), the model.safetensors.index.json
naming them, and config.json from the golden file's metadata.  Also writes
prompt.txt (in.input_ids, comma-separated) and expected.txt
(out64.generated_ids, space-separated).  Standard library only."""
import json
import os
import struct
import sys

golden, out = sys.argv[1], sys.argv[2]
with open(golden, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
meta = header.pop("__metadata__", {})


def raw(name):
    a, b = header[name]["data_offsets"]
    return data[a:b]


def ints(name):
    b = raw(name)
    return struct.unpack("<%di" % (len(b) // 4), b)


def write(path, names):
    hdr, off, blobs = {}, 0, []
    for k in names:
        b = raw(k)
        hdr[k[2:]] = {"dtype": header[k]["dtype"], "shape": header[k]["shape"],
                      "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


os.makedirs(out, exist_ok=True)
weights = sorted(k for k in header if k.startswith("w."))
first = [k for k in weights if k.startswith("w.model.embed_tokens.") or k.startswith("w.model.layers.0.")]
rest = [k for k in weights if k not in first]
shards = {"model-00001-of-00002.safetensors": first, "model-00002-of-00002.safetensors": rest}
for name, keys in shards.items():
    write(os.path.join(out, name), keys)
index = {"metadata": {"total_size": sum(len(raw(k)) for k in weights)},
         "weight_map": {k[2:]: s for s, keys in shards.items() for k in keys}}
with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
    json.dump(index, f, indent=2)
with open(os.path.join(out, "config.json"), "w") as f:
    f.write(meta["config"])
with open(os.path.join(out, "prompt.txt"), "w") as f:
    f.write(",".join(map(str, ints("in.input_ids"))) + "\n")
with open(os.path.join(out, "expected.txt"), "w") as f:
    f.write(" ".join(map(str, ints("out64.generated_ids"))) + "\n")

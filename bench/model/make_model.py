#!/usr/bin/python3
"""make_model.py OUTDIR [--layers 16 --vocab 128256 --hidden 2048 --inter 8192
--heads 32 --kv-heads 8 --head-dim 64 --prompt 512 --seed 0] - a Llama
checkpoint of random weights for W6 (bench/model/w6.sh): config.json (tied
embeddings, rope_theta 500000, as Llama-3.2-1B), model.safetensors (float32,
N(0, 0.02) matrices, unit norms) and prompt.txt (PROMPT random ids).
numpy only; about 5 GB at the default (Llama-3.2-1B) shape."""
import argparse
import json
import os
import struct

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
for k, v in [("layers", 16), ("vocab", 128256), ("hidden", 2048), ("inter", 8192), ("heads", 32),
             ("kv-heads", 8), ("head-dim", 64), ("prompt", 512), ("seed", 0)]:
    ap.add_argument("--" + k, type=int, default=v)
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": a.vocab,
       "hidden_size": a.hidden, "intermediate_size": a.inter, "num_hidden_layers": a.layers,
       "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": a.head_dim,
       "rms_norm_eps": 1e-5, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"},
       "rope_theta": 500000.0, "tie_word_embeddings": True, "hidden_act": "silu",
       "max_position_embeddings": 131072, "torch_dtype": "float32"}
with open(os.path.join(a.out, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
D, I, H, KVH, HD = a.hidden, a.inter, a.heads, a.kv_heads, a.head_dim
shapes = [("model.embed_tokens.weight", (a.vocab, D)), ("model.norm.weight", (D,))]
for i in range(a.layers):
    p = "model.layers.%d." % i
    shapes += [(p + "input_layernorm.weight", (D,)), (p + "post_attention_layernorm.weight", (D,)),
               (p + "self_attn.q_proj.weight", (H * HD, D)), (p + "self_attn.k_proj.weight", (KVH * HD, D)),
               (p + "self_attn.v_proj.weight", (KVH * HD, D)), (p + "self_attn.o_proj.weight", (D, H * HD)),
               (p + "mlp.gate_proj.weight", (I, D)), (p + "mlp.up_proj.weight", (I, D)),
               (p + "mlp.down_proj.weight", (D, I))]
hdr, off = {}, 0
for name, shape in shapes:
    n = int(np.prod(shape)) * 4
    hdr[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
    off += n
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
rng = np.random.default_rng(a.seed)
with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for name, shape in shapes:
        if len(shape) == 1:
            f.write(np.ones(shape, np.float32).tobytes())
        else:
            for r0 in range(0, shape[0], 4096):  # in slices: little memory at any size
                rows = min(4096, shape[0] - r0)
                x = rng.standard_normal((rows, shape[1]), dtype=np.float32) * np.float32(0.02)
                f.write(x.tobytes())
with open(os.path.join(a.out, "prompt.txt"), "w") as f:
    f.write(",".join(str(int(x)) for x in rng.integers(0, a.vocab, a.prompt)) + "\n")

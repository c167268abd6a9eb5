#!/usr/bin/python3
"""torch_peer.py DIR [--threads N] [--decode N] - W6's PyTorch peer: the
checkpoint of bench/model/make_model.py (config.json, model.safetensors,
prompt.txt) run as Hugging Face's LlamaForCausalLM computes it (eager:
F.linear, rotate-half RoPE with float64 angles, repeat_kv, matmul-softmax-matmul attention under a causal mask, the
tied embedding as lm_head, the last position's logits), with a preallocated
KV cache: one prefill call of the prompt, then greedy decode one token at a
time.  Prints the tokens (to compare with fusec run's) and the speeds.
Needs python3-torch and numpy; the weights are memory-mapped, not copied."""
import argparse
import json
import os
import struct
import time

import warnings

import numpy as np
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--decode", type=int, default=64)
a = ap.parse_args()
torch.set_num_threads(a.threads)
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # read only, never written
cfg = json.load(open(os.path.join(a.dir, "config.json")))
path = os.path.join(a.dir, "model.safetensors")
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    hdr = json.loads(f.read(n))
mm = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)


def W(name):
    m = hdr[name]
    a0, a1 = m["data_offsets"]
    return torch.from_numpy(np.frombuffer(mm[a0:a1], dtype=np.float32).reshape(m["shape"]))


D, H, KVH, HD = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
L, eps, theta = cfg["num_hidden_layers"], cfg["rms_norm_eps"], cfg["rope_parameters"]["rope_theta"]
emb, norm = W("model.embed_tokens.weight"), W("model.norm.weight")
layers = []
for i in range(L):
    p = "model.layers.%d." % i
    layers.append({k: W(p + k) for k in ["input_layernorm.weight", "post_attention_layernorm.weight",
                                         "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                         "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                         "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]})
ids = [int(x) for x in open(os.path.join(a.dir, "prompt.txt")).read().split(",")]
cap = len(ids) + a.decode + 1
kc = [torch.zeros(KVH, cap, HD) for _ in range(L)]
vc = [torch.zeros(KVH, cap, HD) for _ in range(L)]
inv = 1.0 / (theta ** (torch.arange(0, HD, 2, dtype=torch.float64) / HD))


def rms(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, pos):      # x [heads, T, HD]
    ang = pos.double()[:, None] * inv[None, :]
    ang = torch.cat([ang, ang], -1)
    cos, sin = ang.cos().float(), ang.sin().float()
    x1, x2 = x[..., :HD // 2], x[..., HD // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


@torch.inference_mode()
def forward(tok, P):
    T = len(tok)
    x = emb[torch.tensor(tok)]
    pos = torch.arange(P, P + T)
    for i, w in enumerate(layers):
        h = rms(x, w["input_layernorm.weight"])
        q = F.linear(h, w["self_attn.q_proj.weight"]).view(T, H, HD).transpose(0, 1)
        k = F.linear(h, w["self_attn.k_proj.weight"]).view(T, KVH, HD).transpose(0, 1)
        v = F.linear(h, w["self_attn.v_proj.weight"]).view(T, KVH, HD).transpose(0, 1)
        q, k = rope(q, pos), rope(k, pos)
        kc[i][:, P:P + T] = k
        vc[i][:, P:P + T] = v
        kk = kc[i][:, :P + T].repeat_interleave(H // KVH, 0)
        vv = vc[i][:, :P + T].repeat_interleave(H // KVH, 0)
        s = torch.matmul(q, kk.transpose(-1, -2)) / HD ** 0.5          # eager attention, as HF's
        s = s + torch.full((T, P + T), float("-inf")).triu(P + 1)     # bottom-right causal mask
        o = torch.matmul(torch.softmax(s, -1), vv)
        x = x + F.linear(o.transpose(0, 1).reshape(T, H * HD), w["self_attn.o_proj.weight"])
        h = rms(x, w["post_attention_layernorm.weight"])
        x = x + F.linear(F.silu(F.linear(h, w["mlp.gate_proj.weight"])) * F.linear(h, w["mlp.up_proj.weight"]),
                         w["mlp.down_proj.weight"])
    return F.linear(rms(x[-1:], norm), emb)


t0 = time.perf_counter()
nxt = int(forward(ids, 0).argmax(-1))
t1 = time.perf_counter()
out, P = [nxt], len(ids)
for _ in range(a.decode):
    nxt = int(forward([nxt], P).argmax(-1))
    out.append(nxt)
    P += 1
t2 = time.perf_counter()
print(" ".join(map(str, out)))
print("torch %s, %d threads: prefill %d tokens in %.3f s (%.1f tokens/s); decode %d tokens in %.3f s (%.2f tokens/s)"
      % (torch.__version__, a.threads, len(ids), t1 - t0, len(ids) / (t1 - t0), a.decode, t2 - t1,
         a.decode / (t2 - t1)))

#!/usr/bin/python3
"""tests/layers/make_golden.py - golden files for dsl-examples/qwen3_layer.fdl
and dsl-examples/gemma3_layer.fdl.

transformers is not installed here, so each layer is written out from
Hugging Face's modeling code (transformers 5.x: modeling_qwen3.py's
Qwen3DecoderLayer, modeling_gemma3.py's Gemma3DecoderLayer for a global
attention layer) in PyTorch, step for step: the RMSNorms (Gemma's scales by
1 + weight), q_norm/k_norm per head before RoPE (rotate_half, inv_freq =
theta^(-2i/hd)), grouped-query causal attention with the model's scaling
(head_dim^-0.5 for Qwen3, query_pre_attn_scalar^-0.5 for Gemma-3), SwiGLU or
GeGLU (gelu_pytorch_tanh) MLP, Gemma-3's norms after the attention and
around the MLP.  Random float32 weights and inputs (seeded); the layer is
run in float64 on exactly those values (out64.*, the reference fusec check
compares with) and in float32 (out.*).

Writes qwen3_layer.safetensors and gemma3_layer.safetensors next to this
script, in the layout of tests/golden/hf (w.NAME, in.hidden_states,
in.position_ids, out.hidden_states, out64.hidden_states; the config as JSON
in the metadata).  Run: /usr/bin/python3 tests/layers/make_golden.py
"""
import json
import os
import struct

import numpy as np
import torch

T = 13


def rms(x, w, eps, gemma):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * (1.0 + w) if gemma else w * y


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(x, pos, theta):  # x [heads, T, hd]
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).to(x.dtype) / hd))
    fr = pos.to(x.dtype)[:, None] * inv[None, :]
    emb = torch.cat((fr, fr), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def attention(q, k, v, H, KVH, scaling):  # [T, H, hd], [T, KVH, hd]
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    k = k.repeat_interleave(H // KVH, dim=0)
    v = v.repeat_interleave(H // KVH, dim=0)
    s = torch.matmul(q, k.transpose(1, 2)) * scaling
    n = s.shape[-1]
    mask = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.matmul(p, v).transpose(0, 1).reshape(q.shape[1], -1)


def layer(kind, c, w, x, pos):
    g = kind == "gemma3"
    eps, H, KVH, hd = c["rms_norm_eps"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    lin = lambda a, name: a @ w[name].T
    h = rms(x, w["input_layernorm.weight"], eps, g)
    q = lin(h, "self_attn.q_proj.weight").view(T, H, hd)
    k = lin(h, "self_attn.k_proj.weight").view(T, KVH, hd)
    v = lin(h, "self_attn.v_proj.weight").view(T, KVH, hd)
    q = rms(q, w["self_attn.q_norm.weight"], eps, g)
    k = rms(k, w["self_attn.k_norm.weight"], eps, g)
    q = rope(q.transpose(0, 1), pos, c["rope_theta"]).transpose(0, 1)
    k = rope(k.transpose(0, 1), pos, c["rope_theta"]).transpose(0, 1)
    scaling = (c["query_pre_attn_scalar"] if g else hd) ** -0.5
    a = lin(attention(q, k, v, H, KVH, scaling), "self_attn.o_proj.weight")
    if g:
        a = rms(a, w["post_attention_layernorm.weight"], eps, g)
        r = x + a
        f = rms(r, w["pre_feedforward_layernorm.weight"], eps, g)
        act = torch.nn.functional.gelu(lin(f, "mlp.gate_proj.weight"), approximate="tanh")
        m = lin(act * lin(f, "mlp.up_proj.weight"), "mlp.down_proj.weight")
        return r + rms(m, w["post_feedforward_layernorm.weight"], eps, g)
    r = x + a
    f = rms(r, w["post_attention_layernorm.weight"], eps, g)
    m = lin(torch.nn.functional.silu(lin(f, "mlp.gate_proj.weight")) * lin(f, "mlp.up_proj.weight"),
            "mlp.down_proj.weight")
    return r + m


def write_safetensors(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {np.dtype("float32"): "F32", np.dtype("int32"): "I32"}[a.dtype]
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))


def make(kind, c, seed):
    gen = torch.Generator().manual_seed(seed)
    D, I, H, KVH, hd = (c["hidden_size"], c["intermediate_size"], c["num_attention_heads"],
                        c["num_key_value_heads"], c["head_dim"])
    shapes = {
        "input_layernorm.weight": [D],
        "self_attn.q_proj.weight": [H * hd, D],
        "self_attn.k_proj.weight": [KVH * hd, D],
        "self_attn.v_proj.weight": [KVH * hd, D],
        "self_attn.q_norm.weight": [hd],
        "self_attn.k_norm.weight": [hd],
        "self_attn.o_proj.weight": [D, H * hd],
        "post_attention_layernorm.weight": [D],
        "mlp.gate_proj.weight": [I, D],
        "mlp.up_proj.weight": [I, D],
        "mlp.down_proj.weight": [D, I],
    }
    if kind == "gemma3":
        shapes["pre_feedforward_layernorm.weight"] = [D]
        shapes["post_feedforward_layernorm.weight"] = [D]
    w32 = {}
    for name, sh in shapes.items():
        r = torch.randn(*sh, generator=gen, dtype=torch.float32)
        if len(sh) == 1:  # norm weights: around 1 (Qwen3), around 0 (Gemma: 1 + w)
            w32[name] = r * 0.2 + (0.0 if kind == "gemma3" else 1.0)
        else:
            w32[name] = r * (1.0 / sh[1] ** 0.5)
    x32 = torch.randn(T, D, generator=gen, dtype=torch.float32)
    pos = torch.arange(T, dtype=torch.int32)
    out32 = layer(kind, c, w32, x32, pos)
    out64 = layer(kind, c, {k: v.double() for k, v in w32.items()}, x32.double(), pos)
    t = {"w." + k: v.numpy() for k, v in w32.items()}
    t["in.hidden_states"] = x32.numpy()
    t["in.position_ids"] = pos.numpy()
    t["out.hidden_states"] = out32.numpy()
    t["out64.hidden_states"] = out64.to(torch.float32).numpy()
    here = os.path.dirname(os.path.abspath(__file__))
    write_safetensors(os.path.join(here, kind + "_layer.safetensors"), t,
                      {"config": json.dumps(c, sort_keys=True), "made_by": "tests/layers/make_golden.py"})
    e = (out32.double() - out64).norm() / out64.norm()
    print(f"{kind}_layer.safetensors: float32 vs float64 rel. L2 {e.item():.3g}")


base = {"hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 8, "num_key_value_heads": 2,
        "head_dim": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0}
make("qwen3", dict(base, model_type="qwen3", hidden_act="silu"), 3)
make("gemma3", dict(base, model_type="gemma3_text", hidden_activation="gelu_pytorch_tanh",
                    query_pre_attn_scalar=24), 4)

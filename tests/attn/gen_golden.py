#!/usr/bin/python3
"""gen_golden.py - golden files for dsl-examples/mistral_layer.fdl and
dsl-examples/bert_layer.fdl (tests/attn/run.sh checks them).

Writes tests/attn/mistral_layer.safetensors and tests/attn/bert_layer.safetensors
in the golden convention (docs/check.md): w.NAME weights (float32), in.NAME
inputs, out64.NAME the layer computed in float64 by PyTorch from the same
float32 values, out.NAME the same in float32.  transformers is not needed:
the layers are written here from their definitions in transformers'
modeling_mistral.py (MistralDecoderLayer with sliding_window; the mask
keeps key j for query i iff i - W < j <= i) and modeling_bert.py (BertLayer:
post-LayerNorm, erf GELU, extended attention mask).  The commands:

    /usr/bin/python3 tests/attn/gen_golden.py      # needs python3-torch

Deterministic (torch.manual_seed); the committed files are its output.
"""
import json
import math
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def save(path, tensors, config):
    """A safetensors file: 8-byte header length, JSON header, raw data."""
    header, blobs, off = {"__metadata__": {"config": json.dumps(config, sort_keys=True)}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        dt = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        raw = t.numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def linear_w(out_f, in_f):
    return (torch.randn(out_f, in_f) / math.sqrt(in_f)).float()


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rope(x, pos, hd, theta):
    """Hugging Face rotate_half on [T, n * hd]."""
    T = x.shape[0]
    inv = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = pos.to(torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(x.dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(x.dtype)
    xh = x.view(T, -1, hd)
    x1, x2 = xh[..., : hd // 2], xh[..., hd // 2:]
    rot = torch.cat([-x2, x1], -1)
    return (xh * cos[:, None, :] + rot * sin[:, None, :]).reshape(T, -1)


def attention(q, k, v, H, KVH, hd, allowed):
    """softmax(q k^T / sqrt(hd) + mask) v per head; allowed [T, S] bool."""
    T, S = q.shape[0], k.shape[0]
    qh = q.view(T, H, hd).transpose(0, 1)
    kh = k.view(S, KVH, hd).transpose(0, 1).repeat_interleave(H // KVH, 0)
    vh = v.view(S, KVH, hd).transpose(0, 1).repeat_interleave(H // KVH, 0)
    s = qh @ kh.transpose(1, 2) / math.sqrt(hd)
    s = s.masked_fill(~allowed[None], torch.finfo(s.dtype).min)
    p = torch.softmax(s, -1)
    return (p @ vh).transpose(0, 1).reshape(T, H * hd)


def mistral(w, x, pos, cfg):
    D, H, KVH, hd, W, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], \
        cfg["head_dim"], cfg["sliding_window"], cfg["rms_norm_eps"]
    h = rms_norm(x, w["input_layernorm.weight"], eps)
    q = rope(h @ w["self_attn.q_proj.weight"].T, pos, hd, cfg["rope_theta"])
    k = rope(h @ w["self_attn.k_proj.weight"].T, pos, hd, cfg["rope_theta"])
    v = h @ w["self_attn.v_proj.weight"].T
    T = x.shape[0]
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = (j <= i) & (j > i - W)
    r = x + attention(q, k, v, H, KVH, hd, allowed) @ w["self_attn.o_proj.weight"].T
    n = rms_norm(r, w["post_attention_layernorm.weight"], eps)
    g = n @ w["mlp.gate_proj.weight"].T
    m = (g * torch.sigmoid(g) * (n @ w["mlp.up_proj.weight"].T)) @ w["mlp.down_proj.weight"].T
    return r + m


def bert(w, x, mask, cfg):
    H, hd, eps = cfg["num_attention_heads"], cfg["hidden_size"] // cfg["num_attention_heads"], cfg["layer_norm_eps"]

    def lin(t, name):
        return t @ w[name + ".weight"].T + w[name + ".bias"]

    q, k, v = lin(x, "attention.self.query"), lin(x, "attention.self.key"), lin(x, "attention.self.value")
    T = x.shape[0]
    allowed = (mask != 0)[None, :].expand(T, T)
    ctx = attention(q, k, v, H, H, hd, allowed)
    a = layer_norm(lin(ctx, "attention.output.dense") + x, w["attention.output.LayerNorm.weight"],
                   w["attention.output.LayerNorm.bias"], eps)
    f = lin(a, "intermediate.dense")
    f = 0.5 * f * (1.0 + torch.erf(f / math.sqrt(2.0)))
    return layer_norm(lin(f, "output.dense") + a, w["output.LayerNorm.weight"], w["output.LayerNorm.bias"], eps)


def run(fn, w, inputs, cfg):
    out = {}
    for dt, key in ((torch.float64, "out64"), (torch.float32, "out")):
        ww = {n: t.to(dt) for n, t in w.items()}
        args = [t.to(dt) if t.dtype == torch.float32 else t for t in inputs]
        out[key + ".hidden_states"] = fn(ww, *args, cfg).to(torch.float32)
    return out


def main():
    torch.manual_seed(20261207)
    T = 13
    cfg = {"model_type": "mistral", "hidden_size": 128, "intermediate_size": 320, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "sliding_window": 5, "tokens": T}
    D, I, H, KVH, hd = 128, 320, 4, 2, 32
    w = {"input_layernorm.weight": (1 + 0.1 * torch.randn(D)).float(),
         "self_attn.q_proj.weight": linear_w(H * hd, D), "self_attn.k_proj.weight": linear_w(KVH * hd, D),
         "self_attn.v_proj.weight": linear_w(KVH * hd, D), "self_attn.o_proj.weight": linear_w(D, H * hd),
         "post_attention_layernorm.weight": (1 + 0.1 * torch.randn(D)).float(),
         "mlp.gate_proj.weight": linear_w(I, D), "mlp.up_proj.weight": linear_w(I, D),
         "mlp.down_proj.weight": linear_w(D, I)}
    x = torch.randn(T, D).float()
    pos = torch.arange(T, dtype=torch.int32)
    t = {"w." + n: v for n, v in w.items()}
    t.update({"in.hidden_states": x, "in.position_ids": pos})
    t.update(run(mistral, w, [x, pos], cfg))
    save(os.path.join(HERE, "mistral_layer.safetensors"), t, cfg)

    cfg = {"model_type": "bert", "hidden_size": 128, "intermediate_size": 512, "num_attention_heads": 4,
           "layer_norm_eps": 1e-12, "hidden_act": "gelu", "tokens": T, "padding": 4}
    D, I = 128, 512
    w = {}
    for n, (o, i) in (("attention.self.query", (D, D)), ("attention.self.key", (D, D)),
                      ("attention.self.value", (D, D)), ("attention.output.dense", (D, D)),
                      ("intermediate.dense", (I, D)), ("output.dense", (D, I))):
        w[n + ".weight"] = linear_w(o, i)
        w[n + ".bias"] = (0.1 * torch.randn(o)).float()
    for n in ("attention.output.LayerNorm", "output.LayerNorm"):
        w[n + ".weight"] = (1 + 0.1 * torch.randn(D)).float()
        w[n + ".bias"] = (0.1 * torch.randn(D)).float()
    x = torch.randn(T, D).float()
    mask = torch.tensor([1] * (T - 4) + [0] * 4, dtype=torch.int32)
    t = {"w." + n: v for n, v in w.items()}
    t.update({"in.hidden_states": x, "in.attention_mask": mask})
    t.update(run(bert, w, [x, mask], cfg))
    save(os.path.join(HERE, "bert_layer.safetensors"), t, cfg)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""gen_refs.py - prints the reference values pasted into tests/unit/test_interp.c.

The interpreter is the project's oracle, so its own expectations come from
somewhere else: numpy and PyTorch (Debian's python3-torch), written the way
Hugging Face writes these layers (rotate_half RoPE, repeat_kv attention with a
triu mask), not the way interp.c loops.  Inputs are short decimals so that C
and Python parse the same doubles; outputs are printed with repr() (exact).

    /usr/bin/python3 tests/interp/gen_refs.py > /tmp/refs.h

Each section below names the test that uses it.
"""
import inspect
import math
import textwrap

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def arr(name, a):
    """Prints a C array, preceded by the Python line that computed it."""
    line = inspect.stack()[1].code_context[0].strip()
    print(f"/* {line} */")
    a = np.asarray(a, dtype=np.float64).ravel()
    vals = [repr(float(v)).replace("inf", "INFINITY") for v in a]
    body = textwrap.fill(", ".join(vals), width=92, initial_indent="    ",
                         subsequent_indent="    ", break_on_hyphens=False)
    print(f"static const double {name}[{a.size}] = {{\n{body}\n}};")


def section(name):
    print(f"\n/* ---- {name} (numpy/torch, tests/interp/gen_refs.py) ---- */")


def rnd(seed, shape):
    """Short decimals in [-2, 2]: the same doubles in C and Python."""
    return np.round(np.random.default_rng(seed).uniform(-2, 2, shape), 2)


section("test_unary")
x = np.array([-2.5, -1.0, -0.25, 0.0, 0.5, 1.75, 3.0])
p = np.array([0.01, 0.5, 1.0, 2.25, 7.5])
t = torch.tensor(x)
arr("un_x", x)
arr("un_p", p)
arr("un_neg", -x)
arr("un_exp", np.exp(x))
arr("un_tanh", np.tanh(x))
arr("un_sigmoid", torch.sigmoid(t).numpy())
arr("un_silu", F.silu(t).numpy())
arr("un_gelu", F.gelu(t).numpy())
arr("un_gelu_tanh", F.gelu(t, approximate="tanh").numpy())
arr("un_relu", F.relu(t).numpy())
arr("un_log", np.log(p))
arr("un_sqrt", np.sqrt(p))
arr("un_rsqrt", torch.rsqrt(torch.tensor(p)).numpy())
arr("un_recip", torch.reciprocal(torch.tensor(p)).numpy())

section("test_binary_*")
a23 = rnd(1, (2, 3))
b3 = rnd(2, (3,))
b21 = rnd(3, (2, 1))
a213 = rnd(4, (2, 1, 3))
b41 = rnd(5, (4, 1))
arr("bi_a23", a23)
arr("bi_b3", b3)
arr("bi_b21", b21)
arr("bi_a213", a213)
arr("bi_b41", b41)
arr("bi_scalar_add", 1.5 + a23)                 # const 1.5 + a23
arr("bi_row_sub", a23 - b3)
arr("bi_col_mul", a23 * b21)
arr("bi_col_div", b21 / a23)
arr("bi_rank_add", a213 + b41)                  # [2,1,3] + [4,1] -> [2,4,3]
arr("bi_rank_max", np.maximum(b41, a213))
arr("bi_rank_min", np.minimum(a213, b41))

section("test_reduce")
r = rnd(6, (2, 3, 4))
arr("re_x", r)
for ax in range(3):
    arr(f"re_sum{ax}", r.sum(axis=ax, keepdims=True))
    arr(f"re_max{ax}", r.max(axis=ax, keepdims=True))
    arr(f"re_mean{ax}", r.mean(axis=ax, keepdims=True))

section("test_matmul_*")
ma = rnd(7, (2, 1, 2, 3))
mb = rnd(8, (3, 3, 4))
arr("mm_a", ma)
arr("mm_b", mb)
arr("mm_ab", np.matmul(ma, mb))                        # [2, 3, 2, 4]
mbt = np.ascontiguousarray(np.swapaxes(mb, -1, -2))    # [3, 4, 3]
arr("mm_bt", mbt)
m2a = rnd(9, (2, 3))                                   # rank 2 against a batch of 2
m2b = rnd(10, (2, 4, 3))                               # stored transposed: [N, K]
arr("mm2_a", m2a)
arr("mm2_b", m2b)
arr("mm2_abt", np.matmul(m2a, np.swapaxes(m2b, -1, -2)))  # [2, 2, 4]

section("test_linear_*")
lx = rnd(11, (2, 2, 3))
lw_oi = rnd(12, (4, 3))
lb = rnd(13, (4,))
arr("li_x", lx)
arr("li_w_oi", lw_oi)
arr("li_w_io", np.ascontiguousarray(lw_oi.T))
arr("li_b", lb)
lin = torch.nn.functional.linear
arr("li_y", lin(torch.tensor(lx), torch.tensor(lw_oi)).numpy())
arr("li_yb", lin(torch.tensor(lx), torch.tensor(lw_oi), torch.tensor(lb)).numpy())

section("test_shape_ops")
s = rnd(14, (2, 3, 4))
s2 = rnd(15, (2, 2, 4))
s3 = rnd(16, (2, 3, 1))
arr("sh_x", s)
arr("sh_y", s2)
arr("sh_z", s3)
arr("sh_transpose_201", np.transpose(s, (2, 0, 1)))
arr("sh_slice_1_1_2", s[:, 1:3, :])
arr("sh_slice_2_3_1", s[:, :, 3:4])
arr("sh_concat1", np.concatenate([s, s2], axis=1))
arr("sh_concat2", np.concatenate([s, s3], axis=2))
arr("sh_concat0", np.concatenate([s, s], axis=0))

section("test_norms")
nx = rnd(17, (3, 5))
nw = rnd(18, (5,))
nb = rnd(19, (5,))
arr("no_x", nx)
arr("no_w", nw)
arr("no_b", nb)
# Hugging Face LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) * w
txx = torch.tensor(nx)
arr("no_rms", (txx * torch.rsqrt(txx.pow(2).mean(-1, keepdim=True) + 1e-5) * torch.tensor(nw)).numpy())
arr("no_ln", F.layer_norm(txx, (5,), torch.tensor(nw), torch.tensor(nb), eps=1e-5).numpy())

section("test_softmax")
sm = rnd(20, (3, 4))
sm[1, 0] = -np.inf
sm[1, 2] = -np.inf
sm[2, :] = -np.inf
arr("sm_x", sm)
sy = torch.softmax(torch.tensor(sm), dim=-1).numpy()
sy[2, :] = 0.0            # torch gives NaN for an all -inf row; fusec defines zeros
arr("sm_y", sy)

section("test_rope")
T, nh, hd, theta = 3, 2, 4, 10000.0
rx = rnd(21, (T, nh * hd))
pos = np.array([5, 6, 9])
arr("ro_x", rx)


def rotate_half(v):
    h = v.shape[-1] // 2
    return np.concatenate([-v[..., h:], v[..., :h]], axis=-1)


inv_freq = 1.0 / (theta ** (np.arange(0, hd, 2) / hd))
freqs = np.outer(pos, inv_freq)                   # [T, hd/2]
emb = np.concatenate([freqs, freqs], axis=-1)      # [T, hd]
cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
xh = rx.reshape(T, nh, hd)
arr("ro_y", (xh * cos + rotate_half(xh) * sin).reshape(T, nh * hd))
theta2 = 500.0
inv_freq = 1.0 / (theta2 ** (np.arange(0, hd, 2) / hd))
emb = np.concatenate([np.outer(pos, inv_freq)] * 2, axis=-1)
cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
arr("ro_y500", (xh * cos + rotate_half(xh) * sin).reshape(T, nh * hd))


section("test_attention")
def hf_attention(q, k, v, H, KVH, hd, causal, scale):
    """Hugging Face eager attention: [T, H*hd] -> heads, repeat_kv, triu mask."""
    T, S = q.shape[0], k.shape[0]
    q = torch.tensor(q).view(T, H, hd).transpose(0, 1)          # [H, T, hd]
    k = torch.tensor(k).view(S, KVH, hd).transpose(0, 1)        # [KVH, S, hd]
    v = torch.tensor(v).view(S, KVH, hd).transpose(0, 1)
    k = k.repeat_interleave(H // KVH, dim=0)                    # repeat_kv
    v = v.repeat_interleave(H // KVH, dim=0)
    w = torch.matmul(q, k.transpose(1, 2)) * scale              # [H, T, S]
    if causal:
        mask = torch.triu(torch.ones(T, S, dtype=torch.bool), diagonal=S - T + 1)
        w = w.masked_fill(mask, float("-inf"))
    w = torch.softmax(w, dim=-1)
    return torch.matmul(w, v).transpose(0, 1).reshape(T, H * hd).numpy()


H, KVH, hd, T, S = 4, 2, 3, 2, 5
aq = rnd(22, (T, H * hd))
ak = rnd(23, (S, KVH * hd))
av = rnd(24, (S, KVH * hd))
arr("at_q", aq)
arr("at_k", ak)
arr("at_v", av)
arr("at_causal", hf_attention(aq, ak, av, H, KVH, hd, True, 1 / math.sqrt(hd)))
arr("at_full", hf_attention(aq, ak, av, H, KVH, hd, False, 0.7))
arr("at_t1", hf_attention(aq[1:], ak, av, H, KVH, hd, True, 1 / math.sqrt(hd)))

section("test_causal_mask")
cm = rnd(25, (2, 2, 4))
arr("cm_x", cm)
T, S = 2, 4
mask = np.triu(np.ones((T, S), dtype=bool), k=S - T + 1)
arr("cm_y", np.where(mask, -np.inf, cm))

#!/usr/bin/python3
"""gen.py - generates one .fdl block of about N operators for the
compile-time benchmark (bench/compile/run.py).

    gen.py N [-o OUT.fdl] [--mix layers,prim,chain,fanout]

The block is a realistic mix, repeated until it holds N operators (each
builtin call and each arithmetic operator is one):
  - layers:  Llama decoder layers written with the builtins (rms_norm,
             rope, attention with a KV cache, the SwiGLU MLP), each with its
             own weights and caches;
  - prim:    the same layer with RMSNorm and attention written from
             primitives (matmul, softmax, causal_mask, reshape/transpose),
             which the fusion passes rewrite back into composite ops;
  - chain:   long elementwise chains mixing per-column weights and
             activations (one fused loop each);
  - fanout:  one tensor read by many small branches summed back together.
Output is deterministic for a given N and mix.  Standard library only.
"""
import argparse
import sys

D, I, H, KVH, HD = 64, 128, 4, 2, 16


class Gen:
    def __init__(self):
        self.decl = []      # declarations (inputs, weights, caches)
        self.body = []      # statements
        self.ops = 0
        self.nw = 0
        self.cur = "x"      # the running [T, D] value

    def weight(self, shape):
        self.nw += 1
        name = f"w{self.nw}"
        self.decl.append(f"    weight {name}: f32[{shape}];")
        return name

    def stmt(self, name, expr, ops):
        self.body.append(f"    {name} = {expr};")
        self.ops += ops
        return name

    def layer(self, i):
        x = self.cur
        p = f"l{i}_"
        wn1, wq, wk, wv, wo = (self.weight("D"), self.weight("H * HD, D"), self.weight("KVH * HD, D"),
                               self.weight("KVH * HD, D"), self.weight("D, H * HD"))
        wn2, wg, wu, wd = self.weight("D"), self.weight("I, D"), self.weight("I, D"), self.weight("D, I")
        self.decl.append(f"    cache {p}kc: f32[P, KVH * HD];")
        self.decl.append(f"    cache {p}vc: f32[P, KVH * HD];")
        self.stmt(p + "h", f"rms_norm({x}, {wn1})", 1)
        self.stmt(p + "q", f"rope(linear({p}h, {wq}), pos, head_dim = HD)", 2)
        self.stmt(p + "k", f"rope(linear({p}h, {wk}), pos, head_dim = HD)", 2)
        self.stmt(p + "v", f"linear({p}h, {wv})", 1)
        self.stmt(p + "a", f"attention({p}q, append({p}kc, {p}k), append({p}vc, {p}v), "
                  f"heads = H, kv_heads = KVH, causal = true)", 3)
        self.stmt(p + "r", f"{x} + linear({p}a, {wo})", 2)
        self.stmt(p + "n", f"rms_norm({p}r, {wn2})", 1)
        self.stmt(p + "m", f"linear(silu(linear({p}n, {wg})) * linear({p}n, {wu}), {wd})", 5)
        self.cur = self.stmt(p + "o", f"{p}r + {p}m", 1)

    def prim(self, i):
        x = self.cur
        p = f"p{i}_"
        wn1, wq, wk, wv, wo = (self.weight("D"), self.weight("H * HD, D"), self.weight("KVH * HD, D"),
                               self.weight("KVH * HD, D"), self.weight("D, H * HD"))
        self.decl.append(f"    cache {p}kc: f32[P, KVH * HD];")
        self.decl.append(f"    cache {p}vc: f32[P, KVH * HD];")
        self.stmt(p + "h", f"{x} * rsqrt(mean({x} * {x}, axis = -1) + 1e-5) * {wn1}", 6)
        self.stmt(p + "q", f"rope(linear({p}h, {wq}), pos, head_dim = HD)", 2)
        self.stmt(p + "k", f"rope(linear({p}h, {wk}), pos, head_dim = HD)", 2)
        self.stmt(p + "v", f"linear({p}h, {wv})", 1)
        self.stmt(p + "ks", f"append({p}kc, {p}k)", 1)
        self.stmt(p + "vs", f"append({p}vc, {p}v)", 1)
        self.stmt(p + "qh", f"transpose(reshape({p}q, [T, KVH, G, HD]), [1, 2, 0, 3])", 2)
        self.stmt(p + "kt", f"reshape(transpose(reshape({p}ks, [P + T, KVH, HD]), [1, 2, 0]), [KVH, 1, HD, P + T])", 3)
        self.stmt(p + "vh", f"reshape(transpose(reshape({p}vs, [P + T, KVH, HD]), [1, 0, 2]), [KVH, 1, P + T, HD])", 3)
        self.stmt(p + "s", f"matmul({p}qh, {p}kt) * rsqrt(HD)", 2)
        self.stmt(p + "c", f"matmul(softmax(causal_mask({p}s)), {p}vh)", 3)
        self.stmt(p + "a", f"reshape(transpose({p}c, [2, 0, 1, 3]), [T, H * HD])", 2)
        self.cur = self.stmt(p + "o", f"{x} + linear({p}a, {wo})", 2)

    def chain(self, i, n=40):
        x = self.cur
        p = f"c{i}_"
        acts = ["silu", "tanh", "sigmoid", "gelu"]
        for j in range(n // 4):
            w = self.weight("D")
            x = self.stmt(f"{p}{j}", f"{acts[j % 4]}({x} * {w} + {x}) - {x}", 4)
        self.cur = x

    def fanout(self, i, n=40):
        x = self.cur
        p = f"f{i}_"
        parts = []
        for j in range(n // 3):
            parts.append(self.stmt(f"{p}{j}", f"sigmoid({x} * {j + 1}.0)", 2))
        acc = parts[0]
        for j, q in enumerate(parts[1:]):
            acc = self.stmt(f"{p}s{j}", f"{acc} + {q}", 1)
        self.cur = acc


def generate(n, mix):
    g = Gen()
    kinds = {"layers": g.layer, "prim": g.prim, "chain": g.chain, "fanout": g.fanout}
    i = 0
    while g.ops < n:
        kinds[mix[i % len(mix)]](i)
        i += 1
    lines = [f"// {n} operators ({g.ops} written): {','.join(mix)}; generated by bench/compile/gen.py",
             "block big {", "    dim T, P;", f"    dim D = {D}, I = {I}, H = {H}, KVH = {KVH}, HD = {HD}, G = H / KVH;",
             "    input x: f32[T, D];", "    input pos: i32[T];"]
    lines += g.decl + g.body + [f"    output y = {g.cur};", "}", ""]
    return "\n".join(lines), g.ops


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("-o", "--out")
    ap.add_argument("--mix", default="layers,chain,prim,fanout")
    a = ap.parse_args()
    text, _ = generate(a.n, a.mix.split(","))
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()

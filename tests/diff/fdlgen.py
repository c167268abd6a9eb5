#!/usr/bin/python3
"""fdlgen.py - random valid fusec blocks, differential-tested (Csmith style).

    fdlgen.py run [--seed S] [-n N] [--jobs J] [--fusec F] [--out DIR] ...
    fdlgen.py gen SEED              print the program for one seed
    fdlgen.py targets               print which targets run here

Each seed gives one random block: chains and DAGs of the DSL's builtins on
random shapes (odd sizes, size 1, T = 1, broadcasting against lower-rank
weights, reductions over any axis, reshapes and transposes, slices and
concats, norms feeding linears, rope, softmax and causal_mask, attention
with random head counts and grouped-query KV heads, the same written from
primitives, appends to KV caches, comparisons and where, cast, embedding of
int32 ids, topk/argmax and gather, positions from the cache offset, sparse
MoE: moe() routed by an input, moe_up/moe_down on int32 expert ids) and
random symbol values.  The ops whose result jumps (a comparison, cast to
i32, the indices of topk and argmax) read only inputs, whose float32 values
the interpreter sees exactly, so both sides decide alike; what they feed
may be anything (where(a > b, a, b) is continuous, so it takes any values,
and topk's values are continuous in x).  Every program
runs through `fusec check --random` (the generated C on random float32
data against the float64 interpreter on the unfused graph; for a third of
the seeds with NaN, +-inf, huge, denormal values or extreme rows mixed in,
`--special`, compared NaN-aware) once per
variant: fused (the default) and -O0, on every target that runs on this
machine.  A program generated in "rows" mode is also run with --split K
(prefill K rows, then decode one token at a time through the caches), so
its ops are chosen to keep rows independent (causal attention over the
caches, no reduction along the tokens).

The tolerance is stated once: a relative L2 error of RTOL (1e-4) per
output.  A correct float32 kernel lands near 1e-7..1e-6 on these programs;
the generator keeps values of order one (domains of log, sqrt, rsqrt, recip
and division are kept away from zero, exp only sees bounded values, every
causal_mask feeds a softmax and leaves each row a key), so 1e-4 leaves two
orders of magnitude for conditioning.  Relative L2 over a whole output
averages one wrong element away (one element 3% off among 2^17 moves it
by about 2e-5), so each output is also held to MAX_TOL (1e-3) on its
largest elementwise error over its largest |reference| (fusec check
--max-tol): a correct kernel lands near 1e-6 there too.

A failing check (out of tolerance, an internal error or crash, or fusec
rejecting a program the generator believes valid) is minimised by delta
debugging: drop outputs, replace a statement's op by one of its operands of
the same shape, delete statements, shrink T, while the same variant still
fails the same way.  The reproducer .fdl is printed and written to --out,
with the command line that reproduces it in its first lines.

Prints per variant how many programs passed, then "N passed, M failed"
(counting checks); exits 1 when anything failed.
"""
import argparse
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

RTOL = 1e-4
MAX_TOL = 1e-3  # --max-tol of every check (the module docstring says why)
# A check that runs longer is reported as a hang.  Wall time, so it must
# allow for a loaded machine: a sanitized check took 13 s alone and over 120 s
# on 2 cores shared with 10 other jobs (a false "hang" in CI).
CHECK_TIMEOUT = int(os.environ.get("FDLGEN_CHECK_TIMEOUT", "600"))
SIZES = [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 31, 32, 33]
T_VALUES = [1, 1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17]
MAX_NUMEL = 1 << 17  # per tensor, at the program's T

# ---- shapes ------------------------------------------------------------------
# A dim is affine in the symbols: (c, t, p) means c + t*T + p*P.  P (the
# cache length) is 0 when check starts, so it only shows in cache types.

ONE = (1, 0, 0)
TOK = (0, 1, 0)
KEYS = (0, 1, 1)  # P + T: what append yields


def cdim(n):
    return (n, 0, 0)


def is_const(d):
    return d[1] == 0 and d[2] == 0


def dim_text(d):
    c, t, p = d
    parts = []
    if p:
        parts.append("P" if p == 1 else f"{p} * P")
    if t:
        parts.append("T" if t == 1 else f"{t} * T")
    if c or not parts:
        parts.append(str(c))
    return " + ".join(parts)


def dim_val(d, T):
    return d[0] + d[1] * T  # P = 0 at check time


def shape_text(s):
    return "[" + ", ".join(dim_text(d) for d in s) + "]"


def numel(s, T):
    n = 1
    for d in s:
        n *= dim_val(d, T)
    return n


def broadcast(a, b):
    """numpy broadcasting of two shapes, or None."""
    r = max(len(a), len(b))
    a = [ONE] * (r - len(a)) + list(a)
    b = [ONE] * (r - len(b)) + list(b)
    out = []
    for x, y in zip(a, b):
        if x == y or y == ONE:
            out.append(x)
        elif x == ONE:
            out.append(y)
        else:
            return None
    return tuple(out)


def has_tok(s):
    return any(not is_const(d) for d in s)


def rows_ok(s):
    """Rows mode: T only as the whole first dim."""
    return len(s) >= 1 and s[0] == TOK and all(is_const(d) for d in s[1:])


# ---- programs ------------------------------------------------------------------


class Stmt:
    """One line of the block.  kind: dim, input, weight, cache, let, output.
    alts: operands of a let with its shape (the minimiser may replace the
    let's expression by one of them)."""

    def __init__(self, kind, name, text, shape=None, alts=(), name2=None, i32=False):
        self.kind, self.name, self.text, self.shape, self.alts = kind, name, text, shape, list(alts)
        self.name2 = name2  # let2: the second name (`values, indices = topk(...)`)
        self.i32 = i32      # an i32 value (the minimiser makes only f32 ones inputs)

    def line(self):
        if self.kind == "dim":
            return f"dim {self.name};" if self.text is None else f"dim {self.name} = {self.text};"
        if self.kind in ("input", "weight", "cache"):
            return f"{self.kind} {self.name}: {self.text};"
        if self.kind == "let":
            return f"{self.name} = {self.text};"
        if self.kind == "let2":
            return f"{self.name}, {self.name2} = {self.text};"
        return f"output {self.name} = {self.text};"

    def copy(self):
        return Stmt(self.kind, self.name, self.text, self.shape, self.alts, self.name2, self.i32)


IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")


def refs(st, defined):
    if st.kind == "dim":
        text = st.text or ""
    else:
        text = st.text
    return set(IDENT.findall(text)) & defined


class Program:
    def __init__(self, seed, mode, T, split, stmts):
        self.seed, self.mode, self.T, self.split, self.stmts = seed, mode, T, split, stmts

    def text(self):
        lines = [f"// fdlgen seed={self.seed} mode={self.mode} T={self.T} split={self.split or 0}",
                 f"block rnd{self.seed} {{"]
        order = {"dim": 0, "input": 1, "weight": 1, "cache": 1, "let": 2, "let2": 2, "output": 3}
        for st in sorted(self.stmts, key=lambda s: order[s.kind]):
            lines.append("    " + st.line())
        lines.append("}")
        return "\n".join(lines) + "\n"

    def with_stmts(self, stmts, T=None, split=None):
        return Program(self.seed, self.mode, self.T if T is None else T,
                       self.split if split is None else split, stmts)


def dce(stmts):
    """Keeps what the outputs need (and the dims the kept types name)."""
    defined = {s.name for s in stmts if s.kind != "output"} | {s.name2 for s in stmts if s.name2}
    by_name = {s.name: s for s in stmts if s.kind != "output"}
    by_name.update({s.name2: s for s in stmts if s.name2})
    need = set()
    work = [s for s in stmts if s.kind == "output"]
    while work:
        s = work.pop()
        for r in refs(s, defined):
            if r not in need:
                need.add(r)
                work.append(by_name[r])
    return [s for s in stmts if s.kind == "output" or s.name in need or (s.name2 and s.name2 in need)]


# ---- the generator ------------------------------------------------------------


class Value:
    def __init__(self, name, shape, mag, rows=True, exact=False):
        self.name, self.shape, self.mag, self.rows = name, tuple(shape), mag, rows
        self.exact = exact  # an f32 input: the same float32 values on both sides


class Gen:
    """Builds one program.  Values carry a rough magnitude bound (mag) so
    that exp never overflows and nothing drifts far from order one."""

    UNARY = ["neg", "exp", "log", "sqrt", "rsqrt", "recip", "tanh", "sigmoid", "silu", "gelu",
             "gelu_tanh", "relu"]

    def __init__(self, seed):
        self.seed = seed
        r = self.r = random.Random(seed)
        self.mode = "rows" if r.random() < 0.4 else "free"
        self.T = r.choice(T_VALUES)
        self.split = r.randint(1, self.T) if self.mode == "rows" else 0
        self.stmts = []
        self.pool = []
        self.n = 0
        self.pos = None
        self.has_cache = False
        self.dotted = r.random() < 0.5
        self.first_input = None
        self.ids = None

    # -- helpers
    def fresh(self, prefix):
        self.n += 1
        return f"{prefix}{self.n}"

    def size(self, lo=1):
        while True:
            s = self.r.choice(SIZES)
            if s >= lo:
                return s

    def weight(self, shape, what="w"):
        name = self.fresh(what)
        if self.dotted:
            name = f"layers.{self.r.randint(0, 3)}.{name}.weight"
        self.stmts.append(Stmt("weight", name, "f32" + shape_text(shape), tuple(shape)))
        return name

    def ok_shape(self, s):
        if len(s) > 4 or len(s) < 1:
            return False
        if numel(s, self.T) > MAX_NUMEL:
            return False
        return rows_ok(s) if self.mode == "rows" else True

    def let(self, text, shape, mag, alts=(), pool=True, i32=False):
        name = self.fresh("v")
        alts = [a for a in alts if a is not None and a.shape == tuple(shape)]
        self.stmts.append(Stmt("let", name, text, tuple(shape), [a.name for a in alts], i32=i32))
        v = Value(name, shape, min(mag, 1e6))
        if pool:
            self.pool.append(v)
        return v

    def pick(self, pred=lambda v: True):
        cands = [v for v in self.pool if pred(v)]
        if not cands:
            return None
        # prefer recent values: longer chains
        k = min(len(cands), 4)
        return self.r.choice(cands[-k:]) if self.r.random() < 0.7 else self.r.choice(cands)

    def number(self):
        return self.r.choice(["0.5", "2.0", "1.25", "-0.75", "3.0", "0.1"])

    def const_axes(self, v, allow_first):
        return [i for i, d in enumerate(v.shape) if is_const(d) and (allow_first or i > 0 or self.mode == "free")]

    # -- ops
    def op_unary(self):
        v = self.pick()
        f = self.r.choice(self.UNARY)
        if f == "exp":
            if v.mag <= 3:
                return self.let(f"exp({v.name})", v.shape, 2.72 ** v.mag + 1)
            return self.let(f"exp(tanh({v.name}))", v.shape, 2.72)
        if f == "log":
            return self.let(f"log({v.name} * {v.name} + 2.0)", v.shape, 2 * max(1, v.mag) ** 0.5 + 1)
        if f in ("sqrt", "rsqrt", "recip"):
            mag = v.mag + 1 if f == "sqrt" else 1
            return self.let(f"{f}({v.name} * {v.name} + 1.0)", v.shape, mag)
        mag = 1 if f in ("tanh", "sigmoid") else v.mag
        return self.let(f"{f}({v.name})", v.shape, mag, alts=[v])

    def op_binary(self):
        a = self.pick()
        r = self.r.random()
        op = self.r.choice(["+", "-", "*", "/", "maximum", "minimum"])
        if r < 0.2:
            num = self.number()
            if op in ("maximum", "minimum"):
                op = "+"
            if op == "/":
                text = f"{a.name} / {self.r.choice(['2.0', '0.5', '3.0'])}"
            else:
                text = f"{num} {op} {a.name}" if self.r.random() < 0.5 else f"{a.name} {op} {num}"
            return self.let(text, a.shape, a.mag * 3 + 3, alts=[a])
        if r < 0.55:
            b = self.pick(lambda v: v is not a and broadcast(a.shape, v.shape) is not None)
            if b is None:
                return None
            bname, bmag = b.name, b.mag
        else:
            # a weight of a broadcastable shape: a suffix of a's shape, some dims 1
            k = self.r.randint(1, len(a.shape))
            s = [d if is_const(d) and self.r.random() < 0.7 else ONE for d in a.shape[-k:]]
            bname, bmag, b = self.weight(s), 1.0, None
        out = broadcast(a.shape, self.shape_of(bname, b))
        if out is None or not self.ok_shape(out):
            return None
        x, y, xm, ym = a.name, bname, a.mag, bmag
        if self.r.random() < 0.3:
            x, y, xm, ym = y, x, ym, xm
        if op == "/":
            text, mag = f"{x} / ({y} * {y} + 1.0)", xm
        elif op in ("maximum", "minimum"):
            text, mag = f"{op}({x}, {y})", max(xm, ym)
        elif op == "*":
            text, mag = f"{x} * {y}", xm * ym
        else:
            text, mag = f"{x} {op} {y}", xm + ym
        return self.let(text, out, mag, alts=[a, b])

    def shape_of(self, name, v):
        if v is not None:
            return v.shape
        for s in self.stmts:
            if s.name == name:
                return s.shape
        raise KeyError(name)

    def op_reduce(self):
        v = self.pick()
        axes = [i for i in range(len(v.shape)) if self.mode == "free" or i > 0]
        if not axes:
            return None
        ax = self.r.choice(axes)
        f = self.r.choice(["sum", "max", "mean"])
        n = dim_val(v.shape[ax], self.T)
        s = list(v.shape)
        s[ax] = ONE
        axt = ax - len(v.shape) if self.r.random() < 0.4 else ax
        kw = "" if axt == -1 and self.r.random() < 0.5 else f", axis = {axt}"
        mag = v.mag * (n if f == "sum" else 1)
        return self.let(f"{f}({v.name}{kw})", s, mag)

    def op_linear(self):
        v = self.pick(lambda v: is_const(v.shape[-1]))
        if v is None:
            return None
        fin, fout = v.shape[-1][0], self.size()
        layout = self.r.choice(["out_in", "in_out"])
        w = self.weight([cdim(fout), cdim(fin)] if layout == "out_in" else [cdim(fin), cdim(fout)])
        args = [v.name, w]
        if self.r.random() < 0.4:
            args.append(self.weight([cdim(fout)], "b"))
        kw = f', layout = "{layout}"' if layout == "in_out" or self.r.random() < 0.2 else ""
        s = v.shape[:-1] + (cdim(fout),)
        if not self.ok_shape(s):
            return None
        return self.let(f"linear({', '.join(args)}{kw})", s, v.mag * 2 + 1)

    def op_matmul(self):
        v = self.pick(lambda v: len(v.shape) >= 2)
        if v is None:
            return None
        K = v.shape[-1]
        r = self.r.random()
        if r < 0.3:
            # another value with the inner dim K: [..., K, N]
            b = self.pick(lambda u: len(u.shape) >= 2 and u.shape[-2] == K and u is not v)
            if b is None and self.mode == "free" and len(v.shape) == 2:
                # v times its own transpose: [M, K] x [K, M]
                t = self.let(f"transpose({v.name})", (v.shape[1], v.shape[0]), v.mag)
                b = t
            if b is None:
                return None
            bs, bname, bmag = b.shape, b.name, b.mag
        else:
            if not is_const(K):
                return None
            batch = []
            if len(v.shape) > 2 and self.r.random() < 0.5:
                batch = [d if is_const(d) and self.r.random() < 0.6 else ONE for d in v.shape[:-2]]
                batch = batch[self.r.randint(0, len(batch) - 1):]
            bs = tuple(batch) + (K, cdim(self.size()))
            bname, bmag = self.weight(bs), 1.0
        batch = broadcast(v.shape[:-2], bs[:-2])
        if batch is None:
            return None
        s = batch + (v.shape[-2], bs[-1])
        if not self.ok_shape(s):
            return None
        kd = dim_val(K, self.T)
        return self.let(f"matmul({v.name}, {bname})", s, v.mag * bmag * max(1, kd) ** 0.5 + 1)

    def op_reshape(self):
        v = self.pick()
        s = list(v.shape)
        cands = []
        # split a constant dim a*b into a, b
        for i, d in enumerate(s):
            if is_const(d) and len(s) < 4 and (i > 0 or self.mode == "free"):
                for a in range(2, d[0]):
                    if d[0] % a == 0:
                        cands.append(s[:i] + [cdim(a), cdim(d[0] // a)] + s[i + 1:])
            if is_const(d) and d[0] == 1 and len(s) > 1 and (i > 0 or self.mode == "free"):
                cands.append(s[:i] + s[i + 1:])  # drop a 1
        # merge two adjacent constant dims
        for i in range(len(s) - 1):
            if is_const(s[i]) and is_const(s[i + 1]) and (i > 0 or self.mode == "free"):
                cands.append(s[:i] + [cdim(s[i][0] * s[i + 1][0])] + s[i + 2:])
        if len(s) < 4:
            cands.append(s + [ONE])
        if self.mode == "free" and len(s) >= 2:
            # same element count, constants regrouped around the symbolic dims
            consts = 1
            syms = []
            for d in s:
                if is_const(d):
                    consts *= d[0]
                else:
                    syms.append(d)
            if len(syms) <= 2:
                cands.append(syms + [cdim(consts)])
                cands.append([cdim(consts)] + syms)
        cands = [c for c in cands if c != s and 1 <= len(c) <= 4]
        if not cands:
            return None
        t = self.r.choice(cands)
        kw = "" if self.r.random() < 0.8 else "shape = "
        return self.let(f"reshape({v.name}, {kw}{shape_text(t)})", t, v.mag)

    def op_transpose(self):
        v = self.pick(lambda v: len(v.shape) >= 2)
        if v is None:
            return None
        n = len(v.shape)
        perm = list(range(n))
        if self.mode == "rows":
            if n < 3:
                return None
            rest = perm[1:]
            self.r.shuffle(rest)
            perm = [0] + rest
        else:
            self.r.shuffle(perm)
        if perm == list(range(n)) and self.r.random() < 0.7:
            return None
        s = tuple(v.shape[p] for p in perm)
        if n == 2 and perm == [1, 0] and self.r.random() < 0.5:
            return self.let(f"transpose({v.name})", s, v.mag)
        kw = "" if self.r.random() < 0.8 else "perm = "
        return self.let(f"transpose({v.name}, {kw}[{', '.join(map(str, perm))}])", s, v.mag)

    def op_slice(self):
        v = self.pick()
        axes = [i for i in self.const_axes(v, False) if v.shape[i][0] >= 1]
        if not axes:
            return None
        ax = self.r.choice(axes)
        n = v.shape[ax][0]
        start = self.r.randint(0, n - 1)
        ln = self.r.randint(1, n - start)
        s = list(v.shape)
        s[ax] = cdim(ln)
        axt = ax - len(s) if self.r.random() < 0.3 else ax
        return self.let(f"slice({v.name}, axis = {axt}, start = {start}, len = {ln})", s, v.mag)

    def op_concat(self):
        a = self.pick()
        axes = [i for i in range(len(a.shape)) if self.mode == "free" or i > 0]
        if not axes:
            return None
        ax = self.r.choice(axes)

        def fits(u):
            return len(u.shape) == len(a.shape) and all(
                i == ax or u.shape[i] == a.shape[i] for i in range(len(a.shape)))

        b = self.pick(fits)
        if b is not None and self.r.random() < 0.6:
            bname, bs, bmag = b.name, b.shape, b.mag
        elif not has_tok(a.shape[:ax] + a.shape[ax + 1:]):
            bs = list(a.shape)
            bs[ax] = cdim(self.size())
            bname, bmag, b = self.weight(bs), 1.0, None
        else:
            return None
        s = list(a.shape)
        x, y = a.shape[ax], bs[ax]
        s[ax] = (x[0] + y[0], x[1] + y[1], x[2] + y[2])
        if not self.ok_shape(s):
            return None
        kw = "" if ax == len(s) - 1 and self.r.random() < 0.5 else f", axis = {ax}"
        return self.let(f"concat({a.name}, {bname}{kw})", s, max(a.mag, bmag))

    def op_norm(self):
        v = self.pick(lambda v: is_const(v.shape[-1]))
        if v is None:
            return None
        C = v.shape[-1]
        eps = self.r.choice(["1e-5", "1e-6", "0.001", "1e-5"])
        kw = "" if self.r.random() < 0.3 else f", eps = {eps}"
        if self.r.random() < 0.5:
            w = self.weight([C], "norm")
            return self.let(f"rms_norm({v.name}, {w}{kw})", v.shape, 4)
        w, b = self.weight([C], "ln"), self.weight([C], "lnb")
        return self.let(f"layer_norm({v.name}, {w}, {b}{kw})", v.shape, 4)

    def op_norm_prim(self):
        """RMSNorm or LayerNorm from primitives, as fusion must rediscover them."""
        v = self.pick(lambda v: is_const(v.shape[-1]))
        if v is None:
            return None
        C = v.shape[-1]
        if self.r.random() < 0.5:
            var = self.let(f"mean({v.name} * {v.name}, axis = -1)", v.shape[:-1] + (ONE,), v.mag ** 2, pool=False)
            w = self.weight([C], "norm")
            return self.let(f"{v.name} * rsqrt({var.name} + 1e-5) * {w}", v.shape, 4)
        mu = self.let(f"mean({v.name}, axis = -1)", v.shape[:-1] + (ONE,), v.mag, pool=False)
        d = self.let(f"{v.name} - {mu.name}", v.shape, v.mag * 2, pool=False)
        var = self.let(f"mean({d.name} * {d.name}, axis = -1)", v.shape[:-1] + (ONE,), v.mag ** 2, pool=False)
        w, b = self.weight([C], "ln"), self.weight([C], "lnb")
        return self.let(f"{d.name} * rsqrt({var.name} + 1e-5) * {w} + {b}", v.shape, 4)

    def op_softmax(self):
        v = self.pick()
        s = v.shape
        maskable = len(s) >= 2 and (
            (is_const(s[-2]) and is_const(s[-1]) and s[-1][0] >= s[-2][0])
            or (self.mode == "free" and s[-2] == TOK and s[-1] == TOK)
            or (is_const(s[-2]) and s[-2][0] == 1 and self.mode == "free"))
        if self.r.random() < 0.3:
            # written out: exp(x - max) / sum
            m = self.let(f"max({v.name}, axis = -1)", s[:-1] + (ONE,), v.mag, pool=False)
            e = self.let(f"exp({v.name} - {m.name})", s, 1, pool=False)
            return self.let(f"{e.name} / sum({e.name}, axis = -1)", s, 1)
        if maskable and self.r.random() < 0.5:
            return self.let(f"softmax(causal_mask({v.name}))", s, 1)
        return self.let(f"softmax({v.name})", s, 1, alts=[])

    def positions(self):
        if self.pos is None:
            if self.r.random() < 0.4 and (self.mode == "free" or self.has_cache):
                # P .. P+T-1 from the cache offset: no position input (in
                # rows mode only with a cache: without one, each call of
                # --split starts again at 0, as it should, unlike one call)
                self.pos = f"positions({self.first_input})"
                return self.pos
            self.pos = "pos" if self.r.random() < 0.5 else "position_ids"
            self.stmts.append(Stmt("input", self.pos, "i32[T]", (TOK,)))
        return self.pos

    def op_index(self):
        """comparisons, where, cast, topk/argmax, gather, embedding: a
        decision (mask, cast to i32, indices) reads inputs only."""
        r = self.r
        kind = r.choice(["where", "where", "leaky", "mask", "cast", "topk", "topk", "argmax", "embed"])
        cmp = r.choice(["<", "<=", ">", ">=", "==", "!="])
        if kind == "where":
            a = self.pick()
            b = self.pick(lambda v: v is not a and broadcast(a.shape, v.shape) is not None)
            if b is None:
                return None
            out = broadcast(a.shape, b.shape)
            if out is None or not self.ok_shape(out):
                return None
            c = r.choice([">", ">=", "<", "<="])
            x, y = (a, b) if c in (">", ">=") else (b, a)
            # the larger (or the smaller) of a and b: continuous where they meet
            if r.random() < 0.5:
                x, y = y, x
            return self.let(f"where({a.name} {c} {b.name}, {x.name}, {y.name})", out, max(a.mag, b.mag),
                            alts=[a, b])
        if kind == "leaky":
            v = self.pick()
            return self.let(f"where({v.name} >= 0.0, {v.name}, {v.name} * 0.125)", v.shape, v.mag, alts=[v])
        x = self.pick(lambda v: v.exact)
        if x is None:
            return None
        if kind == "mask":
            v = self.pick(lambda v: broadcast(x.shape, v.shape) == tuple(v.shape))
            if v is None:
                return None
            return self.let(f"{v.name} * cast({x.name} {cmp} {self.number()}, f32)", v.shape, v.mag, alts=[v])
        if kind == "cast":
            # x * 4 is exact in float32 and double; huge values saturate alike
            return self.let(f"cast(cast({x.name} * 4.0, i32), f32) * 0.25", x.shape, x.mag + 1, alts=[x])
        if not is_const(x.shape[-1]):
            return None
        N = x.shape[-1][0]
        y = self.pick(lambda v: v.shape == x.shape)
        if kind == "argmax":
            i = self.let(f"argmax({x.name})", x.shape[:-1] + (ONE,), 1, pool=False, i32=True)
            if r.random() < 0.5:
                return self.let(f"gather({y.name}, {i.name})", i.shape, y.mag)
            return self.let(f"cast({i.name}, f32) / {float(N)}", i.shape, 1)
        if kind == "topk":
            k = r.randint(1, N)
            vname, iname = self.fresh("v"), self.fresh("i")
            ks = f"{k}" if r.random() < 0.5 else f"k = {k}"
            shape = x.shape[:-1] + (cdim(k),)
            if not self.ok_shape(shape):
                return None
            self.stmts.append(Stmt("let2", vname, f"topk({x.name}, {ks})", shape, [], iname))
            vals = Value(vname, shape, x.mag)
            self.pool.append(vals)
            if r.random() < 0.5:
                return self.let(f"gather({y.name}, {iname}) + cast({iname}, f32)", shape, y.mag + N)
            return vals
        # embed: rows of a table by int32 ids (check draws them inside the table)
        if self.ids is None:
            self.ids = "ids" if r.random() < 0.5 else "input_ids"
            self.stmts.append(Stmt("input", self.ids, "i32[T]", (TOK,)))
        V, D = self.size(), self.size()
        w = self.weight([cdim(V), cdim(D)], "embed")
        return self.let(f"embedding({w}, {self.ids})", (TOK, cdim(D)), 4)

    def op_rope(self):
        v = self.pick(lambda v: len(v.shape) == 2 and v.shape[0] == TOK and is_const(v.shape[1]))
        if v is None:
            return None
        C = v.shape[1][0]
        hds = [h for h in range(2, C + 1, 2) if C % h == 0]
        if not hds:
            return None
        hd = self.r.choice(hds)
        theta = self.r.choice(["", ", theta = 10000.0", ", theta = 500000.0", ", theta = 100.0"])
        return self.let(f"rope({v.name}, {self.positions()}, head_dim = {hd}{theta})", v.shape, v.mag)

    def cache(self, cols):
        if not self.has_cache:
            self.stmts.append(Stmt("dim", "P", None))
            self.has_cache = True
        name = self.fresh("kc") if self.r.random() < 0.5 else self.fresh("cache.v")
        self.stmts.append(Stmt("cache", name, f"f32[P, {cols}]", (cdim(0), cdim(cols))))
        return name

    def op_attention(self):
        """q, k, v projections of one value, optional rope, optional caches,
        then attention as the builtin or from primitives (heads as batch
        dims, grouped-query broadcasting as in llama_layer_prim.fdl)."""
        x = self.pick(lambda v: len(v.shape) == 2 and v.shape[0] == TOK and is_const(v.shape[1]))
        if x is None:
            return None
        r = self.r
        kvh = r.choice([1, 1, 2, 3])
        H = kvh * r.choice([1, 2, 3, 4])
        hd = r.choice([1, 2, 3, 4, 5, 8, 16]) if r.random() < 0.3 else r.choice([2, 4, 6, 8, 16])
        if H * hd > 128:
            return None
        C = x.shape[1]
        q = self.let(f"linear({x.name}, {self.weight([cdim(H * hd), C], 'wq')})", (TOK, cdim(H * hd)), 3,
                     pool=False)
        k = self.let(f"linear({x.name}, {self.weight([cdim(kvh * hd), C], 'wk')})", (TOK, cdim(kvh * hd)), 3,
                     pool=False)
        v = self.let(f"linear({x.name}, {self.weight([cdim(kvh * hd), C], 'wv')})", (TOK, cdim(kvh * hd)), 3,
                     pool=False)
        if hd % 2 == 0 and r.random() < 0.5:
            pos = self.positions()
            q = self.let(f"rope({q.name}, {pos}, head_dim = {hd})", q.shape, 3, pool=False)
            k = self.let(f"rope({k.name}, {pos}, head_dim = {hd})", k.shape, 3, pool=False)
        use_cache = self.mode == "rows" or r.random() < 0.4
        S = TOK
        if use_cache:
            k = self.let(f"append({self.cache(kvh * hd)}, {k.name})", (KEYS, cdim(kvh * hd)), 3, pool=False)
            v = self.let(f"append({self.cache(kvh * hd)}, {v.name})", (KEYS, cdim(kvh * hd)), 3, pool=False)
            S = KEYS
        causal = self.mode == "rows" or r.random() < 0.6
        scale = r.choice([None, None, 0.125, 0.5, 1.0])
        out = (TOK, cdim(H * hd))
        if r.random() < 0.5:
            kw = f"heads = {H}"
            if kvh != H or r.random() < 0.5:
                kw += f", kv_heads = {kvh}"
            if causal or r.random() < 0.5:
                kw += f", causal = {'true' if causal else 'false'}"
            if scale is not None:
                kw += f", scale = {scale}"
            return self.let(f"attention({q.name}, {k.name}, {v.name}, {kw})", out, 3)
        G = H // kvh
        St = dim_text(S)
        qh = self.let(f"transpose(reshape({q.name}, [T, {kvh}, {G}, {hd}]), [1, 2, 0, 3])",
                      (cdim(kvh), cdim(G), TOK, cdim(hd)), 3, pool=False)
        kt = self.let(f"reshape(transpose(reshape({k.name}, [{St}, {kvh}, {hd}]), [1, 2, 0]), [{kvh}, 1, {hd}, {St}])",
                      (cdim(kvh), ONE, cdim(hd), S), 3, pool=False)
        vh = self.let(f"reshape(transpose(reshape({v.name}, [{St}, {kvh}, {hd}]), [1, 0, 2]), [{kvh}, 1, {St}, {hd}])",
                      (cdim(kvh), ONE, S, cdim(hd)), 3, pool=False)
        sc = f"{scale}" if scale is not None else f"rsqrt({hd})"
        scores = self.let(f"matmul({qh.name}, {kt.name}) * {sc}", (cdim(kvh), cdim(G), TOK, S), 10, pool=False)
        probs = self.let(f"softmax(causal_mask({scores.name}))" if causal else f"softmax({scores.name})",
                         scores.shape, 1, pool=False)
        ctx = self.let(f"matmul({probs.name}, {vh.name})", (cdim(kvh), cdim(G), TOK, cdim(hd)), 3, pool=False)
        return self.let(f"reshape(transpose({ctx.name}, [2, 0, 1, 3]), [T, {H * hd}])", out, 3)

    def op_mlp(self):
        x = self.pick(lambda v: is_const(v.shape[-1]))
        if x is None:
            return None
        C, F = x.shape[-1], cdim(self.size(2))
        if self.r.random() < 0.5:
            g = self.weight([F, C], "gate")
            u = self.weight([F, C], "up")
            d = self.weight([C, F], "down")
            return self.let(f"linear(silu(linear({x.name}, {g})) * linear({x.name}, {u}), {d})", x.shape, 4)
        w1, b1 = self.weight([C, F], "fc"), self.weight([F], "fcb")
        w2, b2 = self.weight([F, C], "proj"), self.weight([C], "projb")
        h = self.let(f'gelu_tanh(linear({x.name}, {w1}, {b1}, layout = "in_out"))', x.shape[:-1] + (F,), 4)
        return self.let(f'linear({h.name}, {w2}, {b2}, layout = "in_out")', x.shape, 4)

    def op_moe(self):
        """moe(): the router decides from an input (exact on both sides);
        or moe_up/moe_down on int32 expert ids (check draws them in [0, E))."""
        r = self.r
        x = self.pick(lambda v: v.exact and len(v.shape) == 2 and v.shape[0] == TOK and is_const(v.shape[1]))
        if x is None:
            return None
        D, E, I = x.shape[1], cdim(r.randint(1, 6)), cdim(self.size())
        k = r.randint(1, E[0])
        gu = self.weight([E, cdim(2 * I[0]), D], "gate_up")
        dn = self.weight([E, D, I], "down")
        if r.random() < 0.7:
            wr = self.weight([E, D], "router")
            norm = r.choice(["true", "false"])
            return self.let(f"moe({x.name}, {wr}, {gu}, {dn}, top_k = {k}, norm_topk = {norm})", x.shape, 4)
        ids = self.fresh("experts")
        self.stmts.append(Stmt("input", ids, "i32" + shape_text((TOK, cdim(k))), (TOK, cdim(k))))
        h = self.let(f"moe_up({x.name}, {ids}, {gu})", (TOK, cdim(k), I), 4, pool=False)
        return self.let(f"moe_down({h.name}, {ids}, {dn})", x.shape, 4)

    def op_append(self):
        """free mode: an append whose result is used like any value (P = 0)."""
        v = self.pick(lambda v: len(v.shape) == 2 and v.shape[0] == TOK and is_const(v.shape[1]))
        if v is None:
            return None
        c = self.cache(v.shape[1][0])
        # [P + T, C] at P = 0 has T rows, but its type says P + T
        return self.let(f"append({c}, {v.name})", (KEYS, v.shape[1]), v.mag)

    def normalize(self, v):
        return self.let(f"tanh({v.name})" if self.r.random() < 0.5 else
                        f"rms_norm({v.name}, {self.weight([v.shape[-1]], 'norm')})"
                        if is_const(v.shape[-1]) else f"tanh({v.name})", v.shape, 4)

    def generate(self):
        r = self.r
        self.stmts.append(Stmt("dim", "T", None))
        ninputs = 1 if r.random() < 0.7 else 2
        for i in range(ninputs):
            rank = 2 if self.mode == "rows" or r.random() < 0.6 else r.choice([1, 2, 3])
            s = [TOK] + [cdim(self.size()) for _ in range(rank - 1)]
            if self.mode == "free" and rank >= 2 and i > 0 and r.random() < 0.3:
                r.shuffle(s)
            name = ("x" if i == 0 else "x2") if not self.dotted else ("hidden_states" if i == 0 else "input.extra")
            self.stmts.append(Stmt("input", name, "f32" + shape_text(s), tuple(s)))
            self.pool.append(Value(name, s, 3.5, exact=True))
            if i == 0:
                self.first_input = name
        ops = [(self.op_unary, 10), (self.op_binary, 12), (self.op_reduce, 5), (self.op_linear, 8),
               (self.op_matmul, 5), (self.op_reshape, 4), (self.op_transpose, 3), (self.op_slice, 3),
               (self.op_concat, 3), (self.op_norm, 6), (self.op_norm_prim, 2), (self.op_softmax, 4),
               (self.op_rope, 2), (self.op_attention, 5), (self.op_mlp, 3), (self.op_index, 5), (self.op_moe, 2)]
        if self.mode == "free":
            ops.append((self.op_append, 1))
        funcs, weights = zip(*ops)
        nstmts = r.randint(2, 14)
        made = tries = 0
        while made < nstmts and tries < 200:
            tries += 1
            f = r.choices(funcs, weights)[0]
            mark = len(self.stmts), len(self.pool), self.n, self.pos, self.has_cache, self.ids
            v = f()
            if v is None:
                # undo the weights and helpers a failed attempt declared
                del self.stmts[mark[0]:]
                del self.pool[mark[1]:]
                self.n, self.pos, self.has_cache, self.ids = mark[2], mark[3], mark[4], mark[5]
                continue
            made += 1
            if v.mag > 1e4:
                self.normalize(v)
        # outputs: the last value, and maybe one or two more
        outs = [self.pool[-1]]
        for _ in range(r.choice([0, 0, 1, 2])):
            u = r.choice(self.pool)
            if u not in outs:
                outs.append(u)
        for i, u in enumerate(outs):
            if self.mode == "rows" and not rows_ok(u.shape):
                continue
            name = ["y", "hidden_states", "out.extra", "z"][i] if self.dotted else f"y{i}"
            self.stmts.append(Stmt("output", name, u.name, u.shape))
        if not any(s.kind == "output" for s in self.stmts):
            self.stmts.append(Stmt("output", "y", self.pool[0].name, self.pool[0].shape))
        self.stmts = dce(self.stmts)
        return Program(self.seed, self.mode, self.T, self.split, self.stmts)


def generate(seed):
    return Gen(seed).generate()


# ---- running fusec check --------------------------------------------------------


class Variant:
    def __init__(self, target, opt, extra=()):
        self.target, self.opt, self.extra = target, opt, list(extra)

    def name(self):
        return f"{self.target} {'-O0' if self.opt == 0 else 'fused'}"

    def args(self):
        return ["--target", self.target] + (["-O0"] if self.opt == 0 else []) + self.extra


SPECIAL_KINDS = ["nan", "inf", "huge", "denormal", "bigrow", "tinyrow", "offsetrow"]
FINITE_KINDS = ["denormal", "tinyrow", "offsetrow"]


def special_args(seed, text):
    """Special input values for a third of the programs (issue 10): one to
    three kinds of `fusec check --special` at a low rate, drawn from the
    program's seed so the minimiser and the reproducer keep them.  The
    NaN-aware comparison then holds the generated code to the interpreter's
    NaN and inf places as well as its values.  A program with a causal_mask
    gets only kinds that stay finite: attention written from primitives
    multiplies a masked value row by 0 (NaN when it holds an inf), while the
    attention builtin the fusion rewrites it to skips it (docs/fusion.md,
    "Limits and choices")."""
    r = random.Random(seed * 7919 + 17)
    if r.random() >= 1 / 3:
        return []
    pool = FINITE_KINDS if "causal_mask(" in text else SPECIAL_KINDS
    kinds = r.sample(pool, r.randint(1, 3))
    return ["--special", ",".join(sorted(kinds, key=SPECIAL_KINDS.index)),
            "--special-rate", r.choice(["0.005", "0.01", "0.03"])]


def check_cmd(fusec, path, prog, variant, seed, rtol):
    cmd = [fusec, "check", path, "--random", "--dim", f"T={prog.T}", "--seed", str(seed),
           "--rtol", str(rtol), "--max-tol", str(MAX_TOL)] + variant.args() + special_args(prog.seed, prog.text())
    if prog.split:
        cmd += ["--split", str(prog.split)]
    return cmd


def run_check(fusec, prog, variant, seed, rtol, tmpdir):
    """Returns (kind, output): kind is ok, mismatch, internal, crash, error, hang."""
    fd, path = tempfile.mkstemp(suffix=".fdl", prefix=f"rnd{prog.seed}_", dir=tmpdir)
    with os.fdopen(fd, "w") as f:
        f.write(prog.text())
    cmd = check_cmd(fusec, path, prog, variant, seed, rtol)
    try:
        for attempt in range(5):
            try:
                p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=CHECK_TIMEOUT)
                out = p.stdout.decode("utf-8", "replace")
                rc = p.returncode
                break
            except OSError as e:
                # fusec being relinked by a concurrent make: try again
                out, rc = f"cannot run {fusec}: {e}", 127
                time.sleep(1)
    except subprocess.TimeoutExpired:
        out, rc = f"timed out after {CHECK_TIMEOUT}s", None
    finally:
        os.unlink(path)
    if rc is None:
        return "hang", out
    if rc == 0:
        return "ok", out
    if rc == 1 and re.search(r"rel_l2_err=\S+ \(rtol \S+\).* FAIL( \(NaN/Inf .*\))?$", out, re.M):
        return "mismatch", out
    if rc == 70:
        return "internal", out
    if rc < 0 or rc > 128:
        return "crash", out
    return "error", out


def first_error(out):
    m = re.search(r"error: (.*)", out)
    return re.sub(r"'[^']*'", "''", m.group(1)) if m else ""


# ---- minimising -------------------------------------------------------------------


def minimize(fusec, prog, variant, seed, rtol, kind, out, tmpdir, budget=150):
    """Delta debugging over statements while the same variant fails the same way."""
    key = first_error(out) if kind == "error" else None
    trials = [0]

    def fails(p):
        if trials[0] >= budget:
            return False
        trials[0] += 1
        k, o = run_check(fusec, p, variant, seed, rtol, tmpdir)
        return k == kind and (key is None or first_error(o) == key)

    best = prog
    changed = True
    while changed and trials[0] < budget:
        changed = False
        # smaller T (and split)
        for T in (1, 2, 3):
            if T < best.T:
                cand = best.with_stmts(best.stmts, T=T, split=min(best.split, T) if best.split else 0)
                if fails(cand):
                    best, changed = cand, True
                    break
        # fewer outputs
        outs = [s for s in best.stmts if s.kind == "output"]
        for o in outs:
            if len([s for s in best.stmts if s.kind == "output"]) <= 1:
                break
            cand = best.with_stmts(dce([s for s in best.stmts if s is not o]))
            if fails(cand):
                best, changed = cand, True
        # a value made an input of its shape: cuts off everything that only
        # computed it (f32 lets; in rows mode [T, const...] only, as --split
        # needs; never a shape of the cache length P)
        for i in range(len(best.stmts) - 1, -1, -1):
            if i >= len(best.stmts):
                continue
            st = best.stmts[i]
            sh = st.shape
            if st.kind != "let" or st.i32 or not sh or any(d[2] for d in sh):
                continue
            if best.mode == "rows" and (sh[0] != TOK or not all(is_const(d) for d in sh[1:])):
                continue
            if not any(d == TOK for d in sh):
                continue  # T must stay bindable by this input or another
            new = [x.copy() for x in best.stmts]
            new[i] = Stmt("input", st.name, "f32" + shape_text(sh), sh)
            cand = best.with_stmts(dce(new))
            if len(cand.stmts) < len(best.stmts) and fails(cand):
                best, changed = cand, True
        # an op replaced by an operand of the same shape, else by an earlier
        # value of that shape (an input or a let written before it)
        for i in range(len(best.stmts) - 1, -1, -1):
            if i >= len(best.stmts):
                continue
            st = best.stmts[i]
            if st.kind != "let":
                continue
            earlier = [s.name for s in best.stmts[:i] if s.kind in ("input", "let") and s.shape == st.shape
                       and s.name not in st.alts and s.name != st.name]
            for alt in st.alts + earlier[-3:]:
                if alt == st.text:
                    continue
                new = [s.copy() for s in best.stmts]
                new[i].text, new[i].alts = alt, []
                cand = best.with_stmts(dce(new))
                # only strictly smaller programs, so this always ends
                if len(cand.text()) < len(best.text()) and fails(cand):
                    best, changed = cand, True
                    break
        # an output pointed at an earlier value (drops what only it needed)
        for i, st in enumerate(best.stmts):
            if st.kind != "output":
                continue
            lets = [s for s in best.stmts if s.kind == "let" and s.name != st.text]
            for s in reversed(lets[-6:]):
                new = [x.copy() for x in best.stmts]
                new[i].text = s.name
                cand = best.with_stmts(dce(new))
                if len(cand.stmts) < len(best.stmts) and fails(cand):
                    best, changed = cand, True
                    break
    return best, trials[0]


# ---- targets ------------------------------------------------------------------------

PROBE = """block probe {
    dim T;
    input x: f32[T, 19];
    weight w: f32[5, 19];
    output y = silu(linear(x, w)) + 1.0;
}
"""


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def which(prog):
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, prog)
        if os.access(p, os.X_OK):
            return p
    return None


CROSS_CC = "aarch64-linux-gnu-gcc"
CROSS_RUN = "qemu-aarch64 -L /usr/aarch64-linux-gnu"


def probe_targets(fusec, tmpdir, log):
    """Targets that compile and run here, as (name, extra check arguments).
    A target fusec does not know is skipped with a note, one whose CPU
    features are missing too; NEON without its cross compiler or qemu (which
    scripts/install-deps.sh installs) and a target that should run here but
    fails on the probe block are failures.  NEON on another machine runs cross-compiled
    under qemu (fusec check --cc ... --run-with ...)."""
    flags = cpu_flags()
    import platform
    machine = platform.machine()
    helptext = subprocess.run([fusec, "check", "--help"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT).stdout.decode("utf-8", "replace")
    neon_extra, neon_why = [], None
    if machine != "aarch64":
        neon_extra = ["--cc", CROSS_CC, "--run-with", CROSS_RUN]
        if not which(CROSS_CC):
            neon_why = f"no {CROSS_CC}"
        elif not which("qemu-aarch64"):
            neon_why = "no qemu-aarch64"
        elif "--run-with" not in helptext:
            neon_why = "fusec check cannot cross-compile (no --cc/--run-with)"
    cands = [("generic", None, []),
             ("x86-64-avx2", None if machine == "x86_64" and {"avx2", "fma"} <= flags else "the CPU has no AVX2/FMA", []),
             ("x86-64-avx512", None if machine == "x86_64" and {"avx512f", "avx512bw", "avx512vl"} <= flags
              else "the CPU has no AVX-512F/BW/VL", []),
             ("aarch64-neon", neon_why, neon_extra),
             # the rows with more features than their base row (ALTERNATES)
             ("x86-64-avx512-bf16", None if machine == "x86_64" and {"avx512f", "avx512bw", "avx512vl", "avx512dq",
                                                                     "avx512_bf16", "avx512_vnni", "f16c"} <= flags
              else "the CPU has no AVX512-BF16/VNNI", []),
             ("aarch64-neon-dotprod", neon_why,
              [x.replace("qemu-aarch64", "qemu-aarch64 -cpu max") for x in neon_extra])]
    path = os.path.join(tmpdir, "probe.fdl")
    with open(path, "w") as f:
        f.write(PROBE)
    ok, broken = [], []
    for t, why_not, extra in cands:
        p = subprocess.run([fusec, "check", path, "--random", "--target", t] + extra, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        out = p.stdout.decode("utf-8", "replace")
        if p.returncode == 2 and "unknown target" in out:
            log(f"note: target {t}: fusec does not know it; skipped")
        elif why_not and t.startswith("aarch64-neon"):
            # scripts/install-deps.sh installs the cross tools: NEON never drops out silently
            log(f"FAIL: target {t} cannot run here: {why_not} (run scripts/install-deps.sh)")
            broken.append(t)
        elif why_not:
            log(f"note: target {t}: {why_not}; skipped")
        elif p.returncode == 0:
            ok.append((t, extra))
        else:
            log(f"FAIL: target {t} should run here but fails on the probe block (exit {p.returncode}):")
            log("  " + out.strip().replace("\n", "\n  ")[:2000])
            broken.append(t)
    os.unlink(path)
    return ok, broken


# A row with more features than its base row runs in the base row's place on
# the odd seeds, so that every row is covered at the cost of the base rows.
ALTERNATES = {"x86-64-avx512-bf16": "x86-64-avx512", "aarch64-neon-dotprod": "aarch64-neon"}


def plan_variants(targets):
    """The variants (base rows, fused and -O0), and for each base target the
    alternate row's (name, extra) where it runs here."""
    alt = {ALTERNATES[t]: (t, extra) for t, extra in targets if t in ALTERNATES}
    base = [Variant(t, o, extra) for t, extra in targets if t not in ALTERNATES for o in (1, 0)]
    return base, alt


def variant_for(v, seed, alt):
    """What runs in variant v's place for the program of this seed."""
    if seed % 2 == 1 and v.target in alt:
        return Variant(alt[v.target][0], v.opt, alt[v.target][1])
    return v


# ---- main ------------------------------------------------------------------------------


def cmd_run(a):
    fusec = os.path.abspath(a.fusec)
    os.makedirs(a.out, exist_ok=True)
    tmpdir = tempfile.mkdtemp(prefix="fdlgen.")
    t0 = time.time()

    def log(s):
        print(s, flush=True)

    targets, broken = probe_targets(fusec, tmpdir, log)
    if a.targets:
        want = a.targets.split(",")
        targets = [t for t in targets if t[0] in want]
    variants, alt = plan_variants(targets)
    log(f"fdlgen: {a.n} programs from seed {a.seed}, rtol {a.rtol}, variants: "
        + ", ".join(v.name() for v in variants)
        + "".join(f"; {alt[b][0]} in place of {b} on odd seeds" for b in sorted(alt)))
    progs = [generate(s) for s in range(a.seed, a.seed + a.n)]
    tasks = [(p, v) for p in progs for v in variants]
    results = {}
    ran = {}   # (seed, base variant name) -> the variant that ran

    def work(task):
        p, v = task
        return task, run_check(fusec, p, variant_for(v, p.seed, alt), p.seed, a.rtol, tmpdir)

    with ThreadPoolExecutor(max_workers=a.jobs) as ex:
        for (p, v), (kind, out) in ex.map(work, tasks):
            results[(p.seed, v.name())] = (kind, out)
            ran[(p.seed, v.name())] = variant_for(v, p.seed, alt)
            if kind != "ok":
                log(f"FAIL: seed {p.seed} [{ran[(p.seed, v.name())].name()}]: {kind}")
    passed = sum(1 for k, _ in results.values() if k == "ok")
    worst = (0.0, None)
    for (seed, vname), (kind, out) in results.items():
        for e in re.findall(r"rel_l2_err=(\S+)", out):
            try:
                if kind == "ok" and float(e) > worst[0]:
                    worst = (float(e), f"seed {seed} [{vname}]")
            except ValueError:
                pass
    worst_max = (0.0, None)
    for (seed, vname), (kind, out) in results.items():
        for e in re.findall(r"scaled_max_err=(\S+)", out):
            try:
                if kind == "ok" and float(e) > worst_max[0]:
                    worst_max = (float(e), f"seed {seed} [{vname}]")
            except ValueError:
                pass
    failed = len(results) - passed + len(broken)
    for v in variants:
        n = sum(1 for p in progs if results[(p.seed, v.name())][0] == "ok")
        log(f"  {v.name():24s} {n}/{len(progs)} programs passed"
            + (f" ({alt[v.target][0]} on the odd seeds)" if v.target in alt else ""))
    modes = {m: sum(1 for p in progs if p.mode == m) for m in ("rows", "free")}
    log(f"  programs: {modes['rows']} with --split (rows mode), {modes['free']} without")
    if worst[1]:
        log(f"  largest relative L2 error among passing checks: {worst[0]:.3g} ({worst[1]}; rtol {a.rtol})")
    if worst_max[1]:
        log(f"  largest scaled max error among passing checks: {worst_max[0]:.3g} ({worst_max[1]}; max-tol {MAX_TOL})")
    # minimise each failing program once (its first failing variant)
    done = set()
    for p in progs:
        for v in variants:
            kind, out = results[(p.seed, v.name())]
            if kind == "ok" or p.seed in done:
                continue
            done.add(p.seed)
            v = ran[(p.seed, v.name())]
            log(f"\n==== seed {p.seed} [{v.name()}]: {kind}; output:")
            log("  " + out.strip().replace("\n", "\n  ")[-3000:])
            small, trials = (minimize(fusec, p, v, p.seed, a.rtol, kind, out, tmpdir, a.budget)
                             if a.budget > 0 else (p, 0))
            path = os.path.join(a.out, f"seed{p.seed}.fdl")
            cmd = check_cmd("fusec", path, small, v, p.seed, a.rtol)
            text = f"// reproduce: {shlex.join(cmd)}\n// failure: {kind} ({v.name()})\n" + small.text()
            with open(path, "w") as f:
                f.write(text)
            log(f"---- minimised in {trials} checks ({len(p.stmts)} -> {len(small.stmts)} statements): {path}")
            log(text)
    try:
        os.rmdir(tmpdir)
    except OSError:
        pass
    log(f"fdlgen: {len(progs)} programs x {len(variants)} variants in {time.time() - t0:.0f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


class Fixed:
    """A committed reproducer: its text as is, T and split from its header."""

    def __init__(self, path):
        self.path = path
        with open(path) as f:
            self.body = f.read()
        m = re.search(r"fdlgen seed=(\d+) mode=\w+ T=(\d+) split=(\d+)", self.body)
        self.seed = int(m.group(1)) if m else 1
        self.T = int(m.group(2)) if m else 7
        self.split = int(m.group(3)) if m else 0

    def text(self):
        return self.body


def cmd_regress(a):
    """Every reproducer in a directory, on every variant: the mismatches
    fixed so far stay fixed."""
    fusec = os.path.abspath(a.fusec)
    tmpdir = tempfile.mkdtemp(prefix="fdlgen.")
    targets, broken = probe_targets(fusec, tmpdir, print)
    if a.targets:
        targets = [t for t in targets if t[0] in a.targets.split(",")]
    variants, alt = plan_variants(targets)
    files = sorted(f for f in os.listdir(a.dir) if f.endswith(".fdl"))
    passed, failed = 0, len(broken)
    for i, name in enumerate(files):
        prog = Fixed(os.path.join(a.dir, name))
        for v in variants:
            v = variant_for(v, i, alt)   # the alternate rows on every other reproducer
            kind, out = run_check(fusec, prog, v, prog.seed, a.rtol, tmpdir)
            if kind == "ok":
                passed += 1
            else:
                failed += 1
                print(f"FAIL: {name} [{v.name()}]: {kind}")
                print("  " + out.strip().replace("\n", "\n  ")[-2000:])
    try:
        os.rmdir(tmpdir)
    except OSError:
        pass
    print(f"fdlgen: {len(files)} reproducers x {len(variants)} variants")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("-n", type=int, default=20)
    r.add_argument("--jobs", type=int, default=2)
    r.add_argument("--fusec", default=os.environ.get("FUSEC", "build/fusec"))
    r.add_argument("--out", default=os.environ.get("FDLGEN_OUT", "build/diff-failures"))
    r.add_argument("--rtol", type=float, default=RTOL)
    r.add_argument("--targets", default="", help="comma-separated subset of the targets that run here")
    r.add_argument("--budget", type=int, default=150, help="checks the minimiser may run per failure")
    rg = sub.add_parser("regress")
    rg.add_argument("dir")
    rg.add_argument("--fusec", default=os.environ.get("FUSEC", "build/fusec"))
    rg.add_argument("--rtol", type=float, default=RTOL)
    rg.add_argument("--targets", default="", help="comma-separated subset of the targets that run here")
    g = sub.add_parser("gen")
    g.add_argument("seed", type=int)
    sub.add_parser("targets").add_argument("--fusec", default=os.environ.get("FUSEC", "build/fusec"))
    a = ap.parse_args()
    if a.cmd == "gen":
        sys.stdout.write(generate(a.seed).text())
        return 0
    if a.cmd == "regress":
        return cmd_regress(a)
    if a.cmd == "targets":
        tmp = tempfile.mkdtemp(prefix="fdlgen.")
        ok, broken = probe_targets(os.path.abspath(a.fusec), tmp, print)
        os.rmdir(tmp)
        print("targets:", " ".join(t for t, _ in ok))
        return 1 if broken else 0
    return cmd_run(a)


if __name__ == "__main__":
    sys.exit(main())

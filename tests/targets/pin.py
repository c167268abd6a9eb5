#!/usr/bin/python3
"""pin.py FILE.c INTRINSIC [PREFIX] - pins the instructions of a block's MLP.

Reads a generated block, finds the kernels that touch an MLP weight (their
comment names a weight containing "mlp."), and checks their innermost loops:

  - some innermost loop calls INTRINSIC (e.g. _mm256_fmadd_ps): the hot loop
    is a vector FMA loop;
  - no innermost loop multiply-accumulates in scalar C (`acc += a * b`,
    `y = y + a * b`, `acc = a * b + acc`) without a vector intrinsic (PREFIX,
    default the INTRINSIC's family: "_mm256_", "_mm512_" or "q_f32(").  A
    remainder loop - `for (; i < N; ++i)`, or the same counted from 0 as
    `for (int q = 0, nq = (int)(N - i); q < nq; ++q)`, after a vector loop
    `for (; i + W <= N; i += W)` over the same i and N - runs fewer than W
    times and is not the hot path.

INTRINSIC "-" (with PREFIX) checks the second point alone, so that a test
can assert that the generic target fails it for the reason it names.

Exit status 0 when both hold, 1 otherwise (with the offending loop), so a
test can also assert that the generic target fails it; 2 on bad usage or a
file that cannot be read.
"""
import re
import sys


def functions(text):
    """(comment, name, body) of every kernel function."""
    pat = re.compile(r"/\*((?:(?!\*/).)*)\*/\nstatic (?:FU_ATTR_\w+ )?void (k\w+)\([^)]*\) \{\n", re.S)
    for m in pat.finditer(text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), m.group(2), text[m.end():i - 1]


def loops(body):
    """(header, body) of every `for` loop (brace block or single statement)."""
    for m in re.finditer(r"\bfor \(", body):
        i, depth = m.end(), 1
        while depth:
            depth += {"(": 1, ")": -1}.get(body[i], 0)
            i += 1
        header = body[m.end():i - 1]
        while body[i] in " \n":
            i += 1
        if body[i] == "{":
            j, depth = i + 1, 1
            while depth:
                depth += {"{": 1, "}": -1}.get(body[j], 0)
                j += 1
            yield m.start(), header, body[i + 1:j - 1]
        else:
            yield m.start(), header, body[i:body.index(";", i) + 1]


def is_remainder(header, before):
    """`; i < N; ++i` after a vector loop `; i + W <= N; i += W`."""
    m = re.fullmatch(r"\s*;\s*(\w+) < (.+?);\s*(?:\+\+\1|\1\+\+)\s*", header)
    if not m:
        # the same remainder counted from 0: `int q = 0, nq = (int)(N - i); q < nq; ++q`
        c = re.fullmatch(r"\s*int (\w+) = 0, (\w+) = \(int\)\((.+?) - (\w+)\);\s*\1 < \2;\s*\+\+\1\s*", header)
        if c:
            v, n = re.escape(c.group(4)), re.escape(c.group(3))
            return re.search(r"for \(\s*;\s*%s \+ \d+ <= %s;\s*%s \+= \d+\)" % (v, n, v), before) is not None
    if not m:
        return False
    v, n = re.escape(m.group(1)), re.escape(m.group(2))
    return re.search(r"for \(\s*;\s*%s \+ \d+ <= %s;\s*%s \+= \d+\)" % (v, n, v), before) is not None


def scalar_mac(text, prefix):
    """A statement that multiply-accumulates in scalar C."""
    for stmt in text.split(";"):
        if prefix in stmt:
            continue
        m = re.fullmatch(r"\s*(.+?)\s*(\+=|=)\s*(.+?)\s*", stmt, re.S)
        if not m or "*" not in m.group(3) or re.match(r"(const )?(float|int64_t|int)\b", m.group(1)):
            continue
        lhs, op, rhs = m.group(1), m.group(2), m.group(3)
        if op == "+=" or (lhs in rhs and "+" in rhs):
            return stmt.strip()
    return None


def main():
    if len(sys.argv) not in (3, 4) or (sys.argv[2] == "-" and len(sys.argv) != 4):
        print(__doc__, file=sys.stderr)
        return 2
    path, intrinsic = sys.argv[1], sys.argv[2]
    prefix = sys.argv[3] if len(sys.argv) == 4 else (
        "_mm256_" if intrinsic.startswith("_mm256") else "_mm512_" if intrinsic.startswith("_mm512") else "q_f32(")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        print("pin: %s" % e, file=sys.stderr)
        return 2
    mlp = [(n, b) for c, n, b in functions(text) if "(mlp." in c]
    if not mlp:
        print("pin: %s: no kernel touches an mlp.* weight" % path)
        return 1
    fma_loops, bad = 0, []
    for name, body in mlp:
        for at, header, loop in loops(body):
            if re.search(r"\bfor \(", loop):
                continue  # not innermost
            if intrinsic != "-" and intrinsic in loop:
                fma_loops += 1
            mac = scalar_mac(loop, prefix)
            if mac and not is_remainder(header, body[:at]):
                bad.append((name, "for (%s) ... %s;" % (header, mac)))
    if intrinsic != "-" and not fma_loops:
        print("pin: %s: no innermost loop of the MLP kernels (%s) calls %s"
              % (path, ", ".join(n for n, _ in mlp), intrinsic))
        return 1
    if bad:
        print("pin: %s: a scalar multiply-accumulate loop on the MLP's hot path, in %s:\n    %s"
              % (path, bad[0][0], bad[0][1]))
        return 1
    if intrinsic == "-":
        print("pin: %s: %d MLP kernels, no scalar loop" % (path, len(mlp)))
    else:
        print("pin: %s: %d MLP kernels, %d innermost loops with %s, no scalar loop"
              % (path, len(mlp), fma_loops, intrinsic))
    return 0


if __name__ == "__main__":
    sys.exit(main())

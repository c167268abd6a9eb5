#!/usr/bin/python3
"""typed.py - the tokens of `fusec run` on a typed checkpoint against the
float64 interpreter on the same stored values (tests/model/run.sh, part 5).

  typed.py golden CKPT IDS OUT      CKPT (a golden file, weights w.*, perhaps
                                    quantized) with in.input_ids = IDS (the
                                    prompt and the generated tokens but the
                                    last) and placeholder out64.logits [T, V]
  typed.py adopt GOLDEN COUT NP TOKENS OUT
                                    OUT = GOLDEN whose out64.logits are the
                                    generated C's (COUT, from fusec check
                                    --keep); checks that each row NP-1+i's
                                    first largest logit is token i of TOKENS
                                    and prints the smallest gap between the
                                    largest logit and the next of those rows:
                                    an interpreter within half of it gives the
                                    same greedy tokens.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "quant"))
from quant_ref import read_st, write_st  # noqa: E402


def main():
    cmd = sys.argv[1]
    if cmd == "golden":
        t, meta = read_st(sys.argv[2])
        ids = np.array([int(x) for x in sys.argv[3].split(",")], np.int32)
        V = t["out64.logits"][1][1]
        keep = {k: v for k, v in t.items() if k.startswith("w.")}
        keep["in.input_ids"] = ("I32", [len(ids)], ids.tobytes())
        keep["out64.logits"] = ("F64", [len(ids), V], np.zeros((len(ids), V)).tobytes())
        write_st(sys.argv[4], keep, meta)
    elif cmd == "adopt":
        t, meta = read_st(sys.argv[2])
        c, _ = read_st(sys.argv[3])
        dt, shape, b = c["out.logits"]
        logits = np.frombuffer(b, np.float32).reshape(shape)
        np0 = int(sys.argv[4])
        toks = [int(x) for x in sys.argv[5].split()]
        gap = np.inf
        for i, tok in enumerate(toks):
            row = logits[np0 - 1 + i].astype(np.float64)
            best = int(np.argmax(row))
            if best != tok:
                print("row %d: the largest logit is token %d, fusec run made %d" % (np0 - 1 + i, best, tok))
                sys.exit(1)
            gap = min(gap, row[best] - np.max(np.delete(row, best)))
        t["out64.logits"] = ("F64", list(shape), logits.astype(np.float64).tobytes())
        write_st(sys.argv[6], t, meta)
        print("%.9g" % gap)
    else:
        sys.exit("typed.py: unknown command " + cmd)


main()

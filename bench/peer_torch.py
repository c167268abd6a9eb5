#!/usr/bin/python3
"""peer_torch.py - the PyTorch eager peer of the benchmark suite.

The driver (bench/bench.c) starts this once per run and talks to it over
stdin/stdout, one command per line, so that PyTorch runs interleaved with
fusec and OpenBLAS in the same repetitions while its weights stay loaded:

    hello                          -> ok torch VERSION        (or: error ...)
    threads N                      -> ok                      torch.set_num_threads(N), and
                                                              the same for the BLAS it calls
    weights MODEL PATH CONFIG...   -> ok                      load w.* from a safetensors file
    inputs PATH T P                -> ok                      load in.* and cache.* (rows [0, P))
    run OUTPATH|-                  -> ok SECONDS              one forward; output written as raw f32
    quit

`peer_torch.py --selftest GOLDEN_DIR` checks the models against the golden
layers of tests/golden/hf (Hugging Face's own output) instead.

The models are written the way Hugging Face's eager modules compute them
(LlamaDecoderLayer, GPT2Block; F.linear, rotate-half RoPE, repeat_kv,
matmul-softmax-matmul attention with a causal mask), with the KV cache
preallocated and written in place.  RoPE angles are computed in float64, as
fusec does, so that outputs agree to float32 rounding at position 1024.

Weights come from the safetensors file the driver wrote with the runtime's
writer; the file is parsed here with numpy (8-byte header length, JSON
header, raw little-endian data), so nothing beyond Debian's python3-torch
and python3-numpy is needed.
"""
import json
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the driver reports it and runs without this peer
    torch = None
    IMPORT_ERROR = str(e)

DTYPES = {"F32": np.float32, "I32": np.int32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    """name -> numpy array (a copy, so the file can go away)."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        dt = DTYPES[t["dtype"]]
        b, e = t["data_offsets"]
        arr = np.frombuffer(data, dtype=dt, count=(e - b) // np.dtype(dt).itemsize, offset=base + b)
        out[name] = arr.reshape(t["shape"]).copy()
    return out


class Peer:
    def __init__(self):
        self.model = None
        self.cfg = {}
        self.w = {}
        self.x = {}
        self.cache = {}
        self.T = self.P = 0

    # ---- shared pieces -------------------------------------------------------
    def rms_norm(self, x, w):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.cfg["eps"]) * w

    def rope(self, x, pos, heads):
        hd = self.cfg["hd"]
        inv = 1.0 / (self.cfg["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = pos.to(torch.float64)[:, None] * inv[None, :]
        emb = torch.cat((ang, ang), dim=-1)
        cos, sin = emb.cos().to(torch.float32), emb.sin().to(torch.float32)
        x = x.view(x.shape[0], heads, hd)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        rot = torch.cat((-x2, x1), dim=-1)
        return (x * cos[:, None, :] + rot * sin[:, None, :]).reshape(x.shape[0], heads * hd)

    def attention(self, q, k, v, P):
        """q [T, H*hd], k/v [S, KVH*hd]; causal with P cached rows (bottom-right)."""
        H, KVH, hd = self.cfg["h"], self.cfg["kvh"], self.cfg["hd"]
        T, S = q.shape[0], k.shape[0]
        q = q.view(T, H, hd).transpose(0, 1)                       # [H, T, hd]
        k = k.view(S, KVH, hd).transpose(0, 1)                     # [KVH, S, hd]
        v = v.view(S, KVH, hd).transpose(0, 1)
        if KVH != H:                                               # repeat_kv
            k = k[:, None].expand(KVH, H // KVH, S, hd).reshape(H, S, hd)
            v = v[:, None].expand(KVH, H // KVH, S, hd).reshape(H, S, hd)
        scores = torch.matmul(q, k.transpose(1, 2)) * (1.0 / hd ** 0.5)
        if T > 1:
            mask = torch.ones(T, S, dtype=torch.bool).triu(diagonal=P + 1)
            scores = scores.masked_fill(mask, float("-inf"))
        p = torch.softmax(scores, dim=-1)
        return torch.matmul(p, v).transpose(0, 1).reshape(T, H * hd)

    # ---- the models ------------------------------------------------------------
    def llama(self):
        w, T, P = self.w, self.T, self.P
        x, pos = self.x["in.hidden_states"], self.x["in.position_ids"]
        kc, vc = self.cache["k_cache"], self.cache["v_cache"]
        h = self.rms_norm(x, w["input_layernorm.weight"])
        q = self.rope(F.linear(h, w["self_attn.q_proj.weight"]), pos, self.cfg["h"])
        k = self.rope(F.linear(h, w["self_attn.k_proj.weight"]), pos, self.cfg["kvh"])
        kc[P:P + T] = k
        vc[P:P + T] = F.linear(h, w["self_attn.v_proj.weight"])
        a = self.attention(q, kc[:P + T], vc[:P + T], P)
        r = x + F.linear(a, w["self_attn.o_proj.weight"])
        h = self.rms_norm(r, w["post_attention_layernorm.weight"])
        m = F.linear(F.silu(F.linear(h, w["mlp.gate_proj.weight"])) * F.linear(h, w["mlp.up_proj.weight"]),
                     w["mlp.down_proj.weight"])
        return r + m

    def gpt2(self):
        w, T, P, D = self.w, self.T, self.P, self.cfg["d"]
        x = self.x["in.hidden_states"]
        kc, vc = self.cache["k_cache"], self.cache["v_cache"]
        eps = self.cfg["eps"]
        h = F.layer_norm(x, (D,), w["ln_1.weight"], w["ln_1.bias"], eps)
        qkv = torch.addmm(w["attn.c_attn.bias"], h, w["attn.c_attn.weight"])
        q, k, v = qkv.split(D, dim=1)
        kc[P:P + T] = k
        vc[P:P + T] = v
        a = self.attention(q, kc[:P + T], vc[:P + T], P)
        r = x + torch.addmm(w["attn.c_proj.bias"], a, w["attn.c_proj.weight"])
        h = F.layer_norm(r, (D,), w["ln_2.weight"], w["ln_2.bias"], eps)
        f = F.gelu(torch.addmm(w["mlp.c_fc.bias"], h, w["mlp.c_fc.weight"]), approximate="tanh")
        return r + torch.addmm(w["mlp.c_proj.bias"], f, w["mlp.c_proj.weight"])

    def mlp(self):
        w, x = self.w, self.x["in.hidden_states"]
        h = self.rms_norm(x, w["post_attention_layernorm.weight"])
        return F.linear(F.silu(F.linear(h, w["mlp.gate_proj.weight"])) * F.linear(h, w["mlp.up_proj.weight"]),
                        w["mlp.down_proj.weight"])

    def attn(self):
        return self.attention(self.x["in.q"], self.x["in.k"], self.x["in.v"], 0)

    # ---- commands ------------------------------------------------------------------
    def cmd_weights(self, model, path, *cfg):
        if model not in ("llama", "gpt2", "mlp", "attn"):
            raise ValueError("unknown model " + model)
        keys = ("d", "f", "h", "kvh", "hd", "eps", "theta")
        self.cfg = {k: (float(v) if k in ("eps", "theta") else int(v)) for k, v in zip(keys, cfg)}
        self.model = getattr(self, model)
        self.w = {k[2:]: torch.from_numpy(v) for k, v in read_safetensors(path).items() if k.startswith("w.")}
        return "ok"

    def cmd_inputs(self, path, T, P):
        self.T, self.P = int(T), int(P)
        t = read_safetensors(path)
        self.x = {k: torch.from_numpy(v) for k, v in t.items() if k.startswith("in.")}
        if "in.position_ids" in self.x:
            self.x["in.position_ids"] = self.x["in.position_ids"].to(torch.int64)
        # caches of P + T rows; rows [0, P) from the file (absent when P = 0)
        self.cache = {}
        if self.model in (self.llama, self.gpt2):
            width = self.cfg["kvh"] * self.cfg["hd"] if self.model == self.llama else self.cfg["d"]
            for name in ("k_cache", "v_cache"):
                full = torch.zeros(self.P + self.T, width, dtype=torch.float32)
                if "cache." + name in t:
                    full[: self.P] = torch.from_numpy(t["cache." + name])[: self.P]
                elif self.P > 0:
                    raise ValueError("no cache.%s for P = %d" % (name, self.P))
                self.cache[name] = full
        return "ok"

    def cmd_run(self, outpath):
        with torch.no_grad():
            t0 = time.perf_counter()
            out = self.model()
            t1 = time.perf_counter()
        if outpath != "-":
            out.contiguous().numpy().astype(np.float32).tofile(outpath)
        return "ok %.9f" % (t1 - t0)


def selftest(golden):
    """The peer on the golden layers (computed by Hugging Face transformers):
    all rows at once, then all but the last as a prefill and the last as a
    decode step through the cache; each must match out64 to 1e-5."""
    if torch is None:
        print("  PyTorch peer: no torch (%s), not checked" % IMPORT_ERROR)
        return 0
    configs = [("llama_layer.safetensors", "llama", (256, 704, 8, 2, 32, 1e-5, 10000.0)),
               ("gpt2_block.safetensors", "gpt2", (256, 1024, 8, 8, 32, 1e-5, 0.0))]
    failed = 0
    for name, model, cfg in configs:
        path = "%s/%s" % (golden, name)
        peer = Peer()
        peer.cmd_weights(model, path, *cfg)
        t = read_safetensors(path)
        x = torch.from_numpy(t["in.hidden_states"])
        pos = torch.from_numpy(t["in.position_ids"]).to(torch.int64) if "in.position_ids" in t else None
        want = t["out64.hidden_states"]
        T = x.shape[0]
        for mode in ("prefill", "prefill + decode"):
            width = cfg[3] * cfg[4] if model == "llama" else cfg[0]
            peer.cache = {n: torch.zeros(T, width) for n in ("k_cache", "v_cache")}
            steps = [(0, T)] if mode == "prefill" else [(0, T - 1), (T - 1, T)]
            outs = []
            with torch.no_grad():
                for a, b in steps:
                    peer.T, peer.P = b - a, a
                    peer.x = {"in.hidden_states": x[a:b]}
                    if pos is not None:
                        peer.x["in.position_ids"] = pos[a:b]
                    outs.append(peer.model())
            got = torch.cat(outs).double().numpy()
            err = float(np.sqrt(((got - want) ** 2).sum() / (want ** 2).sum()))
            ok = err <= 1e-5
            failed |= not ok
            print("  %-62s %s (got %.6g, want 1e-05)" % ("PyTorch peer vs Hugging Face, %s, %s" % (name, mode),
                                                        "ok" if ok else "FAILED", err))
    return failed


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--selftest":
        failed = selftest(sys.argv[2])
        print("PyTorch peer self-test %s" % ("FAILED" if failed else "passed"))
        sys.exit(1 if failed else 0)
    peer = Peer()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        try:
            if cmd == "quit":
                break
            if torch is None:
                reply = "error no torch: " + IMPORT_ERROR
            elif cmd == "hello":
                reply = "ok torch " + torch.__version__
            elif cmd == "threads":
                n = int(args[0])
                torch.set_num_threads(n)
                set_blas_threads(n)
                reply = "ok"
            elif cmd == "weights":
                reply = peer.cmd_weights(*args)
            elif cmd == "inputs":
                reply = peer.cmd_inputs(*args)
            elif cmd == "run":
                reply = peer.cmd_run(*args)
            else:
                reply = "error unknown command " + cmd
        except Exception as e:  # report, keep serving: the driver decides
            reply = "error %s: %s" % (type(e).__name__, str(e).replace("\n", " "))
        print(reply, flush=True)


def set_blas_threads(n):
    """torch.set_num_threads sets PyTorch's own thread pool; Debian's torch
    multiplies matrices in OpenBLAS (pthreads build), which keeps its own
    count (all cores) unless told: without this, the "1 thread" cells ran
    PyTorch's products on every core.  Every OpenBLAS the process has loaded
    (found in /proc/self/maps) gets the count."""
    import ctypes
    seen = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "blas" in path and path.startswith("/") and path not in seen:
                    seen.add(path)
                    try:
                        fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads", None)
                    except OSError:
                        fn = None
                    if fn:
                        fn(ctypes.c_int(n))
    except OSError:
        pass


if __name__ == "__main__":
    main()

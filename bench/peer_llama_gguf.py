#!/usr/bin/python3
"""peer_llama_gguf.py - the llama.cpp peer's input files (docs/benchmarks.md,
"llama.cpp").  Needs /usr/bin/python3 with numpy, and the gguf package that
bench/install-llama.sh puts into build/peers/py (found there, or by PYTHONPATH).

  peer_llama_gguf.py gguf DIR -o OUT.gguf [--type f32|f16|bf16|q8_0|q4_0] [--compare FQ]
      DIR holds config.json and model.safetensors of a Llama model (what
      bench/model/make_model.py writes): writes the same weights as a
      llama-arch GGUF (hyperparameters from config.json; tokenizer "none" with
      vocab_size dummy tokens; tied embeddings: no output.weight).  --type is
      the type of the layers' projections (*_proj.weight, as fusec's
      --weight-type 'model.layers.*proj.weight=TYPE' and fusec quantize
      --include '*proj.weight'); the embedding and the norms stay float32.
      Quantization is gguf.quants (llama.cpp's reference quantizers in numpy).
      q_proj/k_proj rows are permuted as llama.cpp's convert_hf_to_gguf.py does
      (GGUF's llama RoPE pairs neighbouring elements, Hugging Face's the two
      halves).  --compare FQ: FQ is the same checkpoint through `fusec quantize`;
      every converted tensor must be byte-identical to it (exit 1 otherwise).

  peer_llama_gguf.py golden DIR IDS LOGITS -o G.safetensors [--weights W]
      A golden file for `fusec check --golden` of dsl-examples/llama_model.fdl:
      w.* = the tensors of W (default DIR/model.safetensors, any types,
      fusec's quantized encoding kept), in.input_ids = IDS (comma-separated),
      out.logits = the [1, V] float32 row in LOGITS (text, one number per line:
      what build/peers/peer_llama --logits writes), i.e. llama.cpp's output as
      the reference fusec's generated model is compared with.  An existing G
      with the same header, newer than W, only has its ids and logits
      rewritten (W6's golden copy is 5 GB).
"""
import argparse
import json
import os
import struct
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "build", "peers", "py"))
try:
    import yaml  # noqa: F401  (gguf.metadata imports it; nothing here uses it)
except ImportError:
    sys.modules["yaml"] = types.ModuleType("yaml")


def die(msg):
    sys.exit("peer_llama_gguf.py: error: " + msg)


def read_st(path):
    """(header, memmap of the data); header without __metadata__, meta apart."""
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as e:
        die("%s: not a safetensors file (%s)" % (path, e))
    meta = hdr.pop("__metadata__", {}) or {}
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    return hdr, meta, mm


DT = {"F32": np.float32, "F16": np.float16, "U8": np.uint8, "I32": np.int32, "BF16": np.uint16}


def tensor(hdr, mm, name):
    m = hdr[name]
    a0, a1 = m["data_offsets"]
    return np.frombuffer(mm[a0:a1], dtype=DT[m["dtype"]]).reshape(m["shape"])


def as_f32(hdr, mm, name):
    t = tensor(hdr, mm, name)
    dt = hdr[name]["dtype"]
    if dt == "BF16":
        return (t.astype(np.uint32) << 16).view(np.float32)
    if dt in ("F32", "F16"):
        return t.astype(np.float32, copy=False)
    die("%s: dtype %s: the gguf writer takes F32, F16 or BF16 checkpoints" % (name, dt))


def permute(w, n_head):  # convert_hf_to_gguf.py's LlamaModel.permute, on rows
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


NAMES = {"input_layernorm.weight": "attn_norm", "post_attention_layernorm.weight": "ffn_norm",
         "self_attn.q_proj.weight": "attn_q", "self_attn.k_proj.weight": "attn_k",
         "self_attn.v_proj.weight": "attn_v", "self_attn.o_proj.weight": "attn_output",
         "mlp.gate_proj.weight": "ffn_gate", "mlp.up_proj.weight": "ffn_up", "mlp.down_proj.weight": "ffn_down"}


def cmd_gguf(a):
    import gguf
    from gguf import quants
    cfg = json.load(open(os.path.join(a.dir, "config.json")))
    hdr, _, mm = read_st(os.path.join(a.dir, "model.safetensors"))
    L, V, D = cfg["num_hidden_layers"], cfg["vocab_size"], cfg["hidden_size"]
    H, KVH = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    HD = cfg.get("head_dim") or D // H
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
    if not cfg.get("tie_word_embeddings", False):
        die("only tied embeddings (as make_model.py writes) are supported")
    qt = {"f32": None, "f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
          "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[a.type]
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[a.type]
    cmp = read_st(a.compare) if a.compare else None
    w = gguf.GGUFWriter(a.o, "llama")
    w.add_name("fusec-bench-random-llama")
    w.add_context_length(cfg.get("max_position_embeddings", 131072))
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(KVH)
    w.add_key_length(HD)
    w.add_value_length(HD)
    w.add_rope_dimension_count(HD)
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_vocab_size(V)
    w.add_file_type(ftype)
    w.add_tokenizer_model("none")
    diff = 0
    names = [("model.embed_tokens.weight", "token_embd.weight"), ("model.norm.weight", "output_norm.weight")]
    for i in range(L):
        names += [("model.layers.%d.%s" % (i, k), "blk.%d.%s.weight" % (i, v)) for k, v in NAMES.items()]
    for src, dst in names:
        if src not in hdr:
            die("%s: no tensor '%s'" % (a.dir, src))
        x = as_f32(hdr, mm, src)
        if src.endswith("q_proj.weight"):
            x = permute(x, H)
        elif src.endswith("k_proj.weight"):
            x = permute(x, KVH)
        if qt is None or not src.endswith("proj.weight"):
            w.add_tensor(dst, x)
            continue
        q = quants.quantize(np.ascontiguousarray(x), qt)
        if cmp is not None:
            ch, cm, cmm = cmp
            if src not in ch:
                die("%s: no tensor '%s'" % (a.compare, src))
            rows = x.shape[0]
            ref = tensor(ch, cmm, src).view(np.uint8).reshape(rows, -1)
            got = q.view(np.uint8).reshape(rows, -1)
            if src.endswith("q_proj.weight"):
                ref = permute(ref, H)
            elif src.endswith("k_proj.weight"):
                ref = permute(ref, KVH)
            if ref.shape != got.shape or not np.array_equal(ref, got):
                n = int(np.sum(np.any(ref != got, axis=-1))) if ref.shape == got.shape else rows
                print("peer_llama_gguf.py: %s: %s differs from fusec quantize in %d of %d rows"
                      % (src, a.type, n, rows))
                diff += 1
        w.add_tensor(dst, q, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if cmp is not None:
        if diff:
            die("%d tensors differ from %s" % (diff, a.compare))
        print("peer_llama_gguf.py: the %s tensors are byte-identical to fusec quantize's" % a.type)


def cmd_golden(a):
    hdr, meta, mm = read_st(a.weights or os.path.join(a.dir, "model.safetensors"))
    ids = np.array([int(x) for x in a.ids.split(",")], dtype=np.int32)
    try:
        logits = np.loadtxt(a.logits, dtype=np.float64).astype(np.float32).reshape(1, -1)
    except (OSError, ValueError) as e:
        die("%s: %s" % (a.logits, e))
    out = [("w." + k, hdr[k]["dtype"], hdr[k]["shape"], k) for k in sorted(hdr)]
    extra = {"in.input_ids": ids, "out.logits": logits}
    h, off = {}, 0
    for name, dt, shape, k in out:
        a0, a1 = hdr[k]["data_offsets"]
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + a1 - a0]}
        off += a1 - a0
    for name, x in extra.items():
        h[name] = {"dtype": "I32" if x.dtype == np.int32 else "F32", "shape": list(x.shape),
                   "data_offsets": [off, off + x.nbytes]}
        off += x.nbytes
    m = {("fusec.quant.w." + k[len("fusec.quant."):] if k.startswith("fusec.quant.") else k): v
         for k, v in meta.items()}
    if m:
        h["__metadata__"] = m
    hb = json.dumps(h).encode()
    hb += b" " * (-len(hb) % 8)
    head = struct.pack("<Q", len(hb)) + hb
    try:  # the same weights and shapes as last time: rewrite only ids and logits
        with open(a.o, "r+b") as f:
            if f.read(len(head)) == head and os.path.getmtime(a.o) >= os.path.getmtime(a.weights or
                                                                                       os.path.join(a.dir, "model.safetensors")):
                f.seek(len(head) + h["in.input_ids"]["data_offsets"][0])
                for x in extra.values():
                    f.write(x.tobytes())
                return
    except OSError:
        pass
    with open(a.o, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, dt, shape, k in out:
            a0, a1 = hdr[k]["data_offsets"]
            for s in range(a0, a1, 1 << 26):
                f.write(mm[s:min(a1, s + (1 << 26))].tobytes())
        for x in extra.values():
            f.write(x.tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gguf")
    g.add_argument("dir")
    g.add_argument("-o", required=True)
    g.add_argument("--type", default="f32", choices=["f32", "f16", "bf16", "q8_0", "q4_0"])
    g.add_argument("--compare")
    c = sub.add_parser("golden")
    c.add_argument("dir")
    c.add_argument("ids")
    c.add_argument("logits")
    c.add_argument("-o", required=True)
    c.add_argument("--weights")
    a = ap.parse_args()
    cmd_gguf(a) if a.cmd == "gguf" else cmd_golden(a)


if __name__ == "__main__":
    main()

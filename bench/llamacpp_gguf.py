#!/usr/bin/env python3
"""Writes a random-weight GGUF of a Llama-architecture dense model, for the optional llama.cpp peer
(bench/llamacpp_peer.sh). dsmoe4j itself never reads GGUF; this file exists only so that llama.cpp's
own llama-bench can be measured beside `./dsmoe bench infer` on the same shape.

The default shape is the paper's Dense-1B as a Llama (issue 14): d_model 2048, 24 layers, 32 query
heads and 2 KV heads of dimension 64, SwiGLU MLP with intermediate 5504, vocab 32000, untied output
matrix, RMSNorm eps 1e-5, RoPE theta 10000 over the full head, context 2048: 1,156,679,680 (1.16 B)
parameters. Matrices are normal(0, std) in fp32 (default std 0.02, seed 0), norm gains are 1.

The vocabulary is a synthetic SentencePiece-style ('llama' tokenizer model) list that llama.cpp
loads without a tokenizer file: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then
"\u2581w<i>" pieces up to the vocabulary size. llama-bench and llama-batched-bench feed token ids,
so the pieces never matter beyond loading.

Needs numpy and the gguf-py of the llama.cpp checkout being measured (pass --gguf-py DIR, or put it
on PYTHONPATH). If that gguf-py's package __init__ wants modules this machine lacks (sentencepiece,
yaml: used only by its vocab and metadata helpers), the script loads just gguf.constants and
gguf.gguf_writer from it, which need numpy only.

  python3 bench/llamacpp_gguf.py --gguf-py /work/peers/llama.cpp/gguf-py \\
          --out /work/peers/models/dense-1b-llama-f32.gguf [--seed 0] [--std 0.02]
          [--layers 24 --d-model 2048 --heads 32 --kv-heads 2 --head-dim 64 --ffn 5504
           --vocab 32000 --ctx 2048]
  python3 bench/llamacpp_gguf.py --gguf-py DIR --check FILE.gguf
      lists the file's metadata count, tensor types and parameter count (gguf.gguf_reader).

Tensors are generated and written one at a time, so memory stays near the largest tensor
(the 32000 x 2048 embedding, 262 MB), not the 4.6 GB file.
"""
import argparse
import importlib
import os
import sys
import time
import types


def load_gguf(gguf_py):
    """Imports gguf from gguf_py (or sys.path); falls back to its writer modules alone."""
    if gguf_py:
        gguf_py = os.path.abspath(gguf_py)
        if not os.path.isdir(os.path.join(gguf_py, "gguf")):
            sys.exit(f"--gguf-py {gguf_py}: no gguf/ package there (expected <llama.cpp>/gguf-py)")
        sys.path.insert(0, gguf_py)
    try:
        import gguf  # noqa: F401
        return sys.modules["gguf"]
    except ImportError as e:
        missing = getattr(e, "name", None)
        if missing in (None, "gguf") or not gguf_py:
            raise
        # The package __init__ pulls in optional helpers (vocab -> sentencepiece, metadata -> yaml).
        # Register an empty package with the same path and import only what writing needs.
        for name in [m for m in sys.modules if m == "gguf" or m.startswith("gguf.")]:
            del sys.modules[name]
        pkg = types.ModuleType("gguf")
        pkg.__path__ = [os.path.join(gguf_py, "gguf")]
        sys.modules["gguf"] = pkg
        for sub in ("constants", "lazy", "quants", "gguf_writer", "gguf_reader"):
            mod = importlib.import_module("gguf." + sub)
            for k in getattr(mod, "__all__", [n for n in dir(mod) if not n.startswith("_")]):
                setattr(pkg, k, getattr(mod, k))
        print(f"note: gguf package __init__ needs '{missing}' (not installed); "
              f"using gguf.constants/gguf_writer/gguf_reader only", file=sys.stderr)
        return pkg


def tensor_shapes(a):
    """(name, numpy shape) in the llama.cpp Llama layout; GGUF stores the shape reversed (ne0 = last)."""
    q = a.heads * a.head_dim
    kv = a.kv_heads * a.head_dim
    out = [("token_embd.weight", (a.vocab, a.d_model))]
    for i in range(a.layers):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (a.d_model,)),
            (p + "attn_q.weight", (q, a.d_model)),
            (p + "attn_k.weight", (kv, a.d_model)),
            (p + "attn_v.weight", (kv, a.d_model)),
            (p + "attn_output.weight", (a.d_model, q)),
            (p + "ffn_norm.weight", (a.d_model,)),
            (p + "ffn_gate.weight", (a.ffn, a.d_model)),
            (p + "ffn_up.weight", (a.ffn, a.d_model)),
            (p + "ffn_down.weight", (a.d_model, a.ffn)),
        ]
    out += [("output_norm.weight", (a.d_model,)), ("output.weight", (a.vocab, a.d_model))]
    return out


def synthetic_vocab(n):
    if n < 259 + 1:
        sys.exit(f"--vocab {n}: needs at least 260 entries (3 specials + 256 bytes + 1)")
    tokens, scores, types_ = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]  # UNKNOWN, CONTROL
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types_.append(6)  # BYTE
    i = 0
    while len(tokens) < n:
        tokens.append("\u2581w" + str(i))
        scores.append(-float(i))
        types_.append(1)  # NORMAL
        i += 1
    return tokens, scores, types_


def write(a, gguf):
    import numpy as np

    if a.d_model % 32 or a.ffn % 32:
        print("warning: d_model or ffn not a multiple of 32; llama-quantize q8_0 will fall back "
              "for those tensors", file=sys.stderr)
    shapes = tensor_shapes(a)
    n_params = sum(int(np.prod(s)) for _, s in shapes)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)) or ".", exist_ok=True)
    tmp = a.out + ".part"

    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name(a.name)
    w.add_context_length(a.ctx)
    w.add_embedding_length(a.d_model)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_rope_dimension_count(a.head_dim)
    w.add_rope_freq_base(a.rope_theta)
    w.add_layer_norm_rms_eps(a.rms_eps)
    w.add_vocab_size(a.vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens, scores, types_ = synthetic_vocab(a.vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types_)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    for name, shape in shapes:
        nbytes = int(np.prod(shape)) * 4
        w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()

    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    for name, shape in shapes:
        if len(shape) == 1:
            t = np.ones(shape, dtype=np.float32)
        else:
            t = rng.standard_normal(shape, dtype=np.float32)
            t *= np.float32(a.std)
        w.write_tensor_data(t)
    w.close()
    os.replace(tmp, a.out)
    size = os.path.getsize(a.out)
    print(f"wrote {a.out}: {len(shapes)} tensors, {n_params:,} parameters "
          f"({n_params / 1e9:.3f} B), {size / 2**30:.2f} GiB, f32, {time.time() - t0:.1f} s")


def check(path, gguf):
    import collections
    import numpy as np

    r = gguf.GGUFReader(path)
    kinds = collections.Counter()
    n = 0
    for t in r.tensors:
        kinds[t.tensor_type.name] += 1
        n += int(np.prod([int(x) for x in t.shape]))
    arch = r.fields["general.architecture"]
    arch = bytes(arch.parts[arch.data[0]]).decode()
    print(f"{path}: arch {arch}, {len(r.fields)} metadata keys, {len(r.tensors)} tensors "
          f"({', '.join(f'{k} x{v}' for k, v in sorted(kinds.items()))}), {n:,} parameters")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf-py", help="<llama.cpp>/gguf-py of the checkout being measured")
    ap.add_argument("--out", help="the f32 GGUF to write (keep it out of git)")
    ap.add_argument("--check", metavar="GGUF", help="describe an existing GGUF and exit")
    ap.add_argument("--name", default="dsmoe4j-peer-dense-1b-random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--ffn", type=int, default=5504)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rms-eps", type=float, default=1e-5)
    a = ap.parse_args()
    gguf = load_gguf(a.gguf_py)
    if a.check:
        check(a.check, gguf)
        return
    if not a.out:
        ap.error("--out is required (or --check)")
    if a.heads % a.kv_heads:
        ap.error("--heads must be a multiple of --kv-heads")
    write(a, gguf)


if __name__ == "__main__":
    main()

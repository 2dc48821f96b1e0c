#!/usr/bin/env python3
"""PyTorch peer of dsmoe4j: the Dense, SMoE and DS-MoE transformers of METHOD.md, re-implemented
with torch autograd from the same config.json and the same tensor names and shapes
(docs/ARCHITECTURE.md, "Files a user sees"; ParamLayout.java), so that

  * `speed` gives BENCHMARKS.md a reference training throughput on the same machine;
  * `loss` gives an independent value of the loss of a dsmoe4j checkpoint
    (config.json + model.safetensors) on given tokens, to compare with the Java forward;
  * `selftest` checks this script against itself and against a slow reference.

Needs torch (tested with Debian's python3-torch 1.13) and numpy only; run it with the python3
that has torch (on the project machine /usr/bin/python3; PyTorchPeer.java takes DSMOE_PYTHON, else
the first of /usr/bin/python3 and python3 on PATH that imports torch):

  python3 bench/pytorch_peer.py speed --config bench/configs/dsmoe-small.json \\
          --batch 8 --seq 256 --threads 2 --steps 5 --warmup 2
      [--blas auto|system|PATH]
      random tokens, init normal(0, 0.02) (o_proj/down_proj scaled by 1/sqrt(2*layers), norms 1),
      torch.optim.AdamW(lr 3e-4, wd 0.01 on matrices, 0 on norm gains, betas 0.9/0.999, eps 1e-8);
      prints one JSON line with the median seconds of a training step (forward, backward,
      AdamW step, zero_grad) and tokens/s. Debian's torch calls the generic libblas.so.3, the
      netlib reference BLAS unless an optimised one is installed (~5 GFLOP/s): --blas auto (default)
      re-runs the script with LD_PRELOAD of the OpenBLAS dsmoe4j itself uses
      (~/.javacpp/cache/openblas-*/.../libopenblas_nolapack.so.0) or Debian's libopenblas when
      present; --blas system does not. The JSON names the BLAS and a measured sgemm GFLOP/s.
  python3 bench/pytorch_peer.py loss --model DIR --tokens TOKENS.bin --batch B --seq T
      DIR holds config.json and model.safetensors (F32, BF16, F16 or F64 tensors). TOKENS.bin is
      2*B*T little-endian int32: the inputs [B, T] then the targets [B, T] (-1 = ignore).
      Prints one JSON line: loss_total, loss_lm, aux_att, aux_mlp computed in float64, and the
      same four in float32 under "float32".
  python3 bench/pytorch_peer.py write-tokens --out TOKENS.bin --batch B --seq T --vocab V [--seed S]
      random inputs with targets = inputs shifted by one (last position of each row: -1).
  python3 bench/pytorch_peer.py write-configs --out bench/configs
      writes dense-small.json, smoe-small.json, dsmoe-small.json (METHOD section 7).
  python3 bench/pytorch_peer.py selftest
      tensor names/shapes, safetensors round trip (F32 exact, BF16 against torch's rounding), the
      fast stacked/grouped model against a slow head-by-head, expert-by-expert reference, MI and
      switch gradients against RouterLoss.java's closed forms, gradcheck through the routers,
      finite gradients, the `loss` command end to end, and bench/configs against the presets.

Model (Transformer.java): pre-norm RMSNorm (y = x * rsqrt(mean(x^2) + eps) * g), RoPE rotate-half
on q and k (theta^(-2i/D), positions 0..T-1), causal attention scaled by 1/sqrt(D_att), query head
h = e*N_head + j of expert e reads KV head (h % N_head) * N_kv / N_head, expert blocks scaled by
router probabilities S_i (no renormalisation), tanh GELU, tied embeddings by default. DS-MoE and
Dense train densely (stacked projections); SMoE (training_routing top_k) computes only each
token's top-K MLP experts, grouped by expert, gates = the softmax probabilities of the selected
experts. Loss = mean CE + alpha_att * sum_layers aux(attn router) + alpha_mlp * sum_layers
aux(MLP router); MI aux = -H(e) + H(e|x) with eps 1e-8 inside log p_bar; switch aux
= N * sum_i f_i * p_bar_i, f_i = count_i / (tokens * K) (a constant for the gradient).
"""
import argparse
import io
import json
import math
import os
import statistics
import struct
import sys
import tempfile
import time
from contextlib import redirect_stdout

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("pytorch_peer: torch is not installed (apt-get install python3-torch); skipping")
    sys.exit(0)
import numpy as np

# ---------------------------------------------------------------------------------- config

# (key, type, required, default) in ModelConfig's file order.
CONFIG_KEYS = [
    ("model_type", str, True, None),
    ("vocab_size", int, True, None),
    ("hidden_size", int, True, None),
    ("num_hidden_layers", int, True, None),
    ("num_attention_experts", int, True, None),
    ("num_heads_per_expert", int, True, None),
    ("num_key_value_heads", int, True, None),
    ("head_dim", int, True, None),
    ("num_mlp_experts", int, True, None),
    ("expert_intermediate_size", int, True, None),
    ("hidden_act", str, False, "gelu_tanh"),
    ("max_position_embeddings", int, True, None),
    ("rope_theta", float, False, 10000.0),
    ("rms_norm_eps", float, False, 1e-5),
    ("tie_word_embeddings", bool, False, True),
    ("router", str, False, "linear"),
    ("router_hidden_size", int, False, 256),
    ("training_routing", str, False, "dense"),
    ("training_top_k", int, False, 2),
    ("aux_loss", str, False, "mi"),
    ("aux_loss_weight_attention", float, False, 0.0),
    ("aux_loss_weight_mlp", float, False, 0.0),
]
CHOICES = {"hidden_act": ("gelu_tanh", "gelu"), "router": ("linear", "mlp"),
           "training_routing": ("dense", "top_k"), "aux_loss": ("mi", "switch", "none")}
MI_EPS = 1e-8  # RouterLoss.EPS


class ConfigError(ValueError):
    pass


def parse_config(obj):
    """A validated config dict with every key (defaults filled in), as io.ConfigJson.fromJson."""
    if not isinstance(obj, dict):
        raise ConfigError("config must be one JSON object")
    known = [k for k, _, _, _ in CONFIG_KEYS]
    for k in obj:
        if k not in known:
            raise ConfigError(f'unknown config key "{k}"; known keys: {", ".join(known)}')
    c = {}
    for k, typ, required, default in CONFIG_KEYS:
        if k not in obj:
            if required:
                raise ConfigError(f'missing required config key "{k}"')
            c[k] = default
            continue
        v = obj[k]
        if typ is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise ConfigError(f"{k} must be an integer, got {v!r}")
        if typ is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{k} must be a number, got {v!r}")
            v = float(v)
        if typ is bool and not isinstance(v, bool):
            raise ConfigError(f"{k} must be true or false, got {v!r}")
        if typ is str and not isinstance(v, str):
            raise ConfigError(f"{k} must be a string, got {v!r}")
        c[k] = v
    if c["model_type"] != "dsmoe":
        raise ConfigError(f'model_type must be "dsmoe", got "{c["model_type"]}"')
    for k, allowed in CHOICES.items():
        if c[k] not in allowed:
            raise ConfigError(f'{k} must be one of {", ".join(allowed)}, got "{c[k]}"')
    errs = []
    for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_experts",
              "num_heads_per_expert", "num_key_value_heads", "head_dim", "num_mlp_experts",
              "expert_intermediate_size", "max_position_embeddings", "router_hidden_size"):
        if c[k] <= 0:
            errs.append(f"{k} ({c[k]}) must be positive")
    if c["head_dim"] % 2:
        errs.append("head_dim must be even (RoPE rotates pairs)")
    nh, nkv = c["num_heads_per_expert"], c["num_key_value_heads"]
    if nkv > nh:
        errs.append("num_key_value_heads must not exceed num_heads_per_expert")
    elif nkv > 0 and nh % nkv:
        errs.append("num_heads_per_expert must be a multiple of num_key_value_heads")
    if not (math.isfinite(c["rope_theta"]) and c["rope_theta"] > 0):
        errs.append("rope_theta must be a finite number > 0")
    if not (math.isfinite(c["rms_norm_eps"]) and c["rms_norm_eps"] > 0):
        errs.append("rms_norm_eps must be a finite number > 0")
    if c["training_top_k"] < 1:
        errs.append("training_top_k must be >= 1")
    if c["training_routing"] == "top_k":
        if c["num_attention_experts"] != 1:
            errs.append('training_routing "top_k" requires num_attention_experts = 1')
        if c["training_top_k"] > c["num_mlp_experts"]:
            errs.append("training_top_k must be between 1 and num_mlp_experts")
    if c["aux_loss"] == "switch" and c["training_routing"] != "top_k":
        errs.append('aux_loss "switch" requires training_routing "top_k"')
    for k in ("aux_loss_weight_attention", "aux_loss_weight_mlp"):
        if not (math.isfinite(c[k]) and c[k] >= 0):
            errs.append(f"{k} must be a finite number >= 0")
    if errs:
        raise ConfigError("; ".join(errs))
    return c


def load_config(path):
    with open(path) as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: {e}")
    try:
        return parse_config(obj)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}")


def _dense(vocab, d, layers, heads, nkv, datt, width, context):
    return parse_config({
        "model_type": "dsmoe", "vocab_size": vocab, "hidden_size": d, "num_hidden_layers": layers,
        "num_attention_experts": 1, "num_heads_per_expert": heads, "num_key_value_heads": nkv,
        "head_dim": datt, "num_mlp_experts": 1, "expert_intermediate_size": width,
        "hidden_act": "gelu_tanh", "max_position_embeddings": context, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "router": "linear", "router_hidden_size": 256,
        "training_routing": "dense", "training_top_k": 2, "aux_loss": "none",
        "aux_loss_weight_attention": 0.0, "aux_loss_weight_mlp": 0.0})


def _size_matched(ref, family, n_att, n_ffd):
    """ModelPresets.sizeMatched with an MLP width multiplier of 1."""
    c = dict(ref)
    heads = ref["num_attention_experts"] * ref["num_heads_per_expert"]
    width = ref["num_mlp_experts"] * ref["expert_intermediate_size"]
    c.update(num_attention_experts=n_att, num_heads_per_expert=heads // n_att,
             num_mlp_experts=n_ffd, expert_intermediate_size=width // n_ffd, training_top_k=2)
    if family == "smoe":
        c.update(training_routing="top_k", aux_loss="switch",
                 aux_loss_weight_attention=0.0, aux_loss_weight_mlp=0.01)
    elif family == "dsmoe":
        c.update(training_routing="dense", aux_loss="mi",
                 aux_loss_weight_attention=3.5e-4, aux_loss_weight_mlp=6.3e-4)
    return parse_config(c)


def presets():
    """The small presets of ModelConfig.buildPresets (METHOD section 7)."""
    small = _dense(8192, 256, 4, 8, 2, 32, 1024, 256)
    return {"dense-small": small, "smoe-small": _size_matched(small, "smoe", 1, 8),
            "dsmoe-small": _size_matched(small, "dsmoe", 4, 16)}


def config_json(c):
    return json.dumps({k: c[k] for k, _, _, _ in CONFIG_KEYS}, indent=2) + "\n"


def sparse_mlp(c):
    """Transformer.sparseMlp(): top-k training routing of the MLP experts."""
    return c["training_routing"] == "top_k" and c["num_mlp_experts"] > 1


def expected_tensors(c):
    """(name, shape) of every parameter in ParamLayout's file order."""
    d, V = c["hidden_size"], c["vocab_size"]
    na, nh, nkv, da = (c["num_attention_experts"], c["num_heads_per_expert"],
                       c["num_key_value_heads"], c["head_dim"])
    nf, df = c["num_mlp_experts"], c["expert_intermediate_size"]
    out = [("model.embed_tokens.weight", (V, d))]

    def router(p, n):
        if n == 1:
            return []
        if c["router"] == "linear":
            return [(p + ".weight", (n, d))]
        h = c["router_hidden_size"]
        return [(p + ".0.weight", (h, d)), (p + ".2.weight", (n, h))]

    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        out.append((p + "input_layernorm.weight", (d,)))
        out += router(p + "attn.router", na)
        out += [(p + "attn.q_proj.weight", (na, nh * da, d)), (p + "attn.k_proj.weight", (nkv * da, d)),
                (p + "attn.v_proj.weight", (nkv * da, d)), (p + "attn.o_proj.weight", (na, d, nh * da)),
                (p + "post_attention_layernorm.weight", (d,))]
        out += router(p + "mlp.router", nf)
        out += [(p + "mlp.up_proj.weight", (nf, df, d)), (p + "mlp.down_proj.weight", (nf, d, df))]
    out.append(("model.norm.weight", (d,)))
    if not c["tie_word_embeddings"]:
        out.append(("lm_head.weight", (V, d)))
    return out


# ---------------------------------------------------------------------------------- model

def activation(c):
    return nn.GELU(approximate="tanh" if c["hidden_act"] == "gelu_tanh" else "none")


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Stacked(nn.Module):
    """A per-expert weight stack [N, out, in], saved as `<name>.weight`."""

    def __init__(self, *shape):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*shape))


def make_router(c, n):
    if n == 1:
        return None
    d = c["hidden_size"]
    if c["router"] == "linear":
        return nn.Linear(d, n, bias=False)
    h = c["router_hidden_size"]
    return nn.Sequential(nn.Linear(d, h, bias=False), activation(c), nn.Linear(h, n, bias=False))


class Rope:
    """cos/sin tables [maxPos, D/2] computed in double (Rope.java), cast to the compute dtype."""

    def __init__(self, head_dim, max_pos, theta):
        half = head_dim // 2
        i = torch.arange(half, dtype=torch.float64)
        freq = theta ** (-2.0 * i / head_dim)
        ang = torch.arange(max_pos, dtype=torch.float64)[:, None] * freq[None, :]
        self.cos64, self.sin64, self.half, self.cache = torch.cos(ang), torch.sin(ang), half, {}

    def __call__(self, x):  # x [B, T, H, D]
        T = x.shape[1]
        key = (x.dtype, T)
        if key not in self.cache:
            self.cache[key] = (self.cos64[:T].to(x.dtype)[None, :, None, :],
                               self.sin64[:T].to(x.dtype)[None, :, None, :])
        cos, sin = self.cache[key]
        x1, x2 = x[..., :self.half], x[..., self.half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    """MoA: N_att experts of N_head query heads over N_kv shared KV heads, trained densely."""

    def __init__(self, c, rope):
        super().__init__()
        d, na, nh, nkv, da = (c["hidden_size"], c["num_attention_experts"], c["num_heads_per_expert"],
                              c["num_key_value_heads"], c["head_dim"])
        self.router = make_router(c, na)
        self.q_proj = Stacked(na, nh * da, d)
        self.k_proj = nn.Linear(d, nkv * da, bias=False)
        self.v_proj = nn.Linear(d, nkv * da, bias=False)
        self.o_proj = Stacked(na, d, nh * da)
        self.na, self.nh, self.nkv, self.da, self.d = na, nh, nkv, da, d
        self.rope = [rope]  # a list, so it is no submodule
        self.mask = None  # causal mask [T, T], True above the diagonal
        # Attention.moaMapping: query head h (expert h // N_head) reads KV head (h % N_head)*N_kv/N_head
        self.register_buffer("kv_of", torch.tensor([(h % nh) * nkv // nh for h in range(na * nh)]),
                             persistent=False)

    def forward(self, h, S):  # h [B, T, d], S [B, T, N_att] or None
        B, T, d = h.shape
        hq, da = self.na * self.nh, self.da
        rope = self.rope[0]
        q = rope(F.linear(h, self.q_proj.weight.reshape(hq * da, d)).view(B, T, hq, da))
        k = rope(self.k_proj(h).view(B, T, self.nkv, da))
        v = self.v_proj(h).view(B, T, self.nkv, da)
        if self.nkv != hq:
            k, v = k.index_select(2, self.kv_of), v.index_select(2, self.kv_of)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, Hq, T, D]
        att = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(da))
        if self.mask is None or self.mask.shape[0] != T:
            self.mask = torch.ones(T, T, dtype=torch.bool, device=h.device).triu(1)
        att = att.masked_fill(self.mask, float("-inf")).softmax(dim=-1)
        y = torch.matmul(att, v).transpose(1, 2)  # [B, T, Hq, D]
        y = y.reshape(B, T, self.na, self.nh * da)
        if S is not None:
            y = y * S.unsqueeze(-1)
        wo = self.o_proj.weight.permute(1, 0, 2).reshape(d, hq * da)  # [d, N_att*N_head*D]
        return F.linear(y.reshape(B, T, hq * da), wo)


class Mlp(nn.Module):
    """MoE MLP: N_ffd experts; dense (stacked) or sparse top-K grouped by expert."""

    def __init__(self, c):
        super().__init__()
        d, nf, df = c["hidden_size"], c["num_mlp_experts"], c["expert_intermediate_size"]
        self.router = make_router(c, nf)
        self.up_proj = Stacked(nf, df, d)
        self.down_proj = Stacked(nf, d, df)
        self.act = activation(c)
        self.nf, self.df, self.d = nf, df, d
        self.sparse = sparse_mlp(c)
        self.k = c["training_top_k"]

    def forward(self, h, S):
        """Returns (output, counts): counts [N_ffd] of token-slots per expert when sparse, else None."""
        if self.sparse:
            return self.forward_sparse(h, S)
        B, T, d = h.shape
        nf, df = self.nf, self.df
        a = self.act(F.linear(h, self.up_proj.weight.reshape(nf * df, d)))
        if S is not None:
            a = (a.view(B, T, nf, df) * S.unsqueeze(-1)).view(B, T, nf * df)
        wd = self.down_proj.weight.permute(1, 0, 2).reshape(d, nf * df)
        return F.linear(a, wd), None

    def forward_sparse(self, h, S):
        B, T, d = h.shape
        n, k, e = B * T, self.k, self.nf
        x, P = h.reshape(n, d), S.reshape(n, e)
        # Top-K by descending probability, ties to the lower expert index (ExpertGroups.topK).
        chosen = torch.sort(P.detach(), dim=-1, descending=True, stable=True).indices[:, :k]
        gates = P.gather(1, chosen)  # selected probabilities, no renormalisation
        flat = chosen.reshape(-1)  # slot s = t*k + j
        perm = torch.sort(flat, stable=True).indices  # slots grouped by expert, token order within
        counts = torch.bincount(flat, minlength=e)
        tok = torch.div(perm, k, rounding_mode="floor")
        xs = x.index_select(0, tok)
        outs, start = [], 0
        for ex, cnt in enumerate(counts.tolist()):
            if cnt == 0:
                continue
            seg = xs[start:start + cnt]
            outs.append(F.linear(self.act(F.linear(seg, self.up_proj.weight[ex])), self.down_proj.weight[ex]))
            start += cnt
        ys = torch.cat(outs) * gates.reshape(-1).index_select(0, perm).unsqueeze(1)
        out = torch.zeros_like(x).index_add(0, tok, ys)
        return out.view(B, T, d), counts


class Layer(nn.Module):
    def __init__(self, c, rope):
        super().__init__()
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.attn = Attention(c, rope)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = Mlp(c)


class Backbone(nn.Module):
    def __init__(self, c):
        super().__init__()
        rope = Rope(c["head_dim"], c["max_position_embeddings"], c["rope_theta"])
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c, rope) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


def router_probs(router, h):
    logits = router(h)
    return logits.softmax(-1), logits.log_softmax(-1)


def mi_loss(S, logS):
    """RouterLoss.entropies: -H(e) + H(e|x) over all tokens of the micro-batch."""
    e = S.shape[-1]
    S, logS = S.reshape(-1, e), logS.reshape(-1, e)
    pbar = S.mean(0)
    h_marg = -(pbar * torch.log(pbar + MI_EPS)).sum()
    h_cond = -(S * logS).sum(-1).mean()
    return -h_marg + h_cond


def switch_loss(S, counts, k):
    """RouterLoss.switchLoss: N * sum_i f_i * p_bar_i, f_i = counts_i / (tokens * K)."""
    e = S.shape[-1]
    S = S.reshape(-1, e)
    f = counts.to(S.dtype) / (S.shape[0] * k)
    return e * (f * S.mean(0)).sum()


class DsmoeForCausalLM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.config = c
        self.model = Backbone(c)
        self.lm_head = None if c["tie_word_embeddings"] else nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def aux(self, S, logS, counts):
        kind = self.config["aux_loss"]
        if kind == "mi":
            return mi_loss(S, logS)
        if kind == "switch" and counts is not None:
            return switch_loss(S, counts, self.config["training_top_k"])
        return S.new_zeros(())

    def forward(self, tokens, targets):
        """tokens, targets [B, T] int64 (targets -1 = ignored) -> (total, lm, aux_att, aux_mlp)."""
        c = self.config
        x = self.model.embed_tokens(tokens)
        aux_att = x.new_zeros(())
        aux_mlp = x.new_zeros(())
        for layer in self.model.layers:
            h = layer.input_layernorm(x)
            S = None
            if layer.attn.router is not None:
                S, logS = router_probs(layer.attn.router, h)
                aux_att = aux_att + self.aux(S, logS, None)
            x = x + layer.attn(h, S)
            h = layer.post_attention_layernorm(x)
            S = None
            if layer.mlp.router is not None:
                S, logS = router_probs(layer.mlp.router, h)
            out, counts = layer.mlp(h, S)
            if S is not None:
                aux_mlp = aux_mlp + self.aux(S, logS, counts)
            x = x + out
        h = self.model.norm(x)
        w_out = self.model.embed_tokens.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(h, w_out)
        lm = lm_loss(logits, targets)
        total = lm + c["aux_loss_weight_attention"] * aux_att + c["aux_loss_weight_mlp"] * aux_mlp
        return total, lm, aux_att, aux_mlp


def lm_loss(logits, targets):
    """Mean CE over the targets that are not -1 (0 when there are none), as CrossEntropy.java."""
    t = targets.reshape(-1)
    if not bool((t != -1).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t, ignore_index=-1)


def init_params(model, seed):
    """normal(0, 0.02); o_proj/down_proj normal(0, 0.02/sqrt(2L)); norm gains 1 (Init.java)."""
    g = torch.Generator().manual_seed(seed)
    L = model.config["num_hidden_layers"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.fill_(1.0)
                continue
            std = 0.02
            if name.endswith(".attn.o_proj.weight") or name.endswith(".mlp.down_proj.weight"):
                std = 0.02 / math.sqrt(2.0 * L)
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype) * std)


def build_model(c, seed=None):
    m = DsmoeForCausalLM(c)
    if seed is not None:
        init_params(m, seed)
    return m


def is_norm(name):
    return name.endswith("layernorm.weight") or name == "model.norm.weight"


# ---------------------------------------------------------------------------------- safetensors

_NP_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<u2"}
_ITEMSIZE = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2}


def f32_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16); NaN stays NaN."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(a, dtype=np.float32))
    rounded = np.where(nan, (u >> 16) | 0x40, rounded)
    return (rounded & 0xFFFF).astype("<u2")


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype="<u2").astype("<u4") << 16).view("<f4")


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """tensors: list of (name, float ndarray). Written to path + '.tmp', then renamed."""
    header, blobs, off = {}, [], 0
    for name, arr in tensors:
        arr = np.asarray(arr)
        if dtype == "BF16":
            b = f32_to_bf16_bits(arr.astype(np.float32)).tobytes()
        else:
            b = np.ascontiguousarray(arr, dtype=_NP_DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """{name: float32/float64 ndarray} from a safetensors file (F32, F64, F16, BF16)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors file ({len(data)} bytes)")
    n = struct.unpack("<Q", data[:8])[0]
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file size {len(data)}")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: header is not valid JSON: {e}")
    base, size, out = 8 + n, len(data) - 8 - n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _NP_DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {dt}; supported: F32, BF16, F16, F64")
        numel = int(np.prod(shape)) if shape else 1
        if not (0 <= b <= e <= size) or e - b != numel * _ITEMSIZE[dt]:
            raise ValueError(f"{path}: tensor {name} offsets [{b}, {e}) do not fit its shape {shape} "
                             f"and dtype {dt} in a data section of {size} bytes")
        raw = np.frombuffer(data, dtype=_NP_DTYPES[dt], count=numel, offset=base + b)
        arr = bf16_bits_to_f32(raw) if dt == "BF16" else raw.astype(np.float64 if dt == "F64" else np.float32)
        out[name] = arr.reshape(shape)
    return out


def save_checkpoint(model, directory, dtype="F32"):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        f.write(config_json(model.config))
    sd = model.state_dict()
    tensors = [(name, sd[name].detach().cpu().numpy()) for name, _ in expected_tensors(model.config)]
    write_safetensors(os.path.join(directory, "model.safetensors"), tensors, dtype, {"format": "pt"})


def load_checkpoint(directory):
    c = load_config(os.path.join(directory, "config.json"))
    path = os.path.join(directory, "model.safetensors")
    tensors = read_safetensors(path)
    model = build_model(c)
    if any(a.dtype == np.float64 for a in tensors.values()):
        model.double()  # keep F64 checkpoints exact
    expected = dict(expected_tensors(c))
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise ValueError(f"{path}: tensors do not match config.json: missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}"
                         f"{' ...' if len(extra) > 5 else ''}")
    sd = {}
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != tuple(shape):
            raise ValueError(f"{path}: tensor {k} has shape {list(tensors[k].shape)}, config.json says {list(shape)}")
        sd[k] = torch.from_numpy(np.array(tensors[k], dtype=np.float32 if tensors[k].dtype != np.float64 else np.float64))
    model.load_state_dict(sd, strict=True)
    return model, c


# ---------------------------------------------------------------------------------- tokens

def read_tokens(path, batch, seq):
    raw = np.fromfile(path, dtype="<i4")
    if seq is None:
        if raw.size % (2 * batch):
            raise ValueError(f"{path}: {raw.size} int32 values do not split into inputs and targets of {batch} rows")
        seq = raw.size // (2 * batch)
    if raw.size != 2 * batch * seq:
        raise ValueError(f"{path}: has {raw.size} int32 values, --batch {batch} --seq {seq} needs {2 * batch * seq}")
    a = torch.from_numpy(raw.astype(np.int64))
    return a[:batch * seq].view(batch, seq), a[batch * seq:].view(batch, seq)


def write_tokens(path, inputs, targets):
    np.concatenate([np.asarray(inputs, dtype="<i4").ravel(), np.asarray(targets, dtype="<i4").ravel()]).tofile(path)


def random_tokens(batch, seq, vocab, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (batch, seq + 1), generator=g)
    inputs, targets = x[:, :-1].clone(), x[:, 1:].clone()
    targets[:, -1] = -1
    return inputs, targets


def check_tokens(c, inputs, targets):
    V = c["vocab_size"]
    if inputs.shape[1] > c["max_position_embeddings"]:
        raise ValueError(f"sequence length {inputs.shape[1]} exceeds max_position_embeddings {c['max_position_embeddings']}")
    if bool(((inputs < 0) | (inputs >= V)).any()):
        raise ValueError(f"an input token id is outside [0, {V})")
    if bool((((targets < 0) & (targets != -1)) | (targets >= V)).any()):
        raise ValueError(f"a target id is outside [0, {V}) and not -1")


def losses(model, inputs, targets, dtype):
    model = model.to(dtype)
    with torch.no_grad():
        total, lm, aa, am = model(inputs, targets)
    return {"loss_total": total.item(), "loss_lm": lm.item(), "aux_att": aa.item(), "aux_mlp": am.item()}


# ---------------------------------------------------------------------------------- commands

BLAS_CANDIDATES = [
    # the OpenBLAS that dsmoe4j itself loads (org.bytedeco:openblas, unpacked by JavaCPP)
    "~/.javacpp/cache/openblas-*-linux-x86_64.jar/org/bytedeco/openblas/linux-x86_64/libopenblas_nolapack.so.0",
    "~/.javacpp/cache/openblas-*-linux-x86_64.jar/org/bytedeco/openblas/linux-x86_64/libopenblas.so.0",
    # Debian's libopenblas0-pthread
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
]
_BLAS_ENV = "PYTORCH_PEER_BLAS"


def find_blas():
    import glob
    for pat in BLAS_CANDIDATES:
        hits = sorted(glob.glob(os.path.expanduser(pat)))
        if hits:
            return hits[-1]
    return None


def maybe_reexec_with_blas(args):
    """Debian's torch calls the generic libblas.so.3, which is the netlib reference BLAS unless an
    optimised one is installed (about 5 GFLOP/s on 2 cores instead of 60-400). With --blas auto
    (default) or --blas PATH, re-executes this script with LD_PRELOAD of an OpenBLAS so that torch's
    sgemm_ calls go to it; --blas system keeps whatever libblas.so.3 is."""
    if args.blas == "system" or os.environ.get(_BLAS_ENV):
        return
    lib = find_blas() if args.blas == "auto" else args.blas
    if lib is None:
        return
    if not os.path.exists(lib):
        raise ValueError(f"--blas {lib}: no such file")
    env = dict(os.environ)
    env[_BLAS_ENV] = lib
    env["LD_PRELOAD"] = lib + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)


def blas_in_use():
    lib = os.environ.get(_BLAS_ENV)
    if lib:
        try:
            with open("/proc/self/maps") as f:
                if os.path.realpath(lib) in f.read():
                    return lib
        except OSError:
            pass
        return lib + " (requested; not seen in /proc/self/maps)"
    return "system libblas.so.3"


def gemm_gflops(m=2048, k=256, n=1024, repeats=5):
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(2):
        a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2.0 * m * n * k / statistics.median(ts) / 1e9


def cmd_speed(args):
    maybe_reexec_with_blas(args)
    torch.set_num_threads(args.threads)
    c = load_config(args.config)
    if args.seq > c["max_position_embeddings"]:
        raise ValueError(f"--seq {args.seq} exceeds max_position_embeddings {c['max_position_embeddings']}")
    torch.manual_seed(args.seed)
    model = build_model(c, seed=args.seed)
    decay = [p for n, p in model.named_parameters() if not is_norm(n)]
    no_decay = [p for n, p in model.named_parameters() if is_norm(n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.999), eps=1e-8)
    times, loss = [], None
    for step in range(args.warmup + args.steps):
        inputs, targets = random_tokens(args.batch, args.seq, c["vocab_size"], args.seed + 1 + step)
        t0 = time.perf_counter()
        total, lm, aa, am = model(inputs, targets)
        total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        loss = total.item()
        if step >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    name = os.path.splitext(os.path.basename(args.config))[0]
    gf = gemm_gflops()
    print(json.dumps({"tokens_per_s": round(args.batch * args.seq / med, 1), "step_ms_median": round(med * 1e3, 2),
                      "step_ms_min": round(min(times) * 1e3, 2), "threads": args.threads, "torch": torch.__version__,
                      "config": name, "batch": args.batch, "seq": args.seq, "steps": args.steps, "warmup": args.warmup,
                      "params": sum(p.numel() for p in model.parameters()), "last_loss": round(loss, 4),
                      "blas": blas_in_use(), "sgemm_2048x256x1024_gflops": round(gf, 1)}))
    return 0


def cmd_loss(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    model, c = load_checkpoint(args.model)
    inputs, targets = read_tokens(args.tokens, args.batch, args.seq)
    check_tokens(c, inputs, targets)
    r64 = losses(model, inputs, targets, torch.float64)
    # float32 from the stored weights (float64 of float32 values casts back exactly)
    r32 = losses(model, inputs, targets, torch.float32)
    out = dict(r64)
    out["float32"] = r32
    out["batch"], out["seq"] = inputs.shape[0], inputs.shape[1]
    out["torch"] = torch.__version__
    print(json.dumps(out))
    return 0


def cmd_write_tokens(args):
    inputs, targets = random_tokens(args.batch, args.seq, args.vocab, args.seed)
    write_tokens(args.out, inputs, targets)
    return 0


def cmd_write_configs(args):
    os.makedirs(args.out, exist_ok=True)
    for name, c in presets().items():
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            f.write(config_json(c))
    return 0


# ---------------------------------------------------------------------------------- self-test

def tiny_configs():
    base = {"model_type": "dsmoe", "vocab_size": 61, "hidden_size": 24, "num_hidden_layers": 2,
            "max_position_embeddings": 16, "head_dim": 6, "rope_theta": 10000.0, "rms_norm_eps": 1e-5}
    cs = {
        "dense": dict(base, num_attention_experts=1, num_heads_per_expert=4, num_key_value_heads=2,
                      num_mlp_experts=1, expert_intermediate_size=40, aux_loss="none"),
        "smoe": dict(base, num_attention_experts=1, num_heads_per_expert=4, num_key_value_heads=2,
                     num_mlp_experts=4, expert_intermediate_size=10, training_routing="top_k", training_top_k=2,
                     aux_loss="switch", aux_loss_weight_mlp=0.5),
        "smoe-mi-k1": dict(base, num_attention_experts=1, num_heads_per_expert=2, num_key_value_heads=2,
                           num_mlp_experts=3, expert_intermediate_size=8, training_routing="top_k",
                           training_top_k=1, aux_loss="mi", aux_loss_weight_mlp=0.3),
        "dsmoe": dict(base, num_attention_experts=3, num_heads_per_expert=2, num_key_value_heads=2,
                      num_mlp_experts=4, expert_intermediate_size=10, aux_loss="mi",
                      aux_loss_weight_attention=0.2, aux_loss_weight_mlp=0.3),
        "dsmoe-mlprouter-untied-erf": dict(base, num_attention_experts=2, num_heads_per_expert=4,
                                           num_key_value_heads=1, num_mlp_experts=3, expert_intermediate_size=8,
                                           router="mlp", tie_word_embeddings=False, hidden_act="gelu",
                                           aux_loss="mi", aux_loss_weight_attention=0.1, aux_loss_weight_mlp=0.1),
    }
    return {k: parse_config(v) for k, v in cs.items()}


def reference_forward(c, P, inputs, targets):
    """Slow reference in float64 from the tensors by name: head by head, expert by expert, all
    MLP experts computed and masked to the top-K for SMoE (METHOD 2.3, 2.4, 3)."""
    B, T = inputs.shape
    d, na, nh, nkv, da = (c["hidden_size"], c["num_attention_experts"], c["num_heads_per_expert"],
                          c["num_key_value_heads"], c["head_dim"])
    nf, eps, half = c["num_mlp_experts"], c["rms_norm_eps"], da // 2
    act = (lambda u: 0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3)))) \
        if c["hidden_act"] == "gelu_tanh" else (lambda u: 0.5 * u * (1 + torch.erf(u / math.sqrt(2))))
    ang = np.array([[p * c["rope_theta"] ** (-2.0 * i / da) for i in range(half)] for p in range(T)])
    cs, sn = torch.tensor(np.cos(ang)), torch.tensor(np.sin(ang))

    def rope(x):  # [B, T, D]
        out = torch.empty_like(x)
        out[..., :half] = x[..., :half] * cs - x[..., half:] * sn
        out[..., half:] = x[..., half:] * cs + x[..., :half] * sn
        return out

    def rms(x, g):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * g

    def router(prefix, h, n):
        if n == 1:
            return None
        if c["router"] == "linear":
            z = h @ P[prefix + ".weight"].T
        else:
            z = act(h @ P[prefix + ".0.weight"].T) @ P[prefix + ".2.weight"].T
        z = z - z.max(-1, keepdim=True).values
        return torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)

    def aux(S, counts):
        if c["aux_loss"] == "mi":
            S2 = S.reshape(-1, S.shape[-1])
            pbar = S2.mean(0)
            return (pbar * torch.log(pbar + 1e-8)).sum() - (S2 * torch.log(S2)).sum(-1).mean()
        if c["aux_loss"] == "switch" and counts is not None:
            S2 = S.reshape(-1, S.shape[-1])
            return S.shape[-1] * sum(counts[i] / (S2.shape[0] * c["training_top_k"]) * S2[:, i].mean()
                                     for i in range(S.shape[-1]))
        return torch.zeros((), dtype=torch.float64)

    x = P["model.embed_tokens.weight"][inputs]
    aux_att = aux_mlp = torch.zeros((), dtype=torch.float64)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, P[p + "input_layernorm.weight"])
        S = router(p + "attn.router", h, na)
        if S is not None:
            aux_att = aux_att + aux(S, None)
        Wq, Wk, Wv, Wo = (P[p + "attn.q_proj.weight"], P[p + "attn.k_proj.weight"], P[p + "attn.v_proj.weight"],
                          P[p + "attn.o_proj.weight"])
        att_out = torch.zeros_like(x)
        for e in range(na):
            oe = torch.zeros_like(x)
            for j in range(nh):
                g = (j * nkv) // nh  # METHOD 2.3: floor(j * N_kv / N_head)
                q = rope(h @ Wq[e, j * da:(j + 1) * da].T)
                k = rope(h @ Wk[g * da:(g + 1) * da].T)
                v = h @ Wv[g * da:(g + 1) * da].T
                s = (q @ k.transpose(1, 2)) / math.sqrt(da)
                s = s.masked_fill(~causal, float("-inf"))
                a = torch.exp(s - s.max(-1, keepdim=True).values)
                a = a / a.sum(-1, keepdim=True)
                oe = oe + (a @ v) @ Wo[e][:, j * da:(j + 1) * da].T
            att_out = att_out + (oe if S is None else S[..., e:e + 1] * oe)
        x = x + att_out
        h = rms(x, P[p + "post_attention_layernorm.weight"])
        S = router(p + "mlp.router", h, nf)
        W1, W2 = P[p + "mlp.up_proj.weight"], P[p + "mlp.down_proj.weight"]
        counts = None
        if S is not None and sparse_mlp(c):
            top = torch.topk(S, c["training_top_k"], dim=-1).indices
            mask = torch.zeros_like(S).scatter(-1, top, 1.0)
            counts = [float(mask[..., i].sum()) for i in range(nf)]
            w = S * mask
        else:
            w = S
        mlp_out = torch.zeros_like(x)
        for e in range(nf):
            ye = act(h @ W1[e].T) @ W2[e].T
            mlp_out = mlp_out + (ye if w is None else w[..., e:e + 1] * ye)
        if S is not None:
            aux_mlp = aux_mlp + aux(S, counts)
        x = x + mlp_out
    h = rms(x, P["model.norm.weight"])
    logits = h @ (P["model.embed_tokens.weight"] if c["tie_word_embeddings"] else P["lm_head.weight"]).T
    logp = logits - torch.logsumexp(logits, -1, keepdim=True)
    keep = targets != -1
    lm = -(logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * keep).sum() / keep.sum()
    total = lm + c["aux_loss_weight_attention"] * aux_att + c["aux_loss_weight_mlp"] * aux_mlp
    return total, lm, aux_att, aux_mlp


class Checks:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}")


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def cmd_selftest(args):
    torch.set_num_threads(args.threads)
    ck = Checks()
    B, T = 3, 12
    for name, c in tiny_configs().items():
        model = build_model(c, seed=7)
        # Make the norm gains non-trivial so that their use is tested too.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if is_norm(n):
                    p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
                elif ".router" in n:
                    p.mul_(30.0)  # peaked routers: top-k choices far from ties
        sd = model.state_dict()
        exp = expected_tensors(c)
        ck.check([k for k in sd] == [k for k, _ in exp], f"{name}: state_dict names = ParamLayout order")
        ck.check(all(tuple(sd[k].shape) == tuple(s) for k, s in exp), f"{name}: shapes")
        inputs, targets = random_tokens(B, T, c["vocab_size"], 11)
        targets[1, 3] = -1
        model64 = build_model(c)
        model64.load_state_dict(sd)
        model64.double()
        r64 = losses(model64, inputs, targets, torch.float64)
        # slow reference
        P = {k: v.double() for k, v in sd.items()}
        ref = [t.item() for t in reference_forward(c, P, inputs, targets)]
        got = [r64["loss_total"], r64["loss_lm"], r64["aux_att"], r64["aux_mlp"]]
        ck.check(all(abs(a - b) <= 1e-10 * max(1.0, abs(b)) for a, b in zip(got, ref)),
                 f"{name}: fast model {got} vs reference {ref}")
        if c["aux_loss_weight_attention"] and c["num_attention_experts"] > 1:
            ck.check(r64["aux_att"] != 0.0, f"{name}: attention aux loss is used")
        if c["num_mlp_experts"] > 1 and c["aux_loss"] != "none":
            ck.check(r64["aux_mlp"] != 0.0, f"{name}: MLP aux loss is used")
        with tempfile.TemporaryDirectory() as tmp:
            # F32 round trip: bitwise the same loss.
            d32 = os.path.join(tmp, "f32")
            save_checkpoint(model, d32, "F32")
            loaded, c2 = load_checkpoint(d32)
            ck.check(c2 == c, f"{name}: config.json round trip")
            ck.check(all(torch.equal(loaded.state_dict()[k], sd[k]) for k in sd), f"{name}: F32 tensors round trip")
            l64 = losses(loaded, inputs, targets, torch.float64)
            ck.check(l64 == r64, f"{name}: float64 loss after F32 round trip {l64} vs {r64}")
            m32 = build_model(c)
            m32.load_state_dict(sd)
            ck.check(losses(loaded, inputs, targets, torch.float32) == losses(m32, inputs, targets, torch.float32),
                     f"{name}: float32 loss after F32 round trip")
            l32 = losses(m32, inputs, targets, torch.float32)
            ck.check(rel(l32["loss_total"], r64["loss_total"]) < 1e-5, f"{name}: float32 vs float64 loss {l32} {r64}")
            # BF16: our rounding equals torch's.
            dbf = os.path.join(tmp, "bf16")
            save_checkpoint(model, dbf, "BF16")
            lb, _ = load_checkpoint(dbf)
            ck.check(all(torch.equal(lb.state_dict()[k], sd[k].to(torch.bfloat16).to(torch.float32)) for k in sd),
                     f"{name}: BF16 write/read equals torch's bfloat16 rounding")
            # `loss` command end to end.
            tok = os.path.join(tmp, "tokens.bin")
            write_tokens(tok, inputs, targets)
            buf = io.StringIO()
            with redirect_stdout(buf):
                main(["loss", "--model", d32, "--tokens", tok, "--batch", str(B), "--seq", str(T)])
            out = json.loads(buf.getvalue())
            ck.check(all(out[k] == r64[k] for k in r64), f"{name}: loss command prints the float64 losses")
            ck.check(out["float32"] == l32, f"{name}: loss command prints the float32 losses")
            buf = io.StringIO()
            with redirect_stdout(buf):
                main(["loss", "--model", d32, "--tokens", tok, "--batch", str(B)])
            ck.check(json.loads(buf.getvalue())["seq"] == T, f"{name}: --seq inferred from the file size")
        # Gradients (float64): finite everywhere, routers receive gradient.
        model64.zero_grad()
        total = model64(inputs, targets)[0]
        total.backward()
        ck.check(all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model64.parameters()),
                 f"{name}: all gradients exist and are finite")
        for n, p in model64.named_parameters():
            if ".router" in n:
                ck.check(float(p.grad.abs().max()) > 0, f"{name}: router {n} gets gradient")
        if c["training_routing"] == "dense" and c["num_attention_experts"] > 1:
            # gradcheck of the whole loss through layer 0's routers (dense routing is smooth;
            # an MLP router's 256-wide hidden matrix is left out to keep this fast)
            names = [n for n, q in model64.named_parameters()
                     if n.startswith("model.layers.0.") and ".router" in n and ".router.0." not in n]
            params = dict(model64.named_parameters())
            leaves = [params[n].detach().clone().requires_grad_(True) for n in names]

            def f(*ws, x, y):
                from torch.nn.utils import stateless
                return stateless.functional_call(model64, dict(zip(names, ws)), (x, y))[0]

            gi, gt = inputs[:1, :6], targets[:1, :6]  # a short micro-batch keeps this fast

            ok = torch.autograd.gradcheck(lambda *ws: f(*ws, x=gi, y=gt), leaves, eps=1e-6, atol=1e-7, rtol=1e-5,
                                          raise_exception=False)
            ck.check(ok, f"{name}: gradcheck through the routers")
    # MI and switch gradients against RouterLoss.java's closed forms.
    g = torch.Generator().manual_seed(5)
    n, e = 37, 5
    logits = torch.randn(n, e, generator=g, dtype=torch.float64) * 3
    S = logits.softmax(-1).detach().requires_grad_(True)
    logS = torch.log(S)
    mi = mi_loss(S, logS)
    mi.backward()
    pbar = S.detach().mean(0)
    closed = (torch.log(pbar + MI_EPS) + pbar / (pbar + MI_EPS) - 1.0)[None, :] - torch.log(S.detach())
    ck.check(torch.allclose(S.grad, closed / n, rtol=1e-12, atol=1e-15), "MI dL/dS = RouterLoss.miBackward")
    Sl = logits.detach().requires_grad_(True)
    P = Sl.softmax(-1)
    mi2 = mi_loss(P, Sl.log_softmax(-1))
    h_m = -(pbar * torch.log(pbar + MI_EPS)).sum()
    h_c = -(S.detach() * torch.log(S.detach())).sum(-1).mean()
    ck.check(abs(mi2.item() - (-h_m + h_c).item()) < 1e-12, "MI = -H(e) + H(e|x)")
    ck.check(torch.autograd.gradcheck(lambda z: mi_loss(z.softmax(-1), z.log_softmax(-1)), (Sl,),
                                      raise_exception=False), "gradcheck of the MI loss")
    counts = torch.tensor([10, 0, 30, 20, 14])
    S2 = logits.softmax(-1).detach().requires_grad_(True)
    sw = switch_loss(S2, counts, 2)
    sw.backward()
    closed = (e * counts.double() / (n * 2) / n)[None, :].expand(n, e)
    ck.check(torch.allclose(S2.grad, closed, rtol=1e-12, atol=0), "switch dL/dS = RouterLoss.switchBackward")
    # bf16 conversion corner cases against torch.
    vals = np.array([0.0, -0.0, 1.0, 1.00390625, 1.0078125 + 2 ** -9, 3.4e38, -3.4e38, 1e-40, np.inf, -np.inf,
                     1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], dtype=np.float32)
    ck.check(np.array_equal(f32_to_bf16_bits(vals).view(np.int16),
                            torch.from_numpy(vals).to(torch.bfloat16).view(torch.int16).numpy()),
             "bf16 rounding corner cases equal torch's")
    ck.check(np.isnan(bf16_bits_to_f32(f32_to_bf16_bits(np.array([np.nan], dtype=np.float32)))).all(), "bf16 NaN")
    # Presets and bench/configs: non-embedding parameters equal within the routers (METHOD 7).
    dense_nonemb = None
    cfg_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
    for pname, pc in presets().items():
        path = os.path.join(cfg_dir, pname + ".json")
        if os.path.exists(path):
            ck.check(load_config(path) == pc, f"{path} equals the {pname} preset")
        m = build_model(pc)
        nonemb = sum(p.numel() for k, p in m.named_parameters() if k != "model.embed_tokens.weight")
        dense_nonemb = dense_nonemb or nonemb
        routers = sum(p.numel() for k, p in m.named_parameters() if ".router" in k)
        ck.check(nonemb - routers == dense_nonemb, f"{pname}: {nonemb} non-embedding params ({routers} in routers), "
                 f"dense-small has {dense_nonemb}")
    # Config errors.
    for bad, what in [({"vocab_size": 1}, "missing keys"), (dict(tiny_configs()["dense"], foo=1), "unknown key"),
                      (dict(tiny_configs()["dense"], aux_loss="switch"), "switch with dense routing")]:
        try:
            parse_config(bad)
            ck.check(False, f"config error not detected: {what}")
        except ConfigError:
            ck.check(True, what)
    print(json.dumps({"selftest": "ok" if ck.failed == 0 else "FAILED", "passed": ck.passed, "failed": ck.failed,
                      "torch": torch.__version__}))
    return 0 if ck.failed == 0 else 1


# ---------------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(prog="pytorch_peer.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed", help="median training-step time on random tokens")
    s.add_argument("--config", required=True)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--seq", type=int, default=256)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--blas", default="auto", help="auto (preload an OpenBLAS if one is found, e.g. the one "
                   "dsmoe4j uses), system (the libblas.so.3 torch links), or a path to preload")
    s.set_defaults(fn=cmd_speed)
    s = sub.add_parser("loss", help="losses of a dsmoe4j checkpoint on given tokens, float64 and float32")
    s.add_argument("--model", required=True, help="directory with config.json and model.safetensors")
    s.add_argument("--tokens", required=True, help="2*B*T little-endian int32: inputs [B,T] then targets [B,T]")
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--seq", type=int, default=None, help="default: from the file size")
    s.add_argument("--threads", type=int, default=0)
    s.set_defaults(fn=cmd_loss)
    s = sub.add_parser("write-tokens", help="random token file for `loss` (targets = inputs shifted, last -1)")
    s.add_argument("--out", required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--seq", type=int, required=True)
    s.add_argument("--vocab", type=int, required=True)
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(fn=cmd_write_tokens)
    s = sub.add_parser("write-configs", help="write the small presets' config.json files")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_write_configs)
    s = sub.add_parser("selftest", help="check this script (a few seconds)")
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(fn=cmd_selftest)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except (ConfigError, ValueError, OSError) as e:
        print(f"pytorch_peer: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

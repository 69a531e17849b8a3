"""Attention layers: MultiheadAttention (PyTorch's packed in_proj_weight), Transformer encoder
layers, sinusoidal positional encoding."""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np

from ...ir.errors import GraphBuildError, user_frame
from ...ir.types import canonical_dtype
from .. import dsl
from ..dsl import Tensor
from . import functional as F
from . import init
from .containers import ModuleList
from .layers import Dropout, Linear
from .module import Module, Parameter
from .norm import LayerNorm


def _mask_tensor(mask: Any, like: Tensor) -> Tensor:
    return mask if isinstance(mask, Tensor) else dsl.constant(np.asarray(mask), graph=like.graph)


def _apply_mask(scores: Tensor, mask: Any) -> Tensor:
    """PyTorch's MultiheadAttention convention: bool True = may NOT attend; float = added."""
    m = _mask_tensor(mask, scores)
    if m.dtype == "bool":
        return dsl.where(m, -math.inf, scores)
    return scores + dsl.cast(m, scores.dtype)


class MultiheadAttention(Module):
    """Multi-head attention: softmax(Q K^T / sqrt(d_head) + mask) V, heads concatenated, then
    out_proj.

    Parameters as in PyTorch: ``in_proj_weight`` (3E, E) packing W_q, W_k, W_v; ``in_proj_bias``
    (3E); ``out_proj.weight`` (E, E), ``out_proj.bias`` (E).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, kdim: int | None = None, vdim: int | None = None,
                 dtype: str = "float32"):
        super().__init__()
        if embed_dim % num_heads:
            raise GraphBuildError(f"{user_frame()}: MultiheadAttention: embed_dim {embed_dim} is not "
                                  f"divisible by num_heads {num_heads}")
        if (kdim or embed_dim) != embed_dim or (vdim or embed_dim) != embed_dim:
            raise GraphBuildError(f"{user_frame()}: MultiheadAttention: kdim/vdim other than "
                                  "embed_dim are not supported")
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.head_dim = embed_dim // num_heads
        self.dropout, self.batch_first = float(dropout), batch_first
        dt = canonical_dtype(dtype)
        self.in_proj_weight = Parameter(np.zeros((3 * embed_dim, embed_dim), dt))
        self.register_parameter("in_proj_bias",
                                Parameter(np.zeros(3 * embed_dim, dt)) if bias else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.zeros_(self.out_proj.bias)

    def _heads(self, x: Tensor) -> Tensor:
        """(N, L, E) -> (N, heads, L, head_dim)."""
        n, length = x.shape[0], x.shape[1]
        return dsl.transpose(dsl.reshape(x, (n, length, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        """Returns (output, weights): output shaped like query; weights (N, L, S) averaged over
        heads (or (N, heads, L, S)), None when need_weights is False.

        Args:
            query: (N, L, E) if batch_first else (L, N, E).
            key: shaped like query; defaults to query.
            value: shaped like key; defaults to key.
            key_padding_mask: (N, S); bool True marks keys to ignore, or float added.
            attn_mask: (L, S) or (N * heads, L, S); bool True = may not attend, or float added.
            is_causal: apply a causal mask when attn_mask is None.
        """
        e = self.embed_dim
        exp = ("(N, L, {})" if self.batch_first else "(L, N, {})").format(e)
        key = query if key is None else key
        value = key if value is None else value
        is_self = key is query and value is query
        q_in = self.check_input(query, (3,), {2: e}, exp)
        k_in = q_in if key is query else self.check_input(key, (3,), {2: e}, exp)
        v_in = k_in if value is key else self.check_input(value, (3,), {2: e}, exp)
        if not self.batch_first:
            q_t = dsl.swapaxes(q_in, 0, 1)
            k_t = q_t if k_in is q_in else dsl.swapaxes(k_in, 0, 1)
            v_in = k_t if v_in is k_in else (q_t if v_in is q_in else dsl.swapaxes(v_in, 0, 1))
            q_in, k_in = q_t, k_t
        w, b = self.in_proj_weight, self.in_proj_bias
        if is_self:  # one projection matmul for q, k and v
            qkv = F.linear(q_in, w, b)
            q, k, v = qkv[..., 0:e], qkv[..., e:2 * e], qkv[..., 2 * e:]
        else:
            wt = dsl._tensor(w)
            bt = dsl._tensor(b) if b is not None else None
            q, k, v = (F.linear(t, wt[i * e:(i + 1) * e],
                                None if bt is None else bt[i * e:(i + 1) * e])
                       for i, t in enumerate((q_in, k_in, v_in)))
        qh, kh, vh = self._heads(q), self._heads(k), self._heads(v)
        scores = dsl.matmul(qh * (1.0 / math.sqrt(self.head_dim)), dsl.swapaxes(kh, -1, -2))
        n, length, s = scores.shape[0], scores.shape[2], scores.shape[3]
        if attn_mask is not None:
            m = _mask_tensor(attn_mask, scores)
            if m.ndim == 3:
                m = dsl.reshape(m, (n, self.num_heads, length, s))
            scores = _apply_mask(scores, m)
        elif is_causal:
            causal = np.triu(np.ones((length, s), bool), 1)
            scores = _apply_mask(scores, causal)
        if key_padding_mask is not None:
            kpm = _mask_tensor(key_padding_mask, scores)
            scores = _apply_mask(scores, dsl.reshape(kpm, (n, 1, 1, s)))
        attn = F.softmax(scores, -1)
        if self.dropout and self.training:
            attn = F.dropout(attn, self.dropout)
        out = dsl.matmul(attn, vh)  # (N, h, L, hd)
        out = dsl.reshape(dsl.transpose(out, (0, 2, 1, 3)), (n, length, e))
        out = self.out_proj(out)
        if not self.batch_first:
            out = dsl.swapaxes(out, 0, 1)
        if not need_weights:
            return out, None
        return out, (dsl.mean(attn, 1) if average_attn_weights else attn)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"


MultiHeadAttention = MultiheadAttention  # the spelling used in graphc's design notes


def _activation(name: str | Callable) -> Callable:
    if callable(name):
        return name
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    raise GraphBuildError(f"{user_frame()}: activation must be 'relu', 'gelu' or a callable, got "
                          f"{name!r}")


class TransformerEncoderLayer(Module):
    """Self-attention then a feed-forward block, each with dropout, a residual and LayerNorm
    (post-norm, or pre-norm with norm_first=True), as torch.nn.TransformerEncoderLayer."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str | Callable = "relu",
                 layer_norm_eps: float = 1e-5, batch_first: bool = False, norm_first: bool = False,
                 bias: bool = True, dtype: str = "float32"):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias, dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias, dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(activation)

    def _sa(self, x, mask, kpm, is_causal):
        y = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=kpm, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(y)

    def _ff(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff(x))


class TransformerEncoder(Module):
    """A stack of copies of `encoder_layer` (children layers.0, layers.1, ...), optional norm."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int,
                 norm: Module | None = None, **_: Any):
        super().__init__()
        self.layers = ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: bool = False):
        x = src
        for layer in self.layers:
            x = layer(x, mask, src_key_padding_mask, is_causal)
        return self.norm(x) if self.norm is not None else x


def sinusoidal_positions(length: int, d_model: int, dtype: str = "float32") -> np.ndarray:
    """(length, d_model): sin at even, cos at odd features, wavelengths up to 10000 * 2 pi."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    div = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    pe = np.zeros((length, d_model))
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div)[:, : d_model // 2]
    return pe.astype(canonical_dtype(dtype))


class PositionalEncoding(Module):
    """x + sinusoidal position codes (then dropout); no parameters, nothing in the state dict."""

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0,
                 batch_first: bool = True):
        super().__init__()
        self.d_model, self.max_len, self.batch_first = d_model, max_len, batch_first
        self.drop = Dropout(dropout)

    def forward(self, x):
        exp = "(N, L, {})" if self.batch_first else "(L, N, {})"
        x = self.check_input(x, (3,), {2: self.d_model}, exp.format(self.d_model))
        length = x.shape[1] if self.batch_first else x.shape[0]
        if not isinstance(length, int) or length > self.max_len:
            raise GraphBuildError(f"{user_frame()}: {self.layer_name()}: sequence length {length} "
                                  f"must be static and at most max_len={self.max_len}")
        pe = sinusoidal_positions(length, self.d_model, x.dtype)
        pe = pe[:, None, :] if not self.batch_first else pe[None]
        return self.drop(x + dsl.constant(pe, graph=x.graph))

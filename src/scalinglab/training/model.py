"""A small GPT in one readable file (nanoGPT style).

Pre-norm decoder-only transformer: token embedding (+ learned positions, or rotary
positions applied to queries and keys), ``layers`` blocks of causal self-attention and an MLP
(GELU or SwiGLU), a final norm and a vocabulary projection that is tied to the token
embedding or not. Its parameter count equals :func:`scalinglab.planning.count_params` for
the same shape (:func:`scalinglab.training.trainer.param_count` passes it over; tested).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from scalinglab.errors import SpecError


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT.

    Parameters
    ----------
    vocab_size
        Number of token ids (256 for the byte tokenizer).
    context
        Longest sequence the model reads, in tokens.
    d_model
        Width of the residual stream.
    layers
        Number of transformer blocks.
    heads
        Attention heads; must divide ``d_model``.
    d_ff
        Hidden width of the MLP; ``None`` means ``4 * d_model`` for GELU and the
        LLaMA width ``8/3 * d_model`` rounded up to a multiple of 8 for SwiGLU.
    mlp
        ``"gelu"`` (two matrices) or ``"swiglu"`` (three matrices).
    positions
        ``"learned"`` (a ``context x d_model`` table) or ``"rotary"`` (no parameters).
    tied_embeddings
        Share the token embedding with the output projection.
    bias
        Biases in linear layers and LayerNorms.
    norm
        ``"layernorm"`` or ``"rmsnorm"``.
    """

    vocab_size: int = 256
    context: int = 128
    d_model: int = 64
    layers: int = 2
    heads: int = 2
    d_ff: int | None = None
    mlp: Literal["gelu", "swiglu"] = "gelu"
    positions: Literal["learned", "rotary"] = "learned"
    tied_embeddings: bool = True
    bias: bool = True
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "d_model", "layers", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SpecError(f"model: {name} must be a positive integer, got {value!r}")
        if self.d_model % self.heads:
            raise SpecError(
                f"model: heads ({self.heads}) must divide d_model ({self.d_model}); "
                f"try heads in {[h for h in range(1, self.d_model + 1) if self.d_model % h == 0]}"
            )
        if self.positions == "rotary" and (self.d_model // self.heads) % 2:
            raise SpecError(
                f"model: rotary positions need an even head width, got "
                f"d_model/heads = {self.d_model // self.heads}"
            )
        if self.d_ff is not None and (not isinstance(self.d_ff, int) or self.d_ff < 1):
            raise SpecError(f"model: d_ff must be a positive integer, got {self.d_ff!r}")
        choices = {"mlp": ("gelu", "swiglu"), "positions": ("learned", "rotary")}
        choices["norm"] = ("layernorm", "rmsnorm")
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SpecError(
                    f"model: {name} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )

    @property
    def hidden(self) -> int:
        """Hidden width of the MLP actually used."""
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == "swiglu":
            return 8 * math.ceil(8 * self.d_model / 3 / 8)
        return 4 * self.d_model

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON, TOML, checkpoints)."""
        return asdict(self)


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (no bias)."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def _norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model)
    return nn.LayerNorm(config.d_model, bias=config.bias)


def _rotary_tables(context: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape ``(context, head_dim/2)`` (RoFormer, base 10000)."""
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(context, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of the head dimension of ``x (B, H, T, hd)``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (fused QKV projection, PyTorch SDPA kernel)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.rotary = config.positions == "rotary"
        if self.rotary:
            cos, sin = _rotary_tables(config.context, config.d_model // config.heads)
            # buffers, not parameters: they are not trained and not counted in N
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, time, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        if self.rotary:
            cos, sin = self.get_buffer("cos")[:time], self.get_buffer("sin")[:time]
            q, k = _apply_rotary(q, cos, sin), _apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(batch, time, width))


class MLP(nn.Module):
    """GELU MLP (up, down) or SwiGLU (gate, up, down)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        if self.swiglu:
            self.gate = nn.Linear(config.d_model, config.hidden, bias=config.bias)
        self.up = nn.Linear(config.d_model, config.hidden, bias=config.bias)
        self.down = nn.Linear(config.hidden, config.d_model, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.norm1 = _norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm2 = _norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """The language model: ``forward(idx)`` gives logits, ``forward(idx, targets)`` the loss."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = (
            nn.Embedding(config.context, config.d_model) if config.positions == "learned" else None
        )
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm_f = _norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tied_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers)
        residual_std = 0.02 / math.sqrt(2 * self.config.layers)
        for name, param in self.named_parameters():
            if param.dim() < 2:
                continue
            std = residual_std if name.endswith(("proj.weight", "down.weight")) else 0.02
            nn.init.normal_(param, mean=0.0, std=std)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(batch, time, vocab)``, or the mean cross-entropy (nats) given targets."""
        time = idx.shape[1]
        if time > self.config.context:
            raise SpecError(f"sequence of {time} tokens exceeds the context {self.config.context}")
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(time, device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.norm_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Matrices (decayed) and vectors (biases, norm gains: not decayed), as param groups."""
        params = list(dict.fromkeys(self.parameters()))  # tied weights once
        return [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (a tied weight counts once)."""
    return sum(p.numel() for p in dict.fromkeys(model.parameters()))

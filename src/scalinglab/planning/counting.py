"""Parameter and FLOP counts of GPT/Llama-style decoder-only transformers.

The parameter count matches, tensor for tensor, a nanoGPT-style PyTorch model
(``sum(p.numel() for p in model.parameters())``, shared tensors counted once):

* token embedding ``vocab × d_model``; learned positions ``context × d_model`` (none for
  rotary or no positional embedding);
* per layer: a norm before attention, the attention (query ``d × d``, key and value
  ``d × kv_dim`` each, output ``d × d``, biases when ``bias``), a norm before the MLP, the MLP
  (GELU: ``d × d_ff`` then ``d_ff × d``; SwiGLU: gate and up ``d × d_ff``, down ``d_ff × d``);
* a final norm; the language-model head ``d_model × vocab`` without bias, shared with the
  token embedding when ``tied_embeddings``.

``bias`` follows nanoGPT: one switch for the biases of every linear layer *and* of LayerNorm
(LayerNorm has ``2 d`` parameters with bias, ``d`` without; RMSNorm always ``d``).

Non-embedding parameters follow Kaplan et al. (2020): the total minus the token embedding, the
position embedding and an untied head. FLOPs per token follow Hoffmann et al. (2022),
Appendix F (embeddings, attention with its logits, softmax and reduction, dense block, final
logits; the backward pass costs twice the forward), next to the ``6 N`` approximation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from scalinglab.errors import InputError

Positions = Literal["learned", "rotary", "none"]
Mlp = Literal["gelu", "swiglu"]
Norm = Literal["layernorm", "rmsnorm"]

#: head size assumed when the number of heads is not given (GPT-2, GPT-3, Llama all use 64+)
DEFAULT_HEAD_DIM = 64


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one transformer block, by part.

    Attributes
    ----------
    attention
        Query, key, value and output projections with their biases.
    mlp
        The feed-forward block with its biases.
    norms
        The two norms of the block (before attention, before the MLP).
    """

    attention: int
    mlp: int
    norms: int

    @property
    def total(self) -> int:
        """All parameters of the block."""
        return self.attention + self.mlp + self.norms


@dataclass(frozen=True)
class ParamCount:
    """Parameter count of a model, split the way scaling laws need it.

    Attributes
    ----------
    total
        Every trainable parameter, shared tensors counted once (``numel`` of the model).
    embedding
        Token embedding + position embedding + untied language-model head.
    nonembedding
        ``total - embedding`` (Kaplan et al. 2020's ``N``).
    token_embedding, position_embedding, lm_head
        The parts of ``embedding``; ``lm_head`` is 0 when tied to the token embedding.
    per_layer
        Breakdown of one block (all blocks are identical).
    layers
        Number of blocks.
    final_norm
        The norm after the last block.
    """

    total: int
    embedding: int
    nonembedding: int
    token_embedding: int
    position_embedding: int
    lm_head: int
    per_layer: LayerParams
    layers: int
    final_norm: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (per-layer breakdown nested), for JSON."""
        out = asdict(self)
        out["per_layer"]["total"] = self.per_layer.total
        return out


@dataclass(frozen=True)
class FlopCount:
    """Training FLOPs per token (forward + backward) of a model.

    Attributes
    ----------
    embeddings, attention, mlp, logits
        Forward FLOPs per token of each part (``attention`` and ``mlp`` summed over layers),
        counted as in Hoffmann et al. (2022), Appendix F.
    forward
        Sum of the parts: forward FLOPs per token.
    training
        ``3 × forward``: forward and backward FLOPs per token (the exact count).
    six_n
        ``6 × total parameters``, the usual approximation (Chinchilla's ``C = 6 N D``).
    six_n_nonembedding
        ``6 × non-embedding parameters`` (Kaplan's ``C = 6 N D``).
    """

    embeddings: int
    attention: int
    mlp: int
    logits: int
    forward: int
    training: int
    six_n: int
    six_n_nonembedding: int

    def to_dict(self) -> dict[str, int]:
        """Plain dictionary, for JSON."""
        return asdict(self)


@dataclass(frozen=True)
class ModelShape:
    """Shape of a GPT/Llama-style decoder-only transformer.

    Parameters
    ----------
    d_model
        Width of the residual stream.
    layers
        Number of transformer blocks.
    vocab
        Vocabulary size (rows of the token embedding).
    context
        Sequence length: rows of a learned position embedding, and the attention span used
        in the FLOP count.
    heads
        Attention heads; ``None`` means ``d_model // 64`` (at least 1). Must divide ``d_model``.
    kv_heads
        Key/value heads for grouped-query attention; ``None`` means ``heads`` (multi-head).
    ffn_mult
        MLP width as a multiple of ``d_model`` when ``d_ff`` is not given.
    d_ff
        MLP hidden width (e.g. 11008 for Llama-7B's SwiGLU); overrides ``ffn_mult``.
    tied_embeddings
        The language-model head shares the token embedding's weight.
    positions
        ``"learned"`` (GPT-2: a ``context × d_model`` table), ``"rotary"`` or ``"none"``
        (no parameters).
    mlp
        ``"gelu"`` (two matrices) or ``"swiglu"`` (three).
    bias
        Biases in linear layers and LayerNorm (nanoGPT's single ``bias`` switch).
    norm
        ``"layernorm"`` or ``"rmsnorm"``.
    """

    d_model: int
    layers: int
    vocab: int
    context: int
    heads: int | None = None
    kv_heads: int | None = None
    ffn_mult: float = 4.0
    d_ff: int | None = None
    tied_embeddings: bool = True
    positions: Positions = "learned"
    mlp: Mlp = "gelu"
    bias: bool = True
    norm: Norm = "layernorm"
    _resolved: tuple[int, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("d_model", "layers", "vocab", "context"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive integer", value=value)
        for name, allowed in (
            ("positions", ("learned", "rotary", "none")),
            ("mlp", ("gelu", "swiglu")),
            ("norm", ("layernorm", "rmsnorm")),
        ):
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"{name} must be one of {', '.join(allowed)}",
                    value=getattr(self, name),
                )
        heads = self.heads if self.heads is not None else max(1, self.d_model // DEFAULT_HEAD_DIM)
        if heads < 1 or self.d_model % heads:
            raise InputError(
                f"heads must be a positive divisor of d_model={self.d_model}",
                value=heads,
            )
        kv_heads = self.kv_heads if self.kv_heads is not None else heads
        if kv_heads < 1 or heads % kv_heads:
            raise InputError(
                f"kv_heads must be a positive divisor of heads={heads}",
                value=kv_heads,
            )
        if self.d_ff is None and not (math.isfinite(self.ffn_mult) and self.ffn_mult > 0):
            raise InputError("ffn_mult must be a positive finite number", value=self.ffn_mult)
        d_ff = self.d_ff if self.d_ff is not None else round(self.ffn_mult * self.d_model)
        if d_ff < 1:
            raise InputError("the MLP width d_ff must be positive", value=d_ff)
        # frozen dataclass: cache the resolved defaults once
        object.__setattr__(self, "_resolved", (heads, kv_heads, d_ff))

    @property
    def n_heads(self) -> int:
        """Attention heads after defaults."""
        return self._resolved[0]

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads after defaults."""
        return self._resolved[1]

    @property
    def ffn_width(self) -> int:
        """MLP hidden width after defaults."""
        return self._resolved[2]

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def kv_dim(self) -> int:
        """Width of the key (and of the value) projection."""
        return self.n_kv_heads * self.head_dim

    def _norm_params(self) -> int:
        if self.norm == "rmsnorm":
            return self.d_model
        return 2 * self.d_model if self.bias else self.d_model

    def param_count(self) -> ParamCount:
        """Count the parameters (see the module docstring for the conventions)."""
        d, kv, ff = self.d_model, self.kv_dim, self.ffn_width
        b = int(self.bias)
        attention = d * d + 2 * d * kv + d * d + b * (d + 2 * kv + d)
        if self.mlp == "swiglu":
            mlp = 3 * d * ff + b * (2 * ff + d)
        else:
            mlp = 2 * d * ff + b * (ff + d)
        layer = LayerParams(attention=attention, mlp=mlp, norms=2 * self._norm_params())
        token = self.vocab * d
        position = self.context * d if self.positions == "learned" else 0
        head = 0 if self.tied_embeddings else self.vocab * d
        final_norm = self._norm_params()
        embedding = token + position + head
        nonembedding = self.layers * layer.total + final_norm
        return ParamCount(
            total=embedding + nonembedding,
            embedding=embedding,
            nonembedding=nonembedding,
            token_embedding=token,
            position_embedding=position,
            lm_head=head,
            per_layer=layer,
            layers=self.layers,
            final_norm=final_norm,
        )

    def flop_count(self) -> FlopCount:
        """Training FLOPs per token, Hoffmann et al. (2022) Appendix F accounting.

        Per token and per layer, forward: ``2·d·(d + 2·kv_dim)`` for the query/key/value
        projections, ``2·context·d`` for the attention logits, ``3·heads·context`` for the
        softmax, ``2·context·d`` for the reduction over values, ``2·d·d`` for the output
        projection, and ``2·d·d_ff`` per MLP matrix. Embeddings and final logits cost
        ``2·vocab·d`` each. Norms, biases and nonlinearities are ignored, as in the paper; the
        attention span is the full ``context`` (no causal halving), also as in the paper.
        """
        d, kv, ff, ctx, v = self.d_model, self.kv_dim, self.ffn_width, self.context, self.vocab
        per_layer_attention = (
            2 * d * (d + 2 * kv)  # query, key, value projections
            + 2 * ctx * d  # query · key logits
            + 3 * self.n_heads * ctx  # softmax
            + 2 * ctx * d  # softmax · value reduction
            + 2 * d * d  # output projection
        )
        per_layer_mlp = 2 * d * ff * (3 if self.mlp == "swiglu" else 2)
        embeddings = 2 * v * d
        logits = 2 * d * v
        attention = self.layers * per_layer_attention
        mlp = self.layers * per_layer_mlp
        forward = embeddings + attention + mlp + logits
        params = self.param_count()
        return FlopCount(
            embeddings=embeddings,
            attention=attention,
            mlp=mlp,
            logits=logits,
            forward=forward,
            training=3 * forward,
            six_n=6 * params.total,
            six_n_nonembedding=6 * params.nonembedding,
        )


def count_params(
    d_model: int,
    layers: int,
    vocab: int,
    context: int,
    *,
    heads: int | None = None,
    kv_heads: int | None = None,
    ffn_mult: float = 4.0,
    d_ff: int | None = None,
    tied_embeddings: bool = True,
    positions: Positions = "learned",
    mlp: Mlp = "gelu",
    bias: bool = True,
    norm: Norm = "layernorm",
) -> ParamCount:
    """Parameter count of a decoder-only transformer.

    The defaults describe nanoGPT's GPT-2 (learned positions, GELU MLP of width ``4·d_model``,
    LayerNorm with bias, tied embeddings): ``count_params(768, 12, 50257, 1024).total`` is
    124,439,808, GPT-2 small. Llama-7B is ``count_params(4096, 32, 32000, 4096, d_ff=11008,
    tied_embeddings=False, positions="rotary", mlp="swiglu", bias=False, norm="rmsnorm")``.

    Parameters
    ----------
    d_model, layers, vocab, context, heads, kv_heads, ffn_mult, d_ff, tied_embeddings, \
positions, mlp, bias, norm
        See :class:`ModelShape`.

    Returns
    -------
    ParamCount
        Total, embedding, non-embedding and per-part counts.

    Raises
    ------
    InputError
        For a non-positive size, heads that do not divide ``d_model``, or an unknown option.
    """
    return ModelShape(
        d_model=d_model,
        layers=layers,
        vocab=vocab,
        context=context,
        heads=heads,
        kv_heads=kv_heads,
        ffn_mult=ffn_mult,
        d_ff=d_ff,
        tied_embeddings=tied_embeddings,
        positions=positions,
        mlp=mlp,
        bias=bias,
        norm=norm,
    ).param_count()

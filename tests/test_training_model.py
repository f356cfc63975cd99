"""The small GPT: parameter count equals planning's, causality, bad shapes rejected."""

from __future__ import annotations

import pytest
import torch

from scalinglab.errors import SpecError
from scalinglab.planning import count_params
from scalinglab.training.config import TrainConfig
from scalinglab.training.model import GPT, GPTConfig, count_parameters
from scalinglab.training.trainer import param_count

SHAPES = [
    GPTConfig(vocab_size=256, context=32, d_model=32, layers=2, heads=4),
    GPTConfig(vocab_size=300, context=16, d_model=24, layers=3, heads=2, tied_embeddings=False),
    GPTConfig(vocab_size=128, context=16, d_model=32, layers=1, heads=2, mlp="swiglu"),
    GPTConfig(
        vocab_size=128,
        context=64,
        d_model=32,
        layers=2,
        heads=4,
        mlp="swiglu",
        positions="rotary",
        bias=False,
        norm="rmsnorm",
        tied_embeddings=False,
    ),
    GPTConfig(vocab_size=64, context=8, d_model=16, layers=2, heads=2, bias=False, d_ff=40),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.mlp}-{s.positions}-{s.norm}")
def test_numel_equals_planning_count(shape: GPTConfig) -> None:
    model = GPT(shape)
    expected = count_params(
        shape.d_model,
        shape.layers,
        shape.vocab_size,
        shape.context,
        heads=shape.heads,
        d_ff=shape.hidden,
        tied_embeddings=shape.tied_embeddings,
        positions=shape.positions,
        mlp=shape.mlp,
        bias=shape.bias,
        norm=shape.norm,
    )
    assert count_parameters(model) == expected.total
    embedding = model.tok_emb.weight.numel()
    if model.pos_emb is not None:
        embedding += model.pos_emb.weight.numel()
    if not shape.tied_embeddings:
        embedding += model.lm_head.weight.numel()
    assert count_parameters(model) - embedding == expected.nonembedding


def test_trainer_counts_the_model_it_builds() -> None:
    config = TrainConfig(d_model=48, layers=3, heads=3, context=32, steps=1, mlp="swiglu")
    counts = param_count(config, vocab_size=256)
    assert counts.total == count_parameters(GPT(config.model_config(256)))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_model_is_causal(positions: str) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(context=16, d_model=16, layers=2, heads=2, positions=positions))
    model.eval()
    idx = torch.randint(0, 256, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 256
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert a.shape == (2, 16, 256)
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_loss_at_init_is_near_uniform() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(context=16, d_model=32, layers=2, heads=2))
    idx, targets = torch.randint(0, 256, (2, 8, 16))
    with torch.no_grad():
        loss = float(model(idx, targets))
    assert loss == pytest.approx(torch.log(torch.tensor(256.0)).item(), abs=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 30, "heads": 4}, "heads \\(4\\) must divide d_model \\(30\\)"),
        ({"layers": 0}, "layers must be a positive integer"),
        ({"mlp": "relu"}, "mlp must be one of gelu, swiglu"),
        ({"d_model": 12, "heads": 4, "positions": "rotary"}, "even head width"),
    ],
)
def test_bad_shapes_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        GPTConfig(**kwargs)  # type: ignore[arg-type]


def test_sequence_longer_than_context_is_rejected() -> None:
    model = GPT(GPTConfig(context=8, d_model=16, layers=1, heads=2))
    with pytest.raises(SpecError, match="exceeds the context 8"):
        model(torch.zeros(1, 9, dtype=torch.long))

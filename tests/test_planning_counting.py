"""Parameter and FLOP counts against published model sizes and hand counts."""

from __future__ import annotations

import pytest

from scalinglab.errors import InputError
from scalinglab.planning import ModelShape, count_params


def test_gpt2_small_matches_published_count() -> None:
    # nanoGPT's GPT-2 124M: 124,439,808 parameters with tied embeddings
    count = count_params(768, 12, 50257, 1024)
    assert count.total == 124_439_808
    assert count.token_embedding == 50257 * 768
    assert count.position_embedding == 1024 * 768
    assert count.lm_head == 0
    assert count.nonembedding == 124_439_808 - 50257 * 768 - 1024 * 768
    assert count.total == count.embedding + count.nonembedding


def test_gpt2_untied_head_counts_as_embedding() -> None:
    tied = count_params(768, 12, 50257, 1024)
    untied = count_params(768, 12, 50257, 1024, tied_embeddings=False)
    assert untied.total - tied.total == 50257 * 768
    assert untied.lm_head == 50257 * 768
    assert untied.nonembedding == tied.nonembedding


def test_llama_7b_matches_published_count() -> None:
    count = count_params(
        4096,
        32,
        32000,
        4096,
        d_ff=11008,
        tied_embeddings=False,
        positions="rotary",
        mlp="swiglu",
        bias=False,
        norm="rmsnorm",
    )
    assert count.total == 6_738_415_616
    assert count.position_embedding == 0
    assert count.per_layer.norms == 2 * 4096


def test_hand_count_of_a_tiny_gqa_model() -> None:
    # d=8, 2 layers, 4 heads of 2, 2 kv heads -> kv_dim 4, d_ff 16, biases, LayerNorm
    count = count_params(8, 2, 10, 5, heads=4, kv_heads=2, d_ff=16)
    attention = 8 * 8 + 2 * 8 * 4 + 8 * 8 + (8 + 4 + 4 + 8)
    mlp = 8 * 16 + 16 + 16 * 8 + 8
    assert count.per_layer.attention == attention
    assert count.per_layer.mlp == mlp
    assert count.per_layer.norms == 2 * 16
    assert count.final_norm == 16
    assert count.total == 10 * 8 + 5 * 8 + 2 * (attention + mlp + 32) + 16


def test_flops_follow_chinchilla_appendix_f() -> None:
    shape = ModelShape(d_model=8, layers=2, vocab=10, context=5, heads=2)
    flops = shape.flop_count()
    per_layer_attention = 2 * 3 * 8 * 8 + 2 * 5 * 8 + 3 * 2 * 5 + 2 * 5 * 8 + 2 * 8 * 8
    assert flops.attention == 2 * per_layer_attention
    assert flops.mlp == 2 * (2 * 2 * 8 * 32)
    assert flops.embeddings == flops.logits == 2 * 10 * 8
    assert flops.training == 3 * flops.forward
    assert flops.six_n == 6 * shape.param_count().total


def test_exact_flops_approach_6n_for_wide_short_context_models() -> None:
    flops = ModelShape(d_model=8192, layers=80, vocab=32000, context=512).flop_count()
    assert flops.training / flops.six_n == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 0}, "d_model"),
        ({"heads": 5}, "heads"),
        ({"heads": 4, "kv_heads": 3}, "kv_heads"),
        ({"mlp": "relu"}, "mlp"),
        ({"d_ff": 0}, "MLP width"),
    ],
)
def test_bad_shapes_are_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"d_model": 64, "layers": 2, "vocab": 100, "context": 16}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        ModelShape(**args)  # type: ignore[arg-type]

"""MARS optimizers against a per-tensor reference written from the paper's equations."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from scalinglab.errors import SpecError
from scalinglab.optim import MARS, MARSAdamW, MARSLion, MARSShampoo

CLASSES: dict[str, type[MARS]] = {"adamw": MARSAdamW, "lion": MARSLion, "shampoo": MARSShampoo}
STEPS = 100
DEFAULTS: dict[str, Any] = {
    "lr": 3e-3,
    "betas": (0.95, 0.99),
    "eps": 1e-8,
    "weight_decay": 0.0,
    "gamma": 0.025,
    "lr_1d_scale": 1.0,
    "betas_1d": (0.9, 0.95),
    "weight_decay_1d": 0.1,
    "mars_1d": False,
    "ns_steps": 5,
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These problems are tiny: on a shared machine, thread hand-offs cost 15x the compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- a small random problem


def make_params(seed: int, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """A tall matrix, a wide matrix, a bias vector and a 0-d gain."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"W": (8, 5), "V": (3, 8), "b": (8,), "gain": ()}
    return {n: (torch.randn(s, generator=gen) * 0.5).to(dtype) for n, s in shapes.items()}


def make_batches(
    seed: int, steps: int, dtype: torch.dtype = torch.float64
) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed + 1)
    # Targets of scale 3 make early corrected gradients exceed unit norm (clipped) and later
    # ones fall below it, so both branches of the clipping run.
    return [
        (
            torch.randn(16, 5, generator=gen).to(dtype),
            3 * torch.randn(16, 3, generator=gen).to(dtype),
        )
        for _ in range(steps)
    ]


def loss_of(p: Mapping[str, Tensor], batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    out = torch.tanh(x @ p["W"].T + p["b"]) @ p["V"].T * p["gain"]
    return ((out - y) ** 2).mean()


def grads_at(p: Mapping[str, Tensor], batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
    leaves = {n: t.detach().clone().requires_grad_(True) for n, t in p.items()}
    grads = torch.autograd.grad(loss_of(leaves, batch), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True))


# ---------------------------------------------------------------- reference, from the equations


def newton_schulz(m: Tensor, steps: int, eps: float) -> Tensor:
    """X ← aX + b(XXᵀ)X + c(XXᵀ)²X from X = M/(‖M‖+ε), on the side with the smaller Gram."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = m / (torch.linalg.norm(m) + eps)
    tall = m.shape[0] > m.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + b * gram @ x + c * gram @ gram @ x
    return x.T if tall else x


def reference_run(
    variant: str,
    mode: str,
    init: Mapping[str, Tensor],
    hparams: Mapping[str, Mapping[str, Any]],
    batches: list[tuple[Tensor, Tensor]],
    lr_factors: list[float],
) -> dict[str, Tensor]:
    """Per-tensor MARS; ``hparams[name]`` are the group options of parameter ``name``."""
    x = {n: t.clone() for n, t in init.items()}
    m = {n: torch.zeros_like(t) for n, t in x.items()}
    v = {n: torch.zeros_like(t) for n, t in x.items()}
    g_last: dict[str, Tensor] = {}
    x_prev: dict[str, Tensor] | None = None
    for t, batch in enumerate(batches, start=1):
        g = grads_at(x, batch)
        if mode == "exact":
            # g_{t−1} = ∇f(x_{t−1}, ξ_t); x_0 = x_1
            g_prev = grads_at(x_prev, batch) if x_prev is not None else g
        else:
            g_prev = g_last if g_last else g
        x_prev = {n: p.clone() for n, p in x.items()}
        for n in x:
            hp = hparams[n]
            lr = hp["lr"] * lr_factors[t - 1]
            if x[n].ndim == 2 or hp["mars_1d"]:
                b1, b2 = hp["betas"]
                c = g[n] + hp["gamma"] * (b1 / (1 - b1)) * (g[n] - g_prev[n])
                if torch.linalg.norm(c) > 1:
                    c = c / torch.linalg.norm(c)
                m[n] = b1 * m[n] + (1 - b1) * c
                wd = hp["weight_decay"]
                if variant == "adamw" or (variant == "shampoo" and x[n].ndim != 2):
                    v[n] = b2 * v[n] + (1 - b2) * c * c
                    m_hat, v_hat = m[n] / (1 - b1**t), v[n] / (1 - b2**t)
                    x[n] = x[n] - lr * (m_hat / (v_hat.sqrt() + hp["eps"]) + wd * x[n])
                elif variant == "lion":
                    x[n] = x[n] - lr * (torch.sign(m[n]) + wd * x[n])
                else:
                    rows, cols = x[n].shape
                    o = newton_schulz(m[n], hp["ns_steps"], hp["eps"])
                    x[n] = x[n] - lr * (math.sqrt(max(1, rows / cols)) * o + wd * x[n])
            else:
                b1, b2 = hp["betas_1d"]
                lr = lr * hp["lr_1d_scale"]
                m[n] = b1 * m[n] + (1 - b1) * g[n]
                v[n] = b2 * v[n] + (1 - b2) * g[n] * g[n]
                m_hat, v_hat = m[n] / (1 - b1**t), v[n] / (1 - b2**t)
                x[n] = x[n] - lr * (
                    m_hat / (v_hat.sqrt() + hp["eps"]) + hp["weight_decay_1d"] * x[n]
                )
        g_last = g
    return x


# ---------------------------------------------------------------- driving the optimizer


def as_parameters(init: Mapping[str, Tensor]) -> dict[str, nn.Parameter]:
    return {n: nn.Parameter(t.clone()) for n, t in init.items()}


def closure_for(
    opt: torch.optim.Optimizer, params: Mapping[str, Tensor], batch: tuple[Tensor, Tensor]
) -> Callable[[], Tensor]:
    def closure() -> Tensor:
        opt.zero_grad()
        loss = loss_of(params, batch)
        loss.backward()
        return loss

    return closure


def train(
    opt: MARS,
    params: Mapping[str, Tensor],
    batches: list[tuple[Tensor, Tensor]],
    scheduler: Any = None,
) -> None:
    for batch in batches:
        closure = closure_for(opt, params, batch)
        if opt.mode == "exact":
            opt.step(closure)
        else:
            closure()
            opt.step()
        if scheduler is not None:
            scheduler.step()


# Options spanning every hyperparameter; "groups" puts matrices and the rest in two groups.
OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {"lr": 1e-2},
    "decay-and-mars-1d": {"lr": 1e-2, "weight_decay": 0.1, "mars_1d": True, "gamma": 0.05},
    "1d-options": {
        "lr": 2e-2,
        "betas": (0.9, 0.95),
        "eps": 1e-6,
        "lr_1d_scale": 0.5,
        "betas_1d": (0.8, 0.9),
        "weight_decay_1d": 0.2,
        "ns_steps": 3,
    },
    "gamma-zero": {"lr": 1e-2, "gamma": 0.0},
}
GROUPS = (
    {"names": ("W", "V"), "lr": 2e-2, "gamma": 0.1, "weight_decay": 0.05},
    {"names": ("b", "gain"), "lr": 5e-3, "mars_1d": True, "betas": (0.5, 0.9)},
)


@pytest.mark.parametrize("mode", ["approx", "exact"])
@pytest.mark.parametrize("options", [*OPTIONS, "groups"])
@pytest.mark.parametrize("variant", list(CLASSES))
def test_matches_reference_for_100_steps(variant: str, options: str, mode: str) -> None:
    init, batches = make_params(0), make_batches(0, STEPS)
    params = as_parameters(init)
    if options == "groups":
        groups = [
            {
                "params": [params[n] for n in g["names"]],
                **{k: v for k, v in g.items() if k != "names"},
            }
            for g in GROUPS
        ]
        opt = CLASSES[variant](groups, mode=mode, ns_dtype=torch.float64)  # type: ignore[arg-type]
        hparams = {
            n: {**DEFAULTS, **{k: v for k, v in g.items() if k != "names"}}
            for g in GROUPS
            for n in g["names"]
        }
    else:
        opt = CLASSES[variant](
            params.values(), mode=mode, ns_dtype=torch.float64, **OPTIONS[options]
        )
        hparams = {n: {**DEFAULTS, **OPTIONS[options]} for n in params}
    # A scheduler on every run: the update must follow the group's current lr.
    factors = [min(1.0, (t + 1) / 10) * 0.5 ** (t / 50) for t in range(STEPS)]
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: factors[min(t, STEPS - 1)])
    train(opt, params, batches, scheduler)
    expected = reference_run(variant, mode, init, hparams, batches, factors)
    for n, p in params.items():
        assert float((p.detach() - expected[n]).abs().max()) <= 1e-6, n
        assert float((p.detach() - init[n]).abs().max()) > 1e-3, f"{n} did not move"


@pytest.mark.parametrize("variant", list(CLASSES))
def test_matches_reference_in_float32(variant: str) -> None:
    init, batches = make_params(1, torch.float32), make_batches(1, STEPS, torch.float32)
    params = as_parameters(init)
    opt = CLASSES[variant](params.values(), lr=1e-2, weight_decay=0.01, ns_dtype=torch.float32)
    train(opt, params, batches)
    hparams = {n: {**DEFAULTS, "lr": 1e-2, "weight_decay": 0.01} for n in params}
    expected = reference_run(variant, "approx", init, hparams, batches, [1.0] * STEPS)
    # The float64 test above holds 1e-6; here both sides round differently ordered float32
    # arithmetic (ε = 6e-8 per operation, parameters of order 1) for 100 steps.
    for n, p in params.items():
        assert float((p.detach() - expected[n]).abs().max()) <= 1e-5, n


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@CUDA
@pytest.mark.parametrize("mode", ["approx", "exact"])
@pytest.mark.parametrize("variant", list(CLASSES))
def test_matches_reference_on_cuda(variant: str, mode: str) -> None:
    """The same 100 steps with parameters and batches on the GPU (float64, as on the CPU)."""
    init, batches = make_params(0), make_batches(0, STEPS)
    params = as_parameters({n: t.cuda() for n, t in init.items()})
    opt = CLASSES[variant](params.values(), lr=1e-2, mode=mode, ns_dtype=torch.float64)
    train(opt, params, [(x.cuda(), y.cuda()) for x, y in batches])
    hparams = {n: {**DEFAULTS, "lr": 1e-2} for n in params}
    expected = reference_run(variant, mode, init, hparams, batches, [1.0] * STEPS)
    for n, p in params.items():
        assert p.device.type == "cuda"
        assert float((p.detach().cpu() - expected[n]).abs().max()) <= 1e-6, n


def test_bfloat16_newton_schulz_approximates_the_exact_iteration() -> None:
    """The default bf16 products give the float64 iteration's step to within 5%."""
    init, batches = make_params(2), make_batches(2, 5)
    hparams = {n: {**DEFAULTS, "lr": 1e-2} for n in init}
    expected = reference_run("shampoo", "approx", init, hparams, batches, [1.0] * 5)
    params = as_parameters(init)
    train(MARSShampoo(params.values(), lr=1e-2), params, batches)
    for n in ("W", "V"):
        moved = (expected[n] - init[n]).abs().max()
        assert float((params[n].detach() - expected[n]).abs().max()) < 0.05 * float(moved), n


def test_first_step_has_no_correction() -> None:
    """x_0 = x_1: the first step is the base optimizer on the (clipped) gradient."""
    p = nn.Parameter(torch.tensor([[0.1, -0.2], [0.3, 0.05]]))
    opt = MARSAdamW([p], lr=0.1, gamma=1.0)
    p.grad = torch.tensor([[0.01, -0.02], [0.0, 0.03]])
    opt.step()
    # Adam's first step moves each coordinate by lr·sign(g) (zero where g is zero).
    expected = torch.tensor([[0.0, -0.1], [0.3, -0.05]])
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- behaviour


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("variant", list(CLASSES))
def test_converges_on_a_regression_problem(variant: str, dtype: torch.dtype, device: str) -> None:
    gen = torch.Generator().manual_seed(3)
    true_w = torch.randn(4, 10, generator=gen)
    x = torch.randn(256, 10, generator=gen)
    y = x @ true_w.T + 1.0 + 0.01 * torch.randn(256, 4, generator=gen)
    x, y = x.to(device, dtype), y.to(device, dtype)
    torch.manual_seed(0)
    model = nn.Linear(10, 4).to(device, dtype)
    opt = CLASSES[variant](model.parameters(), lr=2e-2, lr_1d_scale=2.0, weight_decay_1d=0.0)

    def full_loss() -> float:
        with torch.no_grad():
            return float(((model(x) - y) ** 2).mean())

    initial = full_loss()
    for step in range(300):
        rows = slice(64 * (step % 4), 64 * (step % 4 + 1))
        opt.zero_grad()
        ((model(x[rows]) - y[rows]) ** 2).mean().backward()
        opt.step()
    assert full_loss() < 1e-3 * initial, (initial, full_loss())
    assert {t.dtype for s in opt.state.values() for t in s.values() if isinstance(t, Tensor)} == {
        dtype
    }


@pytest.mark.parametrize("mode", ["approx", "exact"])
@pytest.mark.parametrize("variant", list(CLASSES))
def test_state_dict_round_trip_resumes_identically(variant: str, mode: str) -> None:
    init, batches = make_params(4, torch.float32), make_batches(4, 20, torch.float32)
    params = as_parameters(init)
    opt = CLASSES[variant](params.values(), lr=1e-2, weight_decay=0.05, mode=mode)
    train(opt, params, batches[:10])
    buffer = io.BytesIO()
    torch.save(
        {"params": {n: p.detach() for n, p in params.items()}, "opt": opt.state_dict()}, buffer
    )
    train(opt, params, batches[10:])

    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = as_parameters(saved["params"])
    opt2 = CLASSES[variant](resumed.values(), mode=mode)  # hyperparameters come from the state
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[0]["lr"] == 1e-2
    train(opt2, resumed, batches[10:])
    for n in params:
        assert torch.equal(params[n].detach(), resumed[n].detach()), n


@pytest.mark.parametrize(
    "make",
    [
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.02, total_steps=12),
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12),
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
        lambda opt: torch.optim.lr_scheduler.CyclicLR(opt, 1e-3, 1e-2, step_size_up=3),
    ],
    ids=["one-cycle", "cosine", "step", "cyclic"],
)
def test_torch_schedulers_drive_the_rate(make: Callable[[torch.optim.Optimizer], Any]) -> None:
    """Schedulers that also cycle the betas (one-cycle, cyclic) must work too."""
    init, batches = make_params(6, torch.float32), make_batches(6, 10, torch.float32)
    params = as_parameters(init)
    opt = MARSAdamW(params.values(), lr=1e-2)
    scheduler = make(opt)
    seen = []
    for batch in batches:
        closure_for(opt, params, batch)()
        before = {n: p.detach().clone() for n, p in params.items()}
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
        assert all(not torch.equal(before[n], params[n]) for n in params)
    assert len(set(seen)) > 1


def test_closure_is_evaluated_once_in_approx_mode_and_twice_in_exact_mode() -> None:
    init, batches = make_params(7, torch.float32), make_batches(7, 3, torch.float32)
    for mode, expected_calls in (("approx", [1, 1, 1]), ("exact", [1, 2, 2])):
        params = as_parameters(init)
        opt = MARSLion(params.values(), mode=mode)
        calls = []
        for batch in batches:
            inner = closure_for(opt, params, batch)
            count = [0]

            def closure(inner: Callable[[], Tensor] = inner, count: list[int] = count) -> Tensor:
                count[0] += 1
                return inner()

            opt.step(closure)
            calls.append(count[0])
        assert calls == expected_calls, mode


def test_step_returns_the_loss_at_the_current_parameters() -> None:
    init, batches = make_params(8, torch.float32), make_batches(8, 2, torch.float32)
    params = as_parameters(init)
    opt = MARSAdamW(params.values(), mode="exact")
    for batch in batches:
        expected = loss_of({n: p.detach() for n, p in params.items()}, batch)
        torch.testing.assert_close(opt.step(closure_for(opt, params, batch)), expected)


def test_exact_mode_context_manager_matches_closure_path() -> None:
    init, batches = make_params(9, torch.float32), make_batches(9, 15, torch.float32)
    by_closure = as_parameters(init)
    train(MARSShampoo(by_closure.values(), lr=1e-2, mode="exact"), by_closure, batches)

    manual = as_parameters(init)
    opt = MARSShampoo(manual.values(), lr=1e-2, mode="exact")
    for batch in batches:
        with opt.at_previous_params():
            opt.zero_grad()
            loss_of(manual, batch).backward()
        opt.zero_grad()
        loss_of(manual, batch).backward()
        opt.step()
    for n in manual:
        assert torch.equal(manual[n].detach(), by_closure[n].detach()), n


def test_at_previous_params_swaps_in_the_last_values_and_restores() -> None:
    p = nn.Parameter(torch.tensor([[1.0, 2.0]]))
    opt = MARSAdamW([p], lr=0.5, mode="exact")
    p.grad = torch.tensor([[1.0, -1.0]])
    opt.step()
    after = p.detach().clone()
    with opt.at_previous_params():
        torch.testing.assert_close(p.detach(), torch.tensor([[1.0, 2.0]]))
    assert torch.equal(p.detach(), after)
    # The block can raise: values are still restored.
    with pytest.raises(KeyError), opt.at_previous_params():
        raise KeyError("inside")
    assert torch.equal(p.detach(), after)


def test_exact_mode_without_the_previous_gradient_is_refused() -> None:
    p = nn.Parameter(torch.ones(2, 2))
    opt = MARSAdamW([p], mode="exact")
    p.grad = torch.ones(2, 2)
    opt.step()  # the first step needs no previous gradient (x_0 = x_1)
    with pytest.raises(RuntimeError, match="previous parameters"):
        opt.step()
    with pytest.raises(RuntimeError, match="mode='exact'"):
        MARSAdamW([p]).at_previous_params().__enter__()


def test_parameters_without_gradient_are_left_alone() -> None:
    used, unused = nn.Parameter(torch.ones(3, 2)), nn.Parameter(torch.ones(3, 2))
    opt = MARSLion([used, unused], mode="exact", weight_decay=0.1)
    for _ in range(3):
        used.grad = torch.randn(3, 2)
        with opt.at_previous_params():
            pass
        opt.step()
    assert torch.equal(unused.detach(), torch.ones(3, 2))
    assert opt.state[unused] == {}


def test_sparse_gradients_are_refused() -> None:
    emb = nn.Embedding(5, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        MARSAdamW(emb.parameters()).step()


# ---------------------------------------------------------------- hyperparameter checks


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"lr": -1e-3}, "lr must be a finite number >= 0, got -0.001"),
        ({"lr": float("nan")}, "lr must be"),
        ({"betas": (1.0, 0.9)}, "betas must be two numbers in [0, 1), got (1.0, 0.9)"),
        ({"betas": (0.9, -0.1)}, "betas must be two numbers in [0, 1)"),
        ({"betas": (0.9,)}, "betas must be two numbers"),
        ({"betas_1d": (0.9, 1.5)}, "betas_1d must be two numbers in [0, 1)"),
        ({"gamma": -0.1}, "gamma must be a finite number >= 0, got -0.1"),
        ({"eps": -1e-8}, "eps must be"),
        ({"weight_decay": -0.1}, "weight_decay must be"),
        ({"weight_decay_1d": -1}, "weight_decay_1d must be"),
        ({"lr_1d_scale": -2}, "lr_1d_scale must be"),
        ({"ns_steps": 0}, "ns_steps must be an integer >= 1, got 0"),
        ({"ns_dtype": torch.int32}, "ns_dtype must be a floating torch dtype, got torch.int32"),
        ({"ns_dtype": "bf16"}, "ns_dtype must be a floating torch dtype, got 'bf16'"),
        ({"mode": "fast"}, "mode must be 'approx' or 'exact', got 'fast'"),
    ],
)
def test_bad_hyperparameters_are_rejected(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        MARSLion([nn.Parameter(torch.ones(2, 2))], **options)
    assert isinstance(info.value, ValueError)
    assert fragment in str(info.value)
    assert str(info.value).startswith("MARSLion: ")


def test_bad_hyperparameter_in_a_param_group_is_rejected() -> None:
    opt = MARSAdamW([nn.Parameter(torch.ones(2, 2))])
    with pytest.raises(SpecError, match="gamma must be a finite number >= 0, got -1"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(2))], "gamma": -1})


def test_importing_scalinglab_without_the_torch_packages_does_not_load_torch() -> None:
    # The CLI modules register themselves from scalinglab.cli.main, so it is imported first.
    # walk_packages imports every package it descends into, so optim and training are left
    # out at the top level rather than filtered afterwards.
    code = """
import importlib, pkgutil, sys
import scalinglab, scalinglab.cli.main
for top in pkgutil.iter_modules(scalinglab.__path__, "scalinglab."):
    if top.name in ("scalinglab.optim", "scalinglab.training"):
        continue
    module = importlib.import_module(top.name)
    for sub in pkgutil.walk_packages(getattr(module, "__path__", []), top.name + "."):
        importlib.import_module(sub.name)
    assert "torch" not in sys.modules, f"importing {top.name} loads torch"
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr

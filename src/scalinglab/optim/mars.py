"""MARS: variance-reduced adaptive optimizers (Yuan et al. 2024, arXiv:2411.10438).

Every variant first builds the scaled stochastic recursive momentum input, per tensor,

    c_t = g_t + γ · β1/(1−β1) · (g_t − g_{t−1}),   c_t ← c_t / ‖c_t‖  if ‖c_t‖ > 1,

then keeps ``m_t = β1·m_{t−1} + (1−β1)·c_t`` and steps with

* MARS-AdamW: ``v_t = β2·v_{t−1} + (1−β2)·c_t²``, ``x −= lr·(m̂_t/(√v̂_t + ε) + wd·x)``
  (bias-corrected m̂, v̂; decoupled weight decay);
* MARS-Lion: ``x −= lr·(sign(m_t) + wd·x)``;
* MARS-Shampoo: ``x −= lr·(s·NS(m_t) + wd·x)`` where NS orthogonalises the matrix ``m_t``
  by a quintic Newton–Schulz iteration and ``s = √max(1, rows/cols)`` (the authors' scale).

``g_{t−1}`` is the previous step's gradient on the previous batch in ``"approx"`` mode (the
default, one gradient per step), and the gradient at the previous parameters on the current
batch in ``"exact"`` mode (two gradients per step, see :meth:`MARS.at_previous_params`). At the
first step ``x_0 = x_1`` as in the paper's algorithm, so ``c_1 = g_1``.

Parameters that are not matrices (``ndim != 2``: biases, norm gains) get plain AdamW with
their own betas, weight decay and learning-rate multiplier, as in the authors' experiments,
unless ``mars_1d=True``. All arithmetic runs on lists of tensors with ``torch._foreach_*``.

State per MARS tensor: ``exp_avg``, ``last_grad`` and (AdamW variant) ``exp_avg_sq``, in the
parameter's dtype; exact mode adds ``previous``, a copy of every parameter.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import ParamsT

from scalinglab.errors import SpecError

__all__ = ["MARS", "MARSAdamW", "MARSLion", "MARSShampoo", "Mode", "Variant"]

Variant = Literal["adamw", "lion", "shampoo"]
Mode = Literal["approx", "exact"]

#: Quintic Newton–Schulz coefficients of Jordan et al.'s Muon, which the MARS authors reuse:
#: they push singular values into roughly [0.7, 1.2] in five iterations.
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


class MARS(Optimizer):
    """MARS optimizer; use :class:`MARSAdamW`, :class:`MARSLion` or :class:`MARSShampoo`.

    Parameters
    ----------
    params
        Parameters or parameter groups, as for any ``torch.optim`` optimizer. Every option
        below except ``mode`` may be set per group.
    lr
        Learning rate of the matrix parameters. LR schedulers change it, and through
        ``lr_1d_scale`` the non-matrix parameters' rate too.
    betas
        ``(β1, β2)``: momentum and second-moment decays of the MARS update, each in [0, 1).
    eps
        Added to the AdamW denominators and to the matrix norm before Newton–Schulz.
    weight_decay
        Decoupled weight decay of the matrix parameters (multiplied by ``lr``).
    gamma
        γ, the scale of the gradient-correction term; 0 gives the base optimizer on clipped
        gradients.
    lr_1d_scale
        Learning rate of the non-matrix (AdamW) parameters as a multiple of ``lr``; a multiple
        rather than a value so that schedulers drive both.
    betas_1d
        AdamW betas of the non-matrix parameters.
    weight_decay_1d
        Decoupled weight decay of the non-matrix parameters.
    mars_1d
        Apply MARS to the non-matrix parameters too (MARS-AdamW for them under MARS-Shampoo)
        instead of plain AdamW.
    ns_steps
        Newton–Schulz iterations (MARS-Shampoo only).
    ns_dtype
        Floating dtype of the Newton–Schulz products (MARS-Shampoo only). bfloat16, as the
        authors use, is about twice as fast as float32 on CPU and far faster on GPU; the
        iteration only approximates the orthogonal factor anyway.
    mode
        ``"approx"``: ``g_{t−1}`` is the last step's gradient. ``"exact"``: ``g_{t−1}`` is
        re-evaluated at the previous parameters on the current batch: call
        ``step(closure)``, or compute it inside ``with optimizer.at_previous_params():``
        before ``step()``.

    Raises
    ------
    SpecError
        A hyperparameter is out of range (negative lr, eps, weight decay or γ; a beta outside
        [0, 1); ``ns_steps < 1``; ``ns_dtype`` not a floating dtype) or ``mode`` is unknown.
    """

    variant: ClassVar[Variant] = "adamw"

    def __init__(
        self,
        params: ParamsT,
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.95, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        gamma: float = 0.025,
        *,
        lr_1d_scale: float = 1.0,
        betas_1d: tuple[float, float] = (0.9, 0.95),
        weight_decay_1d: float = 0.1,
        mars_1d: bool = False,
        ns_steps: int = 5,
        ns_dtype: torch.dtype = torch.bfloat16,
        mode: Mode = "approx",
    ) -> None:
        if mode not in ("approx", "exact"):
            raise SpecError(
                f"{type(self).__name__}: mode must be 'approx' or 'exact', got {mode!r}"
            )
        self.mode: Mode = mode
        # Set by at_previous_params(), consumed by step(): exact mode needs one per step.
        self._previous_grad_ready = False
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "gamma": gamma,
            "lr_1d_scale": lr_1d_scale,
            "betas_1d": betas_1d,
            "weight_decay_1d": weight_decay_1d,
            "mars_1d": mars_1d,
            "ns_steps": ns_steps,
            "ns_dtype": ns_dtype,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group, checking its hyperparameters (see the class docstring)."""
        super().add_param_group(param_group)
        _check_group(type(self).__name__, self.param_groups[-1])

    def _uses_mars(self, group: dict[str, Any], p: Tensor) -> bool:
        return p.ndim == 2 or bool(group["mars_1d"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one optimization step.

        Parameters
        ----------
        closure
            Zeroes the gradients, computes the loss on the current batch, calls
            ``backward()`` and returns the loss. In exact mode it is called twice from the
            second step on: at the previous parameters, then at the current ones.

        Returns
        -------
        Any
            What the closure returned at the current parameters, or None without one.

        Raises
        ------
        RuntimeError
            Exact mode with neither a closure nor a gradient evaluated inside
            :meth:`at_previous_params` since the last step.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                if self.mode == "exact" and self._has_previous_params():
                    with self.at_previous_params():
                        closure()
                loss = closure()
        if self.mode == "exact" and not self._previous_grad_ready and self._has_started():
            raise RuntimeError(
                f"{type(self).__name__}(mode='exact') needs the gradient at the previous "
                "parameters on the current batch: call step(closure), or run backward inside "
                "`with optimizer.at_previous_params():` before step()"
            )
        for group in self.param_groups:
            self._step_group(group)
        self._previous_grad_ready = False
        return loss

    @contextmanager
    def at_previous_params(self) -> Iterator[None]:
        """Evaluate the gradient at the previous step's parameters (exact mode).

        Inside the block every parameter holds its value from before the last step; run
        ``zero_grad()`` and the forward and backward pass of the *current* batch there. On
        leaving, the gradients are recorded as ``g_{t−1}`` and the current values come back, so
        the block is followed by the usual ``zero_grad()``, forward, ``backward()`` and
        ``step()``. Before the first step the parameters are left as they are (``x_0 = x_1``).

        Raises
        ------
        RuntimeError
            The optimizer is in approx mode.
        """
        if self.mode != "exact":
            raise RuntimeError(f"{type(self).__name__}.at_previous_params() needs mode='exact'")
        swapped = [
            p for group in self.param_groups for p in group["params"] if "previous" in self.state[p]
        ]
        _swap(swapped, [self.state[p]["previous"] for p in swapped])
        try:
            yield
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        last = self.state[p].get("last_grad")
                        if last is None:
                            continue
                        if p.grad is None:
                            last.zero_()
                        else:
                            last.copy_(p.grad)
            self._previous_grad_ready = True
        finally:
            _swap(swapped, [self.state[p]["previous"] for p in swapped])

    def _has_previous_params(self) -> bool:
        return any("previous" in s for s in self.state.values())

    def _has_started(self) -> bool:
        return any("last_grad" in s for s in self.state.values())

    def _step_group(self, group: dict[str, Any]) -> None:
        # foreach kernels want one device and dtype per list; Newton–Schulz wants matrices.
        mars: dict[tuple[torch.device, torch.dtype, bool], list[Tensor]] = defaultdict(list)
        adamw: dict[tuple[torch.device, torch.dtype, bool], list[Tensor]] = defaultdict(list)
        for p in group["params"]:
            state = self.state[p]
            if self.mode == "exact" and (p.grad is not None or "previous" in state):
                # Parameters without a gradient keep their value, so their previous value
                # must follow too.
                if "previous" not in state:
                    state["previous"] = torch.empty_like(p, memory_format=torch.preserve_format)
                state["previous"].copy_(p)
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            buckets = mars if self._uses_mars(group, p) else adamw
            buckets[(p.device, p.dtype, p.ndim == 2)].append(p)
        for params in mars.values():
            self._mars_update(group, params)
        for params in adamw.values():
            self._adamw_update(group, params)

    def _mars_update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        beta1, beta2 = group["betas"]
        variant: Variant = self.variant
        if variant == "shampoo" and params[0].ndim != 2:
            variant = "adamw"  # non-matrix parameters under mars_1d, as the authors do
        grads = [_grad(p) for p in params]
        states = [self.state[p] for p in params]
        for p, g, state in zip(params, grads, states, strict=True):
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if variant == "adamw":
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["last_grad"] = g.clone(memory_format=torch.preserve_format)
            state["step"] += 1
        # c_t is built in the last-gradient buffers, which are refilled with g_t below:
        # last + (1 + k)(g − last) = g + k(g − last).
        corrected = [s["last_grad"] for s in states]
        k = group["gamma"] * beta1 / (1.0 - beta1)
        torch._foreach_lerp_(corrected, grads, 1.0 + k)
        norms = torch._foreach_norm(corrected)
        torch._foreach_clamp_min_(norms, 1.0)
        torch._foreach_div_(corrected, norms)
        exp_avg = [s["exp_avg"] for s in states]
        torch._foreach_lerp_(exp_avg, corrected, 1.0 - beta1)
        lr, wd = group["lr"], group["weight_decay"]
        if variant == "adamw":
            exp_avg_sq = [s["exp_avg_sq"] for s in states]
            _second_moment(exp_avg_sq, corrected, beta2)
            _adam_step(params, exp_avg, exp_avg_sq, states, lr, beta1, beta2, group["eps"], wd)
        else:
            directions: list[Tensor] | tuple[Tensor, ...]
            if variant == "lion":
                directions = torch._foreach_sign(exp_avg)
            else:
                directions = [
                    _orthogonalize(m, group["ns_steps"], group["eps"], group["ns_dtype"])
                    .to(m.dtype)
                    .mul_(math.sqrt(max(1.0, m.shape[0] / m.shape[1])))
                    for m in exp_avg
                ]
            if wd != 0.0:
                torch._foreach_mul_(params, 1.0 - lr * wd)
            torch._foreach_add_(params, directions, alpha=-lr)
        # g_t is the next step's g_{t−1} in approx mode; exact mode overwrites it before use,
        # but keeping it makes the saved state mean the same in both modes.
        torch._foreach_copy_(corrected, grads)

    def _adamw_update(self, group: dict[str, Any], params: list[Tensor]) -> None:
        beta1, beta2 = group["betas_1d"]
        grads = [_grad(p) for p in params]
        states = [self.state[p] for p in params]
        for p, state in zip(params, states, strict=True):
            if "step" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(exp_avg, grads, 1.0 - beta1)
        _second_moment(exp_avg_sq, grads, beta2)
        lr = group["lr"] * group["lr_1d_scale"]
        _adam_step(
            params,
            exp_avg,
            exp_avg_sq,
            states,
            lr,
            beta1,
            beta2,
            group["eps"],
            group["weight_decay_1d"],
        )


class MARSAdamW(MARS):
    """MARS-AdamW: variance-reduced AdamW (see :class:`MARS` for the parameters)."""

    variant = "adamw"


class MARSLion(MARS):
    """MARS-Lion: sign of the variance-reduced momentum (see :class:`MARS`)."""

    variant = "lion"


class MARSShampoo(MARS):
    """MARS-Shampoo: orthogonalised variance-reduced momentum for matrices (see :class:`MARS`)."""

    variant = "shampoo"


def _check_group(owner: str, group: dict[str, Any]) -> None:
    """Raise SpecError naming the first out-of-range hyperparameter of ``group``."""

    def bad(name: str, rule: str, value: Any) -> SpecError:
        return SpecError(f"{owner}: {name} must be {rule}, got {value!r}")

    for name in ("lr", "eps", "weight_decay", "gamma", "lr_1d_scale", "weight_decay_1d"):
        value = group[name]
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise bad(name, "a finite number >= 0", value)
    for name in ("betas", "betas_1d"):
        betas = group[name]
        if (
            not isinstance(betas, tuple | list)
            or len(betas) != 2
            or not all(isinstance(b, int | float) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise bad(name, "two numbers in [0, 1)", betas)
    steps = group["ns_steps"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise bad("ns_steps", "an integer >= 1", steps)
    dtype = group["ns_dtype"]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise bad("ns_dtype", "a floating torch dtype", dtype)


@torch.no_grad()
def _swap(first: list[Tensor], second: list[Tensor]) -> None:
    """Exchange the values of paired tensors, one temporary tensor at a time."""
    for a, b in zip(first, second, strict=True):
        held = a.clone()
        a.copy_(b)
        b.copy_(held)


def _grad(p: Tensor) -> Tensor:
    assert p.grad is not None  # the caller keeps only parameters with a gradient
    return p.grad


def _second_moment(exp_avg_sq: list[Tensor], values: list[Tensor], beta2: float) -> None:
    torch._foreach_mul_(exp_avg_sq, beta2)
    torch._foreach_addcmul_(exp_avg_sq, values, values, 1.0 - beta2)


def _adam_step(
    params: list[Tensor],
    exp_avg: list[Tensor],
    exp_avg_sq: list[Tensor],
    states: list[dict[str, Any]],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> None:
    """Apply the bias-corrected AdamW step with decoupled weight decay to ``params``."""
    if weight_decay != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)
    # m̂/(√v̂ + ε) = (√b2/b1)·m/(√v + ε√b2) with bias corrections b1, b2: moving them into
    # the scalars saves torch.optim.AdamW's pass that divides √v.
    root_b2 = [math.sqrt(1.0 - beta2 ** s["step"]) for s in states]
    b1 = [1.0 - beta1 ** s["step"] for s in states]
    denom = torch._foreach_sqrt(exp_avg_sq)
    torch._foreach_add_(denom, [eps * r for r in root_b2])
    torch._foreach_addcdiv_(
        params, exp_avg, denom, [-lr * r / b for r, b in zip(root_b2, b1, strict=True)]
    )


def _orthogonalize(m: Tensor, steps: int, eps: float, dtype: torch.dtype) -> Tensor:
    """Approximate ``U Vᵀ`` of ``m = U Σ Vᵀ`` by Newton–Schulz, computed in ``dtype``."""
    x = m.to(dtype)
    x = x / (torch.linalg.vector_norm(x) + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T  # iterate on the smaller Gram matrix
    a, b, c = _NS_COEFFICIENTS
    for _ in range(steps):
        gram = x @ x.T
        # x ← a·x + (b·G + c·G²)·x, with the scalings fused into the matrix products
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x

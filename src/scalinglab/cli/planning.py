"""``scalinglab plan``, ``isoflop`` and ``params``: compute-optimal planning and model sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scalinglab.cli._common import console, fmt, note, print_json, print_table, user_errors
from scalinglab.cli.compute import load_table
from scalinglab.cli.data_options import ColumnOpt, JsonOpt, LossUnitOpt
from scalinglab.cli.main import app
from scalinglab.errors import SpecError
from scalinglab.fitting import Fit
from scalinglab.planning import ModelShape, compute_optimal, isoflop_analysis
from scalinglab.planning.optimal import PLAN_QUANTITIES


@app.command("plan")
@user_errors
def plan_command(
    fit_file: Annotated[Path, typer.Argument(help="A fit written by `scalinglab fit --out`.")],
    flops: Annotated[
        list[float] | None, typer.Option(help="Training budget in FLOPs (repeatable).")
    ] = None,
    flops_per_token_param: Annotated[
        float, typer.Option(help="k in C = k·N·D (6: forward + backward).")
    ] = 6.0,
    level: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    multiplier: Annotated[
        list[float] | None,
        typer.Option(help="Over-training fits: tokens per parameter M of the run at --flops."),
    ] = None,
    inference_tokens: Annotated[
        float | None,
        typer.Option(help="Over-training fits: tokens served; plans the cheapest M in total."),
    ] = None,
    loss: Annotated[
        float | None,
        typer.Option(
            "--loss", help="Over-training fits: the loss to reach (with --inference-tokens)."
        ),
    ] = None,
    inference_flops_per_token_param: Annotated[
        float, typer.Option(help="FLOPs per parameter per served token (2: a forward pass).")
    ] = 2.0,
    as_json: JsonOpt = False,
) -> None:
    """Compute-optimal model size, tokens, tokens per parameter and loss at each budget.

    With an over-training fit (laws overtraining, chinchilla_m): the loss at --flops and
    --multiplier, or with --inference-tokens the tokens per parameter that minimise training
    plus inference FLOPs at a target --loss (or the best loss of a --flops budget).
    """
    fit = Fit.load(fit_file)
    if fit.law.inputs == ("flops", "multiplier"):
        from scalinglab.cli.downstream import overtraining_plan

        overtraining_plan(
            fit,
            flops=flops,
            multiplier=multiplier,
            inference_tokens=inference_tokens,
            target_loss=loss,
            inference_flops_per_token_param=inference_flops_per_token_param,
            flops_per_token_param=flops_per_token_param,
            level=level,
            as_json=as_json,
        )
        return
    if multiplier or inference_tokens is not None or loss is not None:
        raise SpecError(
            "--multiplier, --inference-tokens and --loss need an over-training fit "
            "(scalinglab fit --law overtraining)"
        )
    if not flops:
        raise SpecError("give at least one budget with --flops (e.g. --flops 1e23)")
    plan = compute_optimal(fit, flops, flops_per_token_param=flops_per_token_param, level=level)
    if as_json:
        print_json(plan.to_dict())
        return
    rows = []
    for record in plan.to_records():
        for name in PLAN_QUANTITIES:
            label = "loss (law, confidence)" if name == "loss" and plan.ci else name
            row = {"flops": record["flops"], "quantity": label, "estimate": record[name]}
            if plan.ci:
                row["low"], row["high"] = record[f"{name}_lo"], record[f"{name}_hi"]
            rows.append(row)
        if "loss_new_run_lo" in record:
            rows.append(
                {
                    "flops": record["flops"],
                    "quantity": "loss (new run, prediction)",
                    "estimate": record["loss"],
                    "low": record["loss_new_run_lo"],
                    "high": record["loss_new_run_hi"],
                }
            )
    print_table(rows, title=f"compute-optimal plan ({plan.law} fit)")
    if plan.params_exponent is not None and plan.tokens_exponent is not None:
        line = f"N* ∝ C^{fmt(plan.params_exponent)}, D* ∝ C^{fmt(plan.tokens_exponent)}"
        if "params_exponent" in plan.ci:
            lo, hi = plan.ci["params_exponent"]
            line += f" (a in [{fmt(lo)}, {fmt(hi)}] at {fmt(plan.level)})"
        console.print(line)
    if plan.ci:
        console.print(f"intervals: {plan.n_samples} bootstrap replicates, level {fmt(level)}")
    for warning in plan.warnings:
        note("warning", warning)


@app.command("isoflop")
@user_errors
def isoflop_command(
    data: Annotated[Path, typer.Argument(help="CSV, Parquet, JSONL or run-store file of runs.")],
    budget_column: Annotated[str, typer.Option(help="Column with each run's FLOPs.")] = "flops",
    budget: Annotated[
        list[float] | None, typer.Option(help="A budget of the sweep (repeatable).")
    ] = None,
    rel_tol: Annotated[float, typer.Option(help="Relative tolerance to match budgets.")] = 0.1,
    dataset: Annotated[str | None, typer.Option(help="Dataset whose loss to use.")] = None,
    drop_invalid: Annotated[
        bool, typer.Option(help="Skip budgets without an interior minimum instead of failing.")
    ] = False,
    level: Annotated[float, typer.Option(help="Confidence level of the exponents.")] = 0.95,
    column: ColumnOpt = None,
    loss_unit: LossUnitOpt = "nats",
    as_json: JsonOpt = False,
) -> None:
    """IsoFLOP analysis (Chinchilla approach 2): a parabola per budget, power laws in C."""
    result = isoflop_analysis(
        load_table(data, column, loss_unit),
        budget_column=budget_column,
        budgets=budget,
        rel_tol=rel_tol,
        dataset=dataset,
        drop_invalid=drop_invalid,
        level=level,
    )
    if as_json:
        print_json(result.to_dict())
        return
    print_table(
        [{str(k): v for k, v in row.items()} for row in result.minima.to_dict(orient="records")],
        title=f"isoFLOP minima ({data.name})",
        columns=["flops", "runs", "sizes", "params_opt", "tokens_opt", "loss_opt"],
    )
    for name, law in (("N_opt", result.params), ("D_opt", result.tokens)):
        lo, hi = law.exponent_ci
        console.print(
            f"{name} = {fmt(law.coefficient)} · C^{fmt(law.exponent)}"
            f"  (exponent {fmt(level)} interval [{fmt(lo)}, {fmt(hi)}])"
        )
    for warning in result.warnings:
        note("warning", warning)


@app.command("params")
@user_errors
def params_command(
    d_model: Annotated[int, typer.Option(help="Width of the residual stream.")],
    layers: Annotated[int, typer.Option(help="Transformer blocks.")],
    vocab: Annotated[int, typer.Option(help="Vocabulary size.")],
    context: Annotated[int, typer.Option(help="Sequence length.")],
    heads: Annotated[int | None, typer.Option(help="Attention heads (default d_model/64).")] = None,
    kv_heads: Annotated[
        int | None, typer.Option(help="Key/value heads for grouped-query attention.")
    ] = None,
    d_ff: Annotated[int | None, typer.Option(help="MLP hidden width.")] = None,
    ffn_mult: Annotated[float, typer.Option(help="MLP width / d_model without --d-ff.")] = 4.0,
    tied: Annotated[
        bool, typer.Option("--tied/--untied", help="Head shares the token embedding.")
    ] = True,
    mlp: Annotated[str, typer.Option(help="gelu or swiglu.")] = "gelu",
    positions: Annotated[str, typer.Option(help="learned, rotary or none.")] = "learned",
    norm: Annotated[str, typer.Option(help="layernorm or rmsnorm.")] = "layernorm",
    bias: Annotated[
        bool, typer.Option("--bias/--no-bias", help="Biases in linear layers and LayerNorm.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Total, embedding and non-embedding parameters, and training FLOPs per token."""
    shape = ModelShape(
        d_model=d_model,
        layers=layers,
        vocab=vocab,
        context=context,
        heads=heads,
        kv_heads=kv_heads,
        ffn_mult=ffn_mult,
        d_ff=d_ff,
        tied_embeddings=tied,
        positions=positions,  # type: ignore[arg-type]  # checked by ModelShape
        mlp=mlp,  # type: ignore[arg-type]
        bias=bias,
        norm=norm,  # type: ignore[arg-type]
    )
    count, flops = shape.param_count(), shape.flop_count()
    if as_json:
        print_json({"params": count.to_dict(), "flops_per_token": flops.to_dict()})
        return
    print_table(
        [
            {"count": "total params", "value": count.total},
            {"count": "embedding params", "value": count.embedding},
            {"count": "non-embedding params", "value": count.nonembedding},
            {"count": "params per layer", "value": count.per_layer.total},
            {"count": "training FLOPs/token (exact)", "value": flops.training},
            {"count": "6N FLOPs/token", "value": flops.six_n},
            {"count": "6N non-embedding FLOPs/token", "value": flops.six_n_nonembedding},
        ],
        title=f"d_model {d_model}, {layers} layers, vocab {vocab}, context {context}",
    )

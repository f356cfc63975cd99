"""``scalinglab example``: write example data for trying every command (no download)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from scalinglab.cli._common import check_outputs, console, print_json, print_table, user_errors
from scalinglab.cli.data_options import JsonOpt
from scalinglab.cli.main import app
from scalinglab.errors import SpecError


class ExampleKind(StrEnum):
    """What ``scalinglab example`` writes."""

    compute = "compute"
    curves = "curves"
    transfer = "transfer"
    backtest = "backtest"
    downstream = "downstream"


#: the files of the curves example: our name → the file of Luo et al.'s 100M model
CURVE_FILES = {
    "constant.csv": "constant_24000.csv",
    "cosine.csv": "cosine_24000.csv",
    "wsd.csv": "wsd_20000_24000.csv",
    "wsd_linear.csv": "wsdld_20000_24000.csv",
    "constant_72000.csv": "constant_72000.csv",
    "cosine_72000.csv": "cosine_72000.csv",
    "wsdcon_3.csv": "wsdcon_3.csv",
    "wsdcon_9.csv": "wsdcon_9.csv",
    "wsdcon_18.csv": "wsdcon_18.csv",
}

LUO_WHAT = "Luo et al. 2025, 100M model"

#: the files of the downstream example (Gadre et al. 2024's testbed, its largest models kept out)
DOWNSTREAM_FILES = {
    "models.csv": "Gadre et al. 2024, 98 open_lm models: sizes, tokens, 8 validation losses",
    "evals.csv": "the same models' accuracy on 46 downstream tasks, with chance levels",
}


def write_example(
    kind: ExampleKind, out_dir: Path, *, noise: float, seed: int, out: Path | None = None
) -> list[dict[str, Any]]:
    """Write the files of one example kind under ``out_dir``; one record per file.

    ``out`` names the compute example's one table instead (``.csv`` or ``.parquet``).
    """
    import gzip
    from importlib.resources import files

    from scalinglab import examples

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[dict[str, Any]] = []

    def copy_shipped(
        folder: str, shipped: Mapping[str, tuple[str, str]], licence: tuple[str, str]
    ) -> None:
        """Copy files of ``example_data/folder`` (ours → (theirs, what); ``.gz`` unpacked)."""
        source = files("scalinglab") / "example_data" / folder
        for ours, (theirs, what) in shipped.items():
            content = (source / theirs).read_bytes()
            if theirs.endswith(".gz"):
                content = gzip.decompress(content)
            path = out_dir / ours
            path.write_bytes(content)
            rows = content.count(b"\n") - 1
            written.append({"file": str(path), "rows": rows, "what": what, "truth": None})
        path = out_dir / licence[0]
        path.write_bytes((source / "LICENSE").read_bytes())
        written.append({"file": str(path), "rows": 0, "what": licence[1], "truth": None})

    def table(name: str | Path, frame: Any, what: str, truth: Any) -> None:
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        written.append({"file": str(path), "rows": len(frame), "what": what, "truth": truth})

    if kind is ExampleKind.compute:
        table(
            out or "runs.csv",
            examples.isoflop_sweep(noise=noise, seed=seed),
            "isoFLOP sweep, 7 budgets x 9 sizes, final losses",
            examples.CHINCHILLA_TRUTH,
        )
    elif kind is ExampleKind.curves:
        copy_shipped(
            "luo2025_100m",
            {
                ours: (theirs, f"{LUO_WHAT}, schedule {theirs.removesuffix('.csv')}")
                for ours, theirs in CURVE_FILES.items()
            },
            ("LICENSE-luo2025.txt", "MIT licence of the curves"),
        )
    elif kind is ExampleKind.transfer:
        table(
            "sweep.csv",
            examples.transfer_sweep(noise=noise / 2, seed=seed),
            "2 training corpora (web, code) x 40 runs, losses on train, web-val, code-val",
            examples.TRANSFER_SWEEP_TRUTH,
        )
    elif kind is ExampleKind.downstream:
        copy_shipped(
            "gadre2024_downstream",
            {name: (f"{name}.gz", what) for name, what in DOWNSTREAM_FILES.items()},
            ("LICENSE-gadre2024.txt", "MIT licence of the models"),
        )
    else:
        families = 6
        table(
            "checkpoints.csv",
            examples.checkpoint_families(families, noise=noise / 2, seed=seed),
            f"{families} families x 5 sizes, 24 checkpoints per run",
            {f"family-{i + 1}": examples.family_truth(i) for i in range(families)},
        )
        table(
            "my_runs.csv",
            examples.checkpoint_families(
                1, sizes=(1e8, 2.5e8, 6e8), prefix="my-runs", noise=noise / 2, seed=seed + 1
            ),
            "your own family: 3 sizes, 24 checkpoints per run",
            examples.family_truth(0),
        )
    return written


@app.command("example")
@user_errors
def example_command(
    kind: Annotated[
        ExampleKind,
        typer.Option(
            help="compute: runs.csv, an isoFLOP sweep from a known Chinchilla law; curves: "
            "constant.csv, cosine.csv, wsd.csv, … (Luo et al. 2025's loss curves, MIT); "
            "transfer: sweep.csv, two corpora measured on three datasets, known loss-to-loss "
            "laws; backtest: checkpoints.csv (6 families) and my_runs.csv, known laws; "
            "downstream: models.csv and evals.csv (Gadre et al. 2024's testbed, MIT)."
        ),
    ] = ExampleKind.compute,
    out_dir: Annotated[Path, typer.Option(help="Folder to write the files in.")] = Path("."),
    out: Annotated[
        Path | None,
        typer.Option(help="--kind compute only: write the table here (.csv or .parquet)."),
    ] = None,
    noise: Annotated[float, typer.Option(help="Lognormal noise on generated losses.")] = 0.01,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Write example data with a known truth, for trying every command."""
    if noise < 0:
        raise SpecError(f"--noise must be non-negative, got {noise}")
    if out is not None and kind is not ExampleKind.compute:
        raise SpecError(
            f"--out names the one file of --kind compute; --kind {kind} writes several "
            "files: give --out-dir"
        )
    if out is not None and out.suffix not in (".csv", ".parquet"):
        raise SpecError(f"--out must end in .csv or .parquet, got '{out.name}'")
    check_outputs(files={"--out": out}, folders={"--out-dir": out_dir})
    written = write_example(kind, out_dir, noise=noise, seed=seed, out=out)
    if as_json:
        print_json({"kind": kind.value, "files": written})
        return
    print_table(
        [{k: v for k, v in w.items() if k != "truth"} for w in written],
        title=f"example data ({kind.value})",
    )
    for w in written:
        if w["truth"] is not None:
            console.print(f"truth of {Path(w['file']).name}: {w['truth']}")

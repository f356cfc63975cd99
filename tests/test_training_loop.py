"""The training loop: observations in the store, determinism, exact resume after SIGKILL,
and bad configurations rejected before the first step."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scalinglab.data import RunStore
from scalinglab.errors import SpecError
from scalinglab.schedules import parse_schedule, resolve_schedule
from scalinglab.training.checkpoint import checkpoint_path, load_checkpoint
from scalinglab.training.config import TrainConfig
from scalinglab.training.model import GPT, count_parameters
from scalinglab.training.trainer import train


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny(tmp_path: Path, name: str = "run", **changes: Any) -> TrainConfig:
    """A model and budget small enough to train in about a second on one thread."""
    settings: dict[str, Any] = {
        "d_model": 16,
        "layers": 1,
        "heads": 2,
        "context": 16,
        "batch_size": 4,
        "steps": 40,
        "schedule": "cosine:peak=1e-2,warmup=0.1,final=1e-3",
        "train_data": "python-docs",
        "eval_data": ["python-docs"],
        "eval_tokens": 512,
        "eval_every": 10,
        "eval_log_points": 2,
        "threads": 1,
        "device": "cpu",
        "run_id": name,
        "store": str(tmp_path / "runs.sqlite"),
        "out_dir": str(tmp_path / name),
    }
    settings.update(changes)
    return TrainConfig.from_dict(settings)


def test_run_writes_one_observation_per_eval_step_and_dataset(tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_text("".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(3000)))
    config = tiny(tmp_path, eval_data=["python-docs", str(other)], train_loss_window=9)
    result = train(config)
    store = RunStore(config.store)  # type: ignore[arg-type]
    every_step = store.observations(run_ids=["run"])
    assert store.get_run("run")["status"] == "finished"
    assert sorted(set(every_step["dataset"])) == ["other", "python-docs", "train"]
    obs = every_step[every_step["dataset"] != "train"]
    steps = sorted(set(obs["step"].astype(int)))
    assert steps == config.eval_steps() == [1, 3, 10, 20, 30, 40]
    params = count_parameters(GPT(config.model_config(256)))
    assert (obs["params"] == params).all() and result.params == params
    assert np.array_equal(obs["tokens"], obs["step"] * 64)
    assert np.allclose(obs["flops"], 6 * params * obs["tokens"])
    lrs = parse_schedule(config.schedule_spec()).lr(obs["step"].to_numpy() - 1)
    assert np.allclose(obs["lr"], lrs)
    docs = obs[obs["dataset"] == "python-docs"].sort_values("step")["loss"].to_numpy()
    assert docs[-1] < docs[0] - 0.5  # it learns
    assert result.final_loss["python-docs"] == docs[-1]
    assert load_checkpoint(checkpoint_path(config.checkpoint_dir))["step"] == 40  # type: ignore[index]


def test_training_loss_of_every_step_smoothed_by_a_centred_window(tmp_path: Path) -> None:
    raw = train(tiny(tmp_path, "raw", train_loss_window=1)).observations
    smooth = train(tiny(tmp_path, "smooth", train_loss_window=9)).observations
    none = train(tiny(tmp_path, "none")).observations  # not written by default
    assert "train" not in set(none["dataset"])
    raw_loss = raw[raw["dataset"] == "train"].sort_values("step")
    smooth_loss = smooth[smooth["dataset"] == "train"].sort_values("step")
    # the loss is computed before each update: of the weights after 0 … 39 updates
    assert list(raw_loss["step"]) == list(smooth_loss["step"]) == list(range(1, 40))
    lrs = parse_schedule(resolve_schedule("cosine:peak=1e-2,warmup=0.1,final=1e-3", 40))
    assert np.allclose(smooth_loss["lr"], lrs.lr(np.arange(39)))
    raw_values = np.r_[np.nan, raw_loss["loss"].to_numpy()]  # step 0 has no row
    for step in (5, 6, 20, 35, 39):
        half = min(4, 39 - step)
        window = raw_values[step - half : step + half + 1]
        assert smooth_loss["loss"].iloc[step - 1] == pytest.approx(window.mean(), rel=1e-6)
    with pytest.raises(SpecError, match="train_loss_window"):
        tiny(tmp_path, train_loss_window=4)


def test_same_seed_gives_identical_runs_and_another_seed_does_not(tmp_path: Path) -> None:
    first = train(tiny(tmp_path, "a", steps=12))
    second = train(tiny(tmp_path, "b", steps=12))
    other = train(tiny(tmp_path, "c", steps=12, seed=1))
    assert first.final_loss == second.final_loss
    assert other.final_loss != first.final_loss


_CHILD = """
import json, os, signal, sys
from scalinglab.training.config import TrainConfig
from scalinglab.training.trainer import train

config = TrainConfig.from_dict(json.loads(sys.argv[1]))
kill_at = int(sys.argv[2])

def on_step(step, metrics):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

train(config, on_step=on_step)
"""


def test_run_killed_with_sigkill_resumes_to_the_same_bits(tmp_path: Path) -> None:
    # with the smoothed training loss, whose pending window travels in the checkpoint
    config = tiny(tmp_path, "killed", checkpoint_every=10, train_loss_window=9)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(config.to_dict()), "25"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    state = load_checkpoint(checkpoint_path(config.checkpoint_dir))
    assert state is not None and state["step"] == 20
    store = RunStore(config.store)  # type: ignore[arg-type]
    assert store.get_run("killed")["status"] == "running"

    resumed = train(config)
    straight = train(tiny(tmp_path, "straight", checkpoint_every=10, train_loss_window=9))
    assert resumed.resumed_from == 20
    assert resumed.final_loss == straight.final_loss  # bit for bit on CPU
    curves = {
        run: store.observations(run_ids=[run])[["step", "dataset", "loss"]].reset_index(drop=True)
        for run in ("killed", "straight")
    }
    assert curves["killed"].equals(curves["straight"])
    assert store.get_run("killed")["status"] == "finished"


def test_finished_run_is_not_trained_again(tmp_path: Path) -> None:
    config = tiny(tmp_path, steps=10)
    first = train(config)
    again = train(config)
    assert again.resumed_from == 10 and again.seconds == 0.0
    assert again.final_loss == first.final_loss


def test_checkpoint_of_another_config_is_refused(tmp_path: Path) -> None:
    train(tiny(tmp_path, steps=10))
    with pytest.raises(SpecError, match="different configuration"):
        train(tiny(tmp_path, steps=10, seed=3))


def test_mars_exact_mode_and_swiglu_rotary_model_train(tmp_path: Path) -> None:
    config = tiny(
        tmp_path,
        steps=6,
        optimizer="mars-adamw",
        optimizer_kwargs={"mode": "exact"},
        mlp="swiglu",
        positions="rotary",
        norm="rmsnorm",
        bias=False,
        schedule="wsd:peak=3e-3,warmup=0.2,decay=0.5,final=3e-4",
    )
    result = train(config)
    assert np.isfinite(result.final_loss["python-docs"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "adamm"}, "unknown optimizer 'adamm'"),
        ({"optimizer_kwargs": {"betas": (0.9, 1.5)}}, "adamw"),
        ({"d_model": 30, "heads": 4}, "heads \\(4\\) must divide d_model \\(30\\)"),
        ({"steps": None, "tokens": 32}, "smaller than one batch"),
        ({"steps": None}, "exactly one budget"),
        ({"schedule": "cosine:peak=1e-3,warmpu=10"}, "did you mean 'warmup'"),
        ({"schedule": "cosine:peak=1e-3,total=99"}, "has total=99 but the run has 40"),
        ({"eval_data": []}, "at least one corpus"),
        ({"lr": 1e-3}, "unknown setting\\(s\\) lr"),
    ],
)
def test_bad_configs_are_rejected_before_training(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        tiny(tmp_path, **changes)


def test_empty_corpus_fails_before_the_first_step(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("")
    config = tiny(tmp_path, train_data=str(corpus), eval_data=[str(corpus)])
    with pytest.raises(SpecError, match="is empty"):
        train(config)
    assert not Path(config.checkpoint_dir).exists()
    assert not Path(config.store).exists()  # type: ignore[arg-type]


def test_validation_split_shorter_than_a_sequence_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(20):
        (folder / f"note{i}.txt").write_text(f"note {i}: " + "words " * 50 + "\n")
    config = tiny(tmp_path, eval_data=[str(folder)], context=1024)
    with pytest.raises(SpecError, match=r"validation split of corpus .* one sequence needs 1025"):
        train(config)


def test_schedule_fractions_and_total_are_resolved() -> None:
    spec = resolve_schedule("wsd:peak=1e-3,warmup=0.05,decay_start=0.8,final=1e-4", 200)
    assert spec == "wsd:peak=1e-3,warmup=10,decay_start=160,final=1e-4,total=200"
    milestones = resolve_schedule("multistep:peak=1e-3,milestones=0.5/0.75", 100)
    assert "milestones=50/75" in milestones


def test_eval_steps_are_log_spaced_then_regular() -> None:
    config = TrainConfig(steps=1000, eval_every=100, eval_log_points=4)
    steps = config.eval_steps()
    assert steps[:4] == [1, 4, 16, 63] and steps[4:] == list(range(100, 1001, 100))
    assert config.checkpoint_steps() == list(range(100, 1001, 100))


def test_bpe_tokenizer_sets_the_vocabulary_and_bf16_autocast_runs_on_cpu(tmp_path: Path) -> None:
    config = tiny(tmp_path, steps=4, tokenizer="bpe:512", dtype="bf16")
    result = train(config)
    assert result.params == count_parameters(GPT(config.model_config(512)))
    assert np.isfinite(result.final_loss["python-docs"])

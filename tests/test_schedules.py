"""Learning-rate schedules: shapes, spec strings, areas, logs, torch factor."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglab.errors import InputError, SpecError
from scalinglab.schedules import (
    SCHEDULE_KINDS,
    TabulatedSchedule,
    lr_areas,
    parse_schedule,
    read_logged_lr,
    schedule_from_lr,
    torch_lambda,
    warmup_end,
)
from scalinglab.schedules.reference import luo2025_spec

SPECS = [
    "constant:peak=3e-4,total=24000,warmup=2160",
    "cosine:peak=3e-4,total=24000,warmup=2160,final=3e-5",
    "linear:peak=1e-3,total=5000,warmup=100,warmup_shape=constant,warmup_lr=1e-4",
    "wsd:peak=3e-4,warmup=2160,total=24000,decay_start=20000,shape=exp,final=3e-5",
    "wsd:peak=3e-4,total=24000,decay=0.2,shape=sqrt",
    "wsd:peak=3e-4,total=1000,decay_start=800,shape=cosine",
    "multistep:peak=3e-4,warmup=2160,total=16000,milestones=8000,values=3e-5",
    "multistep:peak=1.0,total=300,milestones=100/200,gamma=0.5",
    "invsqrt:peak=1e-3,total=100000,warmup=4000",
    "cyclic:peak=3e-4,total=30000,period=10000,final=3e-5,cycle_decay=0.5",
]


def test_every_kind_has_an_example() -> None:
    assert {s.split(":")[0] for s in SPECS} == set(SCHEDULE_KINDS)


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trip_and_basic_shape(spec: str) -> None:
    sched = parse_schedule(spec)
    assert parse_schedule(sched.spec()) == sched
    lr = sched.array()
    assert lr.shape == (sched.total,)
    assert np.all(lr >= 0) and np.isclose(lr.max(), sched.peak)
    assert sched.warmup_steps == sched.warmup
    # steps outside the run keep the end values
    np.testing.assert_array_equal(sched.lr([-5, sched.total + 7]), lr[[0, -1]])


def test_shapes_at_known_points() -> None:
    cos = parse_schedule("cosine:peak=1,total=1100,warmup=100,final=0.1")
    np.testing.assert_allclose(cos.lr([0, 50, 100, 600, 1099]), [0, 0.5, 1, 0.55, 0.1], atol=1e-5)
    lin = parse_schedule("linear:peak=1,total=100,final=0.2")
    np.testing.assert_allclose(lin.lr([0, 50]), [1, 0.6])
    half = {
        "linear": 0.55,
        "cosine": 0.55,
        "exp": math.sqrt(0.1),
        "sqrt": 0.1 + 0.9 * (1 - 0.5**0.5),
    }
    for shape, value in half.items():
        wsd = parse_schedule(f"wsd:peak=1,total=200,decay_start=100,shape={shape},final=0.1")
        np.testing.assert_allclose(wsd.lr([99, 100, 150]), [1, 1, value])
    ms = parse_schedule("multistep:peak=1,total=300,milestones=100/200,gamma=0.5")
    np.testing.assert_allclose(ms.lr([99, 100, 199, 200]), [1, 0.5, 0.5, 0.25])
    inv = parse_schedule("invsqrt:peak=1,total=10000,warmup=100")
    np.testing.assert_allclose(inv.lr([100, 400]), [1, 0.5])
    cyc = parse_schedule("cyclic:peak=1,total=300,period=100,cycle_decay=0.5")
    np.testing.assert_allclose(cyc.lr([0, 50, 100, 150]), [1, 0.5, 0.5, 0.25])
    const_warm = parse_schedule(
        "constant:peak=1,total=100,warmup=10,warmup_shape=constant,warmup_lr=0.1"
    )
    np.testing.assert_allclose(const_warm.lr([0, 9, 10]), [0.1, 0.1, 1])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("cosin:peak=3e-4,total=100", "unknown kind 'cosin' (did you mean 'cosine'?)"),
        ("cosine:peak=3e-4,totl=100", "unknown key 'totl' for cosine (did you mean 'total'?)"),
        ("cosine:peak=-3e-4,total=100", "peak=-0.0003 is negative"),
        ("cosine:peak=3e-4,total=100,final=-1e-5", "final=-1e-05 is negative"),
        (
            "wsd:peak=3e-4,total=24000,decay_start=30000",
            "decay_start=30000 is past the end of the run (total=24000)",
        ),
        ("wsd:peak=3e-4,total=100,decay=0.2,shape=expo", "(did you mean 'exp'?)"),
        ("wsd:peak=3e-4,total=100", "exactly one of decay_start"),
        ("wsd:peak=3e-4,total=100,decay=0.2,shape=exp", "needs final > 0"),
        ("cosine:peak=abc,total=100", "peak='abc' is not a number"),
        ("cosine:peak=3e-4", "missing total"),
        ("cosine:peak=3e-4,total=10.5", "whole number of steps"),
        ("cosine:peak=3e-4,total=100,warmup=100", "warmup=100 must be in [0, total)"),
        ("constant:peak=1,total=100,warmup=10,warmup_shape=constant", "needs warmup_lr > 0"),
        ("multistep:peak=1,total=300,milestones=200/100", "must be increasing"),
        ("multistep:peak=1,total=300,milestones=100,values=2", "values=2.0 is above peak"),
        ("cosine:peak=1,total=100,peak=2", "given twice"),
        ("cosine:peak", "is not key=value"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_schedule(spec)
    assert message in str(err.value)


def _areas_by_loop(lr: np.ndarray, decay: float, start: int) -> tuple[np.ndarray, np.ndarray]:
    s1, s2 = np.zeros_like(lr), np.zeros_like(lr)
    m = 0.0
    for i in range(lr.size):
        if i > start:
            m = decay * m + (lr[i - 1] - lr[i])
        s1[i] = (s1[i - 1] if i else 0.0) + lr[i]
        s2[i] = (s2[i - 1] if i else 0.0) + m
    return s1, s2


@pytest.mark.parametrize("spec", SPECS[:4] + SPECS[6:7] + SPECS[-1:])
def test_areas_match_the_recursion(spec: str) -> None:
    lr = parse_schedule(spec).lr(np.arange(0, 30000, 7))  # coarse copy: keeps the loop fast
    start = warmup_end(lr)
    s1, s2 = lr_areas(lr, 0.99, anneal_start=start)
    e1, e2 = _areas_by_loop(lr, 0.99, start)
    np.testing.assert_allclose(s1, e1, rtol=1e-12)
    np.testing.assert_allclose(s2, e2, rtol=1e-9, atol=1e-15)


def test_annealing_area_closed_form_for_one_drop() -> None:
    lr = np.array([1.0] * 10 + [0.5] * 20)
    _, s2 = lr_areas(lr, 0.9)
    # m_i = 0.5·0.9^(i−10) from the drop at step 10, so S2 is a geometric sum
    expected = 0.5 * (1 - 0.9 ** (np.arange(30) - 9)) / 0.1
    np.testing.assert_allclose(s2[10:], expected[10:])
    assert np.all(s2[:10] == 0)
    with pytest.raises(SpecError, match="decay"):
        lr_areas(lr, 1.0)


def test_a_million_steps_well_under_a_second() -> None:
    sched = parse_schedule("cosine:peak=3e-4,total=1000000,warmup=2000,final=3e-5")
    lr = sched.array()
    start = time.perf_counter()
    s1, s2 = lr_areas(lr, anneal_start=sched.warmup_steps)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5, f"S1/S2 for 1e6 steps took {elapsed:.3f} s"
    assert s1[-1] == pytest.approx(lr.sum())
    assert s2[-1] > 0


def test_schedule_from_logged_lr() -> None:
    exact = parse_schedule("linear:peak=1,total=1000,warmup=100,final=0.1")
    steps = np.arange(50, 1000, 50)
    reading = read_logged_lr(exact.lr(steps)[::-1], steps[::-1], total=1000)
    # linear pieces with knots on the logged steps are rebuilt exactly; the warmup ramp seen
    # in the first rows is extrapolated back to 0
    np.testing.assert_allclose(reading.schedule.array()[: steps[-1] + 1], exact.array()[:951])
    assert reading.convention == "before" and reading.interval == 50 and reading.notes == ()
    per_step = schedule_from_lr([0.1, 0.2, 0.3])
    assert isinstance(per_step, TabulatedSchedule) and per_step.total == 3


def test_a_step_drop_between_sparse_rows_is_a_step_at_the_roundest_update() -> None:
    exact = parse_schedule("multistep:peak=3e-4,warmup=100,total=3000,milestones=1500,values=3e-5")
    steps = np.arange(64, 3000, 64)  # 1472 and 1536 around the drop
    reading = read_logged_lr(exact.lr(steps), steps)
    np.testing.assert_allclose(reading.schedule.lr(np.arange(2944)), exact.lr(np.arange(2944)))
    assert any("between updates 1472 and 1536" in n and "update 1500" in n for n in reading.notes)
    # linear interpolation would have smeared the drop over the 64 steps
    assert reading.schedule.lr(1499) == 3e-4 and reading.schedule.lr(1500) == 3e-5


@pytest.mark.parametrize("logged", ["before", "after"])
def test_the_convention_is_read_from_where_sudden_changes_fall(logged: str) -> None:
    exact = parse_schedule(
        "multistep:peak=3e-4,warmup=2000,total=16000,milestones=8000,values=9e-5"
    )
    steps = np.arange(2048, 16000, 128)  # a row at 8064 only: before, it shows the drop
    rates = exact.lr(steps - 1 if logged == "after" else steps)
    steps, rates = np.r_[steps, 8000], np.r_[rates, exact.lr(7999 if logged == "after" else 8000)]
    reading = read_logged_lr(rates, steps)
    assert reading.convention == logged
    span = np.arange(2048, 15900)  # before its first row the log cannot tell
    np.testing.assert_allclose(reading.schedule.lr(span), exact.lr(span))
    with pytest.raises(InputError, match="cannot be at step 0"):
        read_logged_lr([0.0, 1e-3], [0, 10], convention="after")
    assert read_logged_lr([0.0, 1e-3], [0, 10]).convention == "before"


def test_a_log_that_starts_mid_run_says_what_it_assumed() -> None:
    exact = parse_schedule("cosine:peak=3e-4,warmup=2000,total=24000,final=3e-5")
    steps = np.arange(6000, 24000, 100)
    reading = read_logged_lr(exact.lr(steps), steps)
    assert len(reading.notes) == 1
    assert "starts at step 6000" in reading.notes[0] and "linear warmup from 0" in reading.notes[0]
    # a log that starts in its warmup shows the ramp: extrapolated, nothing to report
    early = np.arange(1000, 24000, 100)
    assert read_logged_lr(exact.lr(early), early).notes == ()


def test_a_sparse_cosine_and_a_warmup_that_ends_between_rows() -> None:
    cosine = parse_schedule("cosine:peak=1e-3,warmup=0,total=20000,final=1e-4")
    steps = np.arange(0, 20000, 500)
    rebuilt = read_logged_lr(cosine.lr(steps), steps).schedule.lr(np.arange(19501))
    assert np.abs(rebuilt - cosine.lr(np.arange(19501))).max() < 2e-3 * 1e-3  # 0.2% of the peak
    # scalinglab's trainer logs after the update, early steps then every tenth of the run
    wsd = parse_schedule("wsd:peak=3e-3,warmup=25,total=512,decay_start=410,final=3e-4")
    rows = np.array([1, 3, 10, 51, 102, 153, 204, 255, 306, 357, 408, 459, 510, 512])
    rebuilt = read_logged_lr(wsd.lr(rows - 1), rows, convention="after").schedule.lr(np.arange(512))
    # the warmup ramp goes on to the peak between rows 10 and 51 (a kink, not a slope)
    np.testing.assert_allclose(rebuilt[:408], wsd.lr(np.arange(408)))
    assert np.abs(np.cumsum(rebuilt)[1:] / np.cumsum(wsd.array())[1:] - 1).max() < 0.002


def test_logged_lr_errors_name_the_row() -> None:
    with pytest.raises(InputError) as err:
        schedule_from_lr([1e-3, -1e-3, 1e-3], [0, 1, 2], source="run.csv")
    assert str(err.value) == (
        "run.csv, row 2, column 'lr': learning rate must be finite and >= 0 (value: -0.001)"
    )
    with pytest.raises(InputError, match="step logged twice"):
        schedule_from_lr([1e-3, 2e-3], [5, 5])
    with pytest.raises(InputError, match="every learning rate is zero"):
        TabulatedSchedule([0.0, 0.0])


def test_torch_lambda_drives_lambda_lr() -> None:
    torch = pytest.importorskip("torch", reason="torch is the trainer's optional extra")
    sched = parse_schedule("wsd:peak=3e-3,total=60,warmup=10,decay=0.3,shape=cosine,final=3e-4")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)
    from scalinglab.schedules import torch_scheduler

    scheduler = torch_scheduler(opt, sched)
    seen = []
    for _ in range(65):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    np.testing.assert_allclose(seen, sched.lr(np.arange(65)), rtol=1e-12)
    assert torch_lambda(sched)(10) == 1.0


def test_reference_schedules_rebuild_the_logged_lr(shared_data: Path) -> None:
    for path in sorted((shared_data / "lr_schedules").glob("csv_*/*.csv")):
        df = pd.read_csv(path)
        sched = parse_schedule(luo2025_spec(path.stem))
        np.testing.assert_allclose(sched.lr(df["step"]), df["lr"], rtol=1e-12, err_msg=path.name)
    with pytest.raises(SpecError, match="not a curve name"):
        luo2025_spec("cosine_fast")

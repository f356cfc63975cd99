"""Learning-rate schedules: per-step arrays, spec strings, torch schedulers, S1/S2 areas.

>>> from scalinglab.schedules import parse_schedule, lr_areas
>>> sched = parse_schedule("wsd:peak=3e-4,warmup=2160,total=24000,decay=0.2,shape=exp,final=3e-5")
>>> s1, s2 = lr_areas(sched.array(), anneal_start=sched.warmup_steps)
"""

from scalinglab.schedules.areas import (
    DEFAULT_DECAY,
    MAX_SCHEDULE_STEPS,
    LearningRates,
    check_schedule_steps,
    drop_sums_at,
    lr_areas,
    lr_areas_at,
    lr_drops,
    peak_step,
    warmup_end,
)
from scalinglab.schedules.base import (
    COOLDOWN_SHAPES,
    SCHEDULE_KINDS,
    WARMUP_SHAPES,
    ConstantSchedule,
    CosineSchedule,
    CyclicCosineSchedule,
    InverseSqrtSchedule,
    LinearSchedule,
    MultiStepSchedule,
    ParametricSchedule,
    Schedule,
    TabulatedSchedule,
    WSDSchedule,
    check_learning_rates,
)
from scalinglab.schedules.logged import (
    LR_CONVENTIONS,
    LoggedSchedule,
    LrConvention,
    read_logged_lr,
    schedule_from_lr,
)
from scalinglab.schedules.optimize import (
    Candidate,
    ScheduleChoice,
    choose_schedule,
    optimize_monotone,
    wsd_grid,
)
from scalinglab.schedules.spec import parse_schedule, resolve_schedule
from scalinglab.schedules.torch_factor import torch_lambda, torch_scheduler

__all__ = [
    "COOLDOWN_SHAPES",
    "DEFAULT_DECAY",
    "LR_CONVENTIONS",
    "MAX_SCHEDULE_STEPS",
    "SCHEDULE_KINDS",
    "WARMUP_SHAPES",
    "Candidate",
    "ConstantSchedule",
    "CosineSchedule",
    "CyclicCosineSchedule",
    "InverseSqrtSchedule",
    "LearningRates",
    "LinearSchedule",
    "LoggedSchedule",
    "LrConvention",
    "MultiStepSchedule",
    "ParametricSchedule",
    "Schedule",
    "ScheduleChoice",
    "TabulatedSchedule",
    "WSDSchedule",
    "check_learning_rates",
    "check_schedule_steps",
    "choose_schedule",
    "drop_sums_at",
    "lr_areas",
    "lr_areas_at",
    "lr_drops",
    "optimize_monotone",
    "parse_schedule",
    "peak_step",
    "read_logged_lr",
    "resolve_schedule",
    "schedule_from_lr",
    "torch_lambda",
    "torch_scheduler",
    "warmup_end",
    "wsd_grid",
]

"""Read a schedule from a short spec string: ``kind:key=value,key=value``.

Examples::

    constant:peak=3e-4,total=24000,warmup=2160
    cosine:peak=3e-4,total=24000,warmup=2160,final=3e-5
    wsd:peak=3e-4,warmup=2160,total=24000,decay_start=20000,shape=exp,final=3e-5
    wsd:peak=3e-4,total=24000,decay=0.2,shape=sqrt
    multistep:peak=3e-4,warmup=2160,total=16000,milestones=8000,values=3e-5
    invsqrt:peak=1e-3,total=100000,warmup=4000
    cyclic:peak=3e-4,total=30000,period=10000,final=3e-5,cycle_decay=0.5

Lists (``milestones``, ``values``) separate their items with ``/``. Keys are the fields of the
kind's class in :mod:`scalinglab.schedules.base`.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

from scalinglab.errors import SpecError
from scalinglab.schedules.base import SCHEDULE_KINDS, ParametricSchedule


def parse_schedule(spec: str) -> ParametricSchedule:
    """Build a schedule from its spec string.

    Parameters
    ----------
    spec
        ``kind:key=value,...`` where kind is one of :data:`SCHEDULE_KINDS` (``constant``,
        ``cosine``, ``linear``, ``wsd``, ``multistep``, ``invsqrt``, ``cyclic``).

    Returns
    -------
    ParametricSchedule

    Raises
    ------
    SpecError
        Unknown kind or key (with the closest valid name), a value that is not a number,
        a negative learning rate, a missing required key, or steps outside the run.
    """
    text = spec.strip()
    kind, _, body = text.partition(":")
    kind = kind.strip().lower()
    cls = SCHEDULE_KINDS.get(kind)
    if cls is None:
        raise SpecError(
            f"schedule {text!r}: unknown kind {kind!r}{_did_you_mean(kind, SCHEDULE_KINDS)}; "
            f"kinds are {', '.join(SCHEDULE_KINDS)}"
        )
    hints = typing.get_type_hints(cls)
    keys = {f.name: hints[f.name] for f in fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not raw:
            raise SpecError(f"schedule {text!r}: {item!r} is not key=value")
        if key not in keys:
            raise SpecError(
                f"schedule {text!r}: unknown key {key!r} for {kind}{_did_you_mean(key, keys)}; "
                f"keys are {', '.join(keys)}"
            )
        if key in kwargs:
            raise SpecError(f"schedule {text!r}: key {key!r} given twice")
        kwargs[key] = _convert(text, key, raw, keys[key])
    missing = [f.name for f in fields(cls) if f.init and f.name not in kwargs and _is_required(f)]
    if missing:
        raise SpecError(f"schedule {text!r}: missing {', '.join(missing)} ({cls.summary})")
    return cls(**kwargs)


def _is_required(f: Field[Any]) -> bool:
    return bool(f.default is MISSING and f.default_factory is MISSING)


def _did_you_mean(word: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _convert(spec: str, key: str, raw: str, hint: Any) -> Any:
    """Convert ``raw`` to the field's type (``int``, ``float``, ``str``, tuples, optionals)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        item_type = typing.get_args(hint)[0]
        return tuple(
            _scalar(spec, key, part.strip(), item_type) for part in raw.split("/") if part.strip()
        )
    return _scalar(spec, key, raw, hint)


def _scalar(spec: str, key: str, raw: str, hint: Any) -> Any:
    if hint is str:
        return raw.lower()
    try:
        value = float(raw)
    except ValueError:
        raise SpecError(f"schedule {spec!r}: {key}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise SpecError(f"schedule {spec!r}: {key}={raw!r} is not finite")
    if hint is int:
        if value != int(value):
            raise SpecError(f"schedule {spec!r}: {key}={raw!r} must be a whole number of steps")
        if value < 0:
            raise SpecError(f"schedule {spec!r}: {key}={raw!r} must not be negative")
        return int(value)
    return value


#: keys whose values count optimizer steps, and may be given as a fraction of the run
STEP_KEYS = ("warmup", "decay_start", "period", "milestones")


def resolve_schedule(spec: str, total_steps: int) -> str:
    """Fill ``total=`` and turn fractional step counts into steps, then validate the spec.

    A sweep writes one spec for runs of many lengths, e.g.
    ``wsd:peak=3e-3,warmup=0.05,decay_start=0.8,final=3e-4``: a value of ``warmup``,
    ``decay_start``, ``period`` or ``milestones`` strictly between 0 and 1 is that fraction of
    ``total_steps``.

    Parameters
    ----------
    spec
        Schedule spec, possibly without ``total`` and with fractional step counts.
    total_steps
        Optimizer steps of the run.

    Returns
    -------
    str
        A spec :func:`parse_schedule` takes, with every step count in steps.

    Raises
    ------
    SpecError
        A malformed spec, or a ``total`` that disagrees with ``total_steps``.
    """
    kind, _, body = spec.partition(":")
    items: list[tuple[str, str]] = []
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise SpecError(f"schedule '{spec}': expected key=value, got '{part}'")
        key, value = key.strip(), value.strip()
        if key in STEP_KEYS:
            value = "/".join(_steps(spec, key, v.strip(), total_steps) for v in value.split("/"))
        items.append((key, value))
    given = dict(items)
    if "total" not in given:
        items.append(("total", str(total_steps)))
    elif int(float(given["total"])) != total_steps:
        raise SpecError(
            f"schedule '{spec}' has total={given['total']} but the run has "
            f"{total_steps} steps; leave total out to have it filled in"
        )
    resolved = f"{kind.strip()}:" + ",".join(f"{k}={v}" for k, v in items)
    parse_schedule(resolved)
    return resolved


def _steps(spec: str, key: str, value: str, total_steps: int) -> str:
    """A step count, or a fraction of the run (strictly between 0 and 1) in steps."""
    try:
        number = float(value)
    except ValueError:
        raise SpecError(f"schedule '{spec}': {key}={value!r} is not a number") from None
    return str(round(number * total_steps)) if 0 < number < 1 else value

"""Schedules of the published loss curves of Luo et al. 2025 (reference data, not product).

"A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules" released curves of
25M/100M/400M GPT models named after their schedules (``../shared/data/lr_schedules``): a
2160-step linear warmup from 0 to 3e-4, then ``constant_T``, ``cosine_T`` (to 3e-5 at T),
``wsd_S_T`` (3e-4 until S, geometric decay to 3e-5 at T), ``wsdld_S_T`` (linear decay), and
``wsdcon_K`` (3e-4 until 8000, then K·1e-5 until 16000). The rebuilt schedules reproduce the
logged ``lr`` column to rounding error.
"""

from __future__ import annotations

from scalinglab.errors import SpecError

LUO2025_PEAK = 3e-4
LUO2025_WARMUP = 2160
LUO2025_FINAL = 3e-5


def luo2025_spec(name: str) -> str:
    """Schedule spec of one of Luo et al.'s curves from its name (e.g. ``"wsd_20000_24000"``)."""
    parts = name.split("_")
    head = f"peak={LUO2025_PEAK},warmup={LUO2025_WARMUP}"
    try:
        if parts[0] == "constant" and len(parts) == 2:
            return f"constant:{head},total={int(parts[1])}"
        if parts[0] == "cosine" and len(parts) == 2:
            return f"cosine:{head},total={int(parts[1])},final={LUO2025_FINAL}"
        if parts[0] in ("wsd", "wsdld") and len(parts) == 3:
            shape = "exp" if parts[0] == "wsd" else "linear"
            return (
                f"wsd:{head},total={int(parts[2])},decay_start={int(parts[1])},"
                f"shape={shape},final={LUO2025_FINAL}"
            )
        if parts[0] == "wsdcon" and len(parts) == 2:
            return f"multistep:{head},total=16000,milestones=8000,values={int(parts[1])}e-5"
    except ValueError:
        pass
    raise SpecError(
        f"{name!r} is not a curve name of Luo et al. 2025 (constant_T, cosine_T, wsd_S_T, "
        "wsdld_S_T, wsdcon_K)"
    )

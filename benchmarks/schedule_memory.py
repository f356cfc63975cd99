"""Peak memory and time of loss-curve prediction on schedules of 1e6 to 1e8 steps (issue #19).

Each measurement runs in its own process (peak RSS is a process's high-water mark): predict
a WSD schedule's loss curve at 100 steps with the annealing law and the multi-power law,
through ``scalinglab.laws.curve.predict_curve`` (the schedule read 2**18 steps at a time).
The peer is the dense computation the curve laws used before: every step's learning rate,
its cumulative sum and the annealing momentum held as arrays (``numpy`` + ``lfilter``), run
for the annealing law's S1/S2. A process that imports the same modules and predicts 1,000
steps gives the baseline that the ratios and increments are measured from.

Target (issue #19): a 10-million-step schedule works in bounded memory; beyond the limit
(``MAX_SCHEDULE_STEPS`` = 1e8) a clear error. The load average is recorded: times on a busy
machine are noisy (the memory figures are not).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from _common import record

CHILD = r"""
import json, resource, sys, time
import numpy as np
from scipy.signal import lfilter
from scalinglab.laws import get_law
from scalinglab.laws.curve import predict_curve
from scalinglab.schedules import parse_schedule

how, law_name, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
sched = parse_schedule(
    f"wsd:peak=3e-4,warmup={max(total // 100, 1)},total={total},decay=0.2,final=3e-5"
)
steps = np.unique(np.linspace(total / 100, total, 100).astype(np.int64))
params = {
    "annealing": {"L0": 3.0, "A": 0.5, "alpha": 0.5, "C": 0.5},
    "multipower": {"L0": 3.0, "A": 0.5, "alpha": 0.5, "B": 300.0, "C": 2.0, "beta": 0.6,
                   "gamma": 0.5},
}[law_name]

class Fitted:
    law = get_law(law_name)

Fitted.params = params
tick = time.perf_counter()
if how == "ours":
    loss = predict_curve(Fitted(), sched, steps)
else:  # the dense peer: every per-step array at once
    lr = sched.lr(np.arange(total))
    warm = int(np.argmax(lr))
    drops = np.zeros_like(lr)
    drops[1:] = lr[:-1] - lr[1:]
    drops[: warm + 1] = 0.0
    s1 = np.cumsum(lr)[steps - 1]
    s2 = np.cumsum(lfilter([1.0], [1.0, -0.999], drops))[steps - 1]
    loss = 3.0 + 0.5 * s1 ** -0.5 - 0.5 * s2
seconds = time.perf_counter() - tick
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib, "final": float(loss[-1])}))
"""


def measure(how: str, law: str, total: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, how, law, str(total)], capture_output=True, text=True
    )
    if out.returncode:
        raise RuntimeError(f"{how} {law} {total}: {out.stderr}")
    return json.loads(out.stdout)


def limit_error_seconds() -> tuple[float, str]:
    tick = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c",
         "from scalinglab.laws.curve import predict_curve\n"
         "from scalinglab.schedules import parse_schedule\n"
         "try:\n    parse_schedule('constant:peak=3e-4,total=10000000000')\n"
         "except Exception as err:\n    print(err)\n"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - tick, done.stdout.strip()


def main() -> None:
    load = os.getloadavg()[0]
    base = {law: measure("ours", law, 1000) for law in ("annealing", "multipower")}
    rows = []
    for total in (1_000_000, 10_000_000, 100_000_000):
        for law in ("annealing", "multipower"):
            ours = measure("ours", law, total)
            row = {"law": law, "steps": total, "ours": ours}
            if law == "annealing" and total <= 10_000_000:
                row["dense_peer"] = measure("dense", law, total)
            rows.append(row)
    seconds, message = limit_error_seconds()
    result = {
        "load_average": load,
        "baseline_1000_steps": base,
        "rows": rows,
        "limit_error": {"seconds": seconds, "message": message},
        "max_self_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    parts = []
    for row in rows:
        extra = row["ours"]["peak_mib"] - base[row["law"]]["peak_mib"]
        text = (
            f"{row['law']} {row['steps']:.0e} steps: +{extra:.0f} MiB over the 1,000-step "
            f"process, {row['ours']['seconds']:.1f} s"
        )
        if "dense_peer" in row:
            peer = row["dense_peer"]["peak_mib"] - base[row["law"]]["peak_mib"]
            text += f" (dense peer +{peer:.0f} MiB)"
        parts.append(text)
    record(
        "schedule_memory",
        result,
        "curve prediction at 100 steps, peak RSS above a 1,000-step run: "
        + "; ".join(parts)
        + f"; 1e10 steps refused in {seconds:.1f} s (process start included); "
        f"load average {load:.1f}",
    )


if __name__ == "__main__":
    main()

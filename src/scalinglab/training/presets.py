"""Built-in sweep specs, in the TOML form a user would write (``scalinglab sweep --preset``).

``cpu-tiny``
    4 model sizes (36k to 478k parameters, byte vocabulary, context 64, batch 16) × 3 token
    budgets (128K, 256K, 512K tokens) × 2 schedules (cosine, WSD with a 20% cooldown; peak
    3e-3 after a 25-step warmup) × AdamW, trained on ``python-stdlib`` and evaluated on the
    validation splits of ``python-stdlib`` and ``python-docs``: 24 runs for 2 workers with 1
    torch thread each. Measured on the 2-core development machine: 182 s wall (294 CPU-seconds
    in the workers) with other work running beside it, and its final losses forecast the
    largest size from the three smaller ones with 3.3% ARE
    (``benchmarks/train_throughput.py --part sweep``, docs/benchmarks.md).
    The 25-step warmup matters: with a 5% warmup (6 steps in the shortest runs) the largest
    model ended behind the smaller ones at 128K tokens. The largest model is evaluated every
    16 steps (32 points in its 512-step runs, 6 in the WSD cooldown): the study fits curve
    laws to its constant and cosine runs and predicts its WSD run. Every run also writes its
    training loss of every step (smoothed over 9 steps) as dataset ``train``.
"""

from __future__ import annotations

#: the training settings every cpu-tiny run shares (the constant-LR run must match them)
_CPU_TINY_BASE = """\
[base]
context = 64
batch_size = 16
train_data = "python-stdlib"
eval_data = ["python-stdlib", "python-docs"]
eval_tokens = 8192
eval_log_points = 4
train_loss_window = 9
weight_decay = 0.1
grad_clip = 1.0
device = "cpu"
"""

CPU_TINY = (
    """\
name = "cpu-tiny"
workers = 2
threads = 1
seeds = [0]
optimizers = ["adamw"]
tokens = [131072, 262144, 524288]

"""
    + _CPU_TINY_BASE
    + """
[models]
xs = { d_model = 32, layers = 2, heads = 2 }
s = { d_model = 48, layers = 3, heads = 3 }
m = { d_model = 64, layers = 4, heads = 4 }
l = { d_model = 96, layers = 4, heads = 4, eval_every = 16 }

[schedules]
cosine = "cosine:peak=3e-3,warmup=25,final=3e-4"
wsd = "wsd:peak=3e-3,warmup=25,decay_start=0.8,final=3e-4"
"""
)

#: A constant-learning-rate run of cpu-tiny's largest model at its largest budget: with that
#: model's cosine and WSD runs, the end-to-end study fits a curve law on two schedules and
#: predicts the third. Same sweep name, so its run lands beside cpu-tiny's in one store.
CPU_TINY_CONSTANT = (
    """\
name = "cpu-tiny"
workers = 1
threads = 1
seeds = [0]
optimizers = ["adamw"]
tokens = [524288]

"""
    + _CPU_TINY_BASE
    + """
[models]
l = { d_model = 96, layers = 4, heads = 4, eval_every = 16 }

[schedules]
constant = "constant:peak=3e-3,warmup=25"
"""
)

#: preset name -> TOML text
PRESETS: dict[str, str] = {"cpu-tiny": CPU_TINY, "cpu-tiny-constant": CPU_TINY_CONSTANT}

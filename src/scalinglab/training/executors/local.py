"""The default executor: a pool of worker processes on this machine.

Each worker trains one run at a time with the sweep's torch threads. An interrupted sweep
(Ctrl-C, or SIGTERM through the CLI) or a killed one stops its workers' runs as Ctrl-C does,
so the store marks them interrupted; queued runs are not started (a worker checks, before
each run, that the sweep that started it is still its parent).
"""

from __future__ import annotations

import _thread
import concurrent.futures as cf
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

from scalinglab.training.config import TrainConfig
from scalinglab.training.executors.base import (
    Executor,
    OnOutcome,
    RunOutcome,
    execute_run,
    job_label,
)

#: seconds a worker's interrupted run gets to record its status before the worker exits
STOP_GRACE_S = 30.0
#: whether this worker process is training a run now (set by _worker_run)
_busy = threading.Event()
#: the sweep's stop event and process id, in a worker process (set by its initializer)
_stop: Any = None
_parent_pid: int | None = None
#: what the store's job column says of this worker's runs
_job_kind = "local"


def _stop_with_parent(parent_pid: int, stop: Any, job_kind: str) -> None:
    """Pool initializer: stop this worker when the sweep stops or is gone.

    ``stop`` is set by a sweep that is interrupted (Ctrl-C, or SIGTERM through the CLI); a
    killed sweep sets nothing, and its disappearance has the same effect. A run in progress
    is interrupted as by Ctrl-C, so the store marks it interrupted (it resumes from its
    checkpoint next time); queued runs are not started; the worker then exits.
    """
    global _stop, _job_kind, _parent_pid
    _stop, _job_kind, _parent_pid = stop, job_kind, parent_pid
    if os.environ.get("SCALINGLAB_DEBUG", "") in ("", "0"):
        # the workers share the terminal: no library warning is printed raw there
        warnings.simplefilter("ignore")

    def watch() -> None:
        while not stop.wait(1.0) and os.getppid() == parent_pid:
            pass
        if _busy.is_set():
            _thread.interrupt_main(signal.SIGINT)
            deadline = time.monotonic() + STOP_GRACE_S
            while _busy.is_set() and time.monotonic() < deadline:
                time.sleep(0.1)
        os._exit(1)

    # a sweep started in the background inherits SIGINT ignored, and then the interruption
    # above would do nothing
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def _worker_run(config: TrainConfig) -> RunOutcome:
    # queued before the sweep stopped, or after it was killed (its pool had already handed
    # this run to the worker): not started
    if _stop is not None and (_stop.is_set() or os.getppid() != _parent_pid):
        return RunOutcome(config.name, "interrupted")
    _busy.set()
    try:
        return execute_run(config, job=job_label(_job_kind))
    finally:
        _busy.clear()


class LocalExecutor(Executor):
    """Worker processes on this machine (``spawn``ed, one run at a time each).

    Parameters
    ----------
    workers
        Parallel worker processes.
    job_kind
        What the store's ``job`` column calls these workers (a packed Slurm job passes its
        own job id, so that its runs say which job trained them).
    """

    name = "local"

    def __init__(self, workers: int = 1, *, job_kind: str = "local") -> None:
        self.workers = max(1, int(workers))
        self.job_kind = job_kind

    def run(self, configs: Sequence[TrainConfig], on_outcome: OnOutcome) -> None:
        """Train ``configs`` on up to ``workers`` processes; see :meth:`Executor.run`."""
        if not configs:
            return
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        pool = cf.ProcessPoolExecutor(
            max_workers=min(self.workers, len(configs)),
            mp_context=context,
            initializer=_stop_with_parent,
            initargs=(os.getpid(), stop, self.job_kind),
        )
        try:
            pending = {pool.submit(_worker_run, c) for c in configs}
            while pending:
                # wake up every second: a signal that the OS delivered to another thread is
                # only handled once the main thread runs again
                done, pending = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    on_outcome(future.result())
        except BaseException:
            # interrupted: start no new run and stop the running ones (they are marked
            # interrupted and resume from their checkpoints on the next call)
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

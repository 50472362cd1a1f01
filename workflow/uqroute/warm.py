"""Run short jobs in warm worker processes.

A table or figure job computes for a fraction of a second, but a fresh Python pays 0.7-1.8 s to start and
import pandas, scikit-learn, torch or seaborn before it does. A worker imports them once and then runs one
job after another, each still in a process of its own: a job's log redirection, random seeds and figure
state never meet another job's, because a worker runs one job at a time.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

# Imported once by the fork server; every worker starts with them loaded.
PRELOAD = [
    "uqroute.jobs",
    "uqroute.jobs.analysis",
    "uqroute.jobs.data",
    "uqroute.jobs.figures",
    "uqroute.jobs.generate",
    "uqroute.jobs.uq",
    "uqroute.uq.probes",
    "uqroute.figures",
    "sklearn.metrics",
]


class WarmPool:
    """At most ``workers`` warm processes, started on the first job and stopped at exit."""

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(PRELOAD)
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
                atexit.register(self.close)
            return self._executor

    def run(self, function: Callable[..., None], *args: Any) -> None:
        """Run ``function(*args)`` (both picklable: a module-level function) in a worker and wait for it; its
        exception, if any, is raised here."""
        executor = self._start()
        try:
            executor.submit(function, *args).result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory): this job fails, the next ones get a fresh pool.
            with self._lock:
                if self._executor is executor:
                    self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def default_workers(cores: int | None) -> int:
    """One worker per core the scheduler may fill, never more than the machine has."""
    available = os.cpu_count() or 1
    return max(1, min(available, cores or available))

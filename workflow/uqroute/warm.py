"""Run short jobs in warm worker processes.

A table or figure job computes for a fraction of a second, but a fresh Python pays 0.7-1.8 s to start and
import pandas, scikit-learn, torch or seaborn before it does. A worker imports them once and then runs one
job after another, each still in a process of its own: a job's log redirection, random seeds and figure
state never meet another job's, because a worker runs one job at a time.

A job reaches its worker as a :class:`Job`: the part of a rule's ``run:`` block arguments that
:func:`uqroute.jobs.run_job` reads, copied into plain values that pickle. It is built from the public side of
Snakemake's named lists (iteration and ``items()``), so it needs none of Snakemake's own classes.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

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
    """At most ``workers`` warm processes, started on the first job and stopped at exit. ``preload``: more
    modules every worker imports (the config's ``plugins``, whose methods register themselves on import)."""

    def __init__(self, workers: int, preload: Iterable[str] = ()):
        self.workers = max(1, int(workers))
        self.preload = [*PRELOAD, *preload]
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(self.preload)
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


class Named(list):
    """Values in order, some of them also under a name: what a job reads of a Snakemake named list (a rule's
    input, output, params, wildcards or log)."""

    def __init__(self, values: Iterable[Any] = (), names: Mapping[str, Any] | None = None):
        super().__init__(values)
        self.names = dict(names or {})

    def items(self):
        return self.names.items()


def _paths(files) -> Named:
    """Files as ``str`` (a name given several files: a list of them); Snakemake's file objects stay behind."""
    def plain(value):
        return str(value) if isinstance(value, str) else [str(path) for path in value]

    return Named((str(path) for path in files), {name: plain(value) for name, value in files.items()})


def _values(entries) -> Named:
    return Named(entries, dict(entries.items()))


@dataclass(frozen=True)
class Job:
    """One job as :func:`uqroute.jobs.run_job` reads it: the attributes of the ``snakemake`` object a script
    gets that it uses, and nothing else."""

    rule: str
    input: Named
    output: Named
    params: Named
    wildcards: Named
    threads: int
    log: Named


def plain_job(*, rule: str, input, output, params, wildcards, threads: int, log) -> Job:
    """The :class:`Job` of a rule's ``run:`` block arguments (Snakemake's named lists, or anything with their
    iteration and ``items()``)."""
    return Job(rule=str(rule), input=_paths(input), output=_paths(output), params=_values(params),
               wildcards=_values(wildcards), threads=threads, log=_paths(log))

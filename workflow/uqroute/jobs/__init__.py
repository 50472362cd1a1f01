"""The workflow's jobs, one module per stage, each job one function: read the inputs, call the library,
write the output atomically.

A rule names its job function once (``params: job="analysis.alignment"``, a function of this package), and
:func:`run_job` calls it with the rule's named inputs, outputs and params, its wildcards and threads, each
handed to the argument of the same name. So every job also runs (and is tested) from plain Python. A job
that reads many cells takes their paths and reads each cell's coordinates back from its path
(:func:`uqroute.paths.cell_of`), never from a parallel list.

Arguments with a special meaning: ``inputs`` / ``outputs`` (every named input as a list / every named
output), ``output`` (the rule's one unnamed output) and ``**kwargs`` (named inputs the signature does not
name otherwise). Wildcards the function does not take are left out; anything else it does not take is an
error naming the rule and the key.
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import typing
from typing import Any, Callable

from threadpoolctl import threadpool_limits

from ..logs import log_to

JOB_PARAM = "job"


def job_function(name: str) -> Callable[..., None]:
    """The job function ``<module>.<function>`` of this package, e.g. ``analysis.alignment``."""
    module, _, function = name.rpartition(".")
    try:
        return getattr(importlib.import_module(f"{__name__}.{module}"), function)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"no job function {name!r} (expected <module>.<function> of {__name__})") from None


def _named(files) -> dict[str, Any]:
    """The named entries of a Snakemake Namedlist (or a plain mapping) as a dict."""
    return dict(files.items()) if hasattr(files, "items") else {}


def _is_sequence(annotation) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return isinstance(origin, type) and issubclass(origin, collections.abc.Sequence) and origin is not str


def _files(value, annotation) -> str | list[str]:
    """One path as ``str``, several as a list of ``str``; a single path becomes a list where a sequence is
    wanted."""
    if isinstance(value, str):
        return [str(value)] if _is_sequence(annotation) else str(value)
    return [str(path) for path in value]


def job_arguments(function: Callable[..., None], *, rule: str, input, output, params, wildcards,
                  threads: int | None = None) -> dict[str, Any]:
    """The keyword arguments of ``function`` for one job of ``rule`` (see the module's docstring)."""
    signature = inspect.signature(function, eval_str=True)
    accepted = {name: parameter for name, parameter in signature.parameters.items()
                if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)}
    var_keyword = any(parameter.kind is parameter.VAR_KEYWORD for parameter in signature.parameters.values())
    where = f"rule {rule} (job {function.__module__.rpartition('.')[2]}.{function.__name__})"
    arguments: dict[str, Any] = {}

    def give(name: str, value, what: str, extra_ok: bool = False) -> None:
        if name in arguments:
            raise ValueError(f"{where}: {name!r} is given twice ({what} and an earlier one)")
        if name in accepted:
            annotation = accepted[name].annotation
            arguments[name] = _files(value, annotation) if what in ("input", "output") else value
        elif extra_ok:
            arguments[name] = _files(value, None)
        else:
            raise ValueError(f"{where}: the job takes no argument {name!r} (a {what} of the rule); it takes "
                             f"{', '.join(accepted)}")

    named_inputs = _named(input)  # an unnamed input reaches no argument
    if "inputs" in accepted:
        arguments["inputs"] = {name: _files(value, list) for name, value in named_inputs.items()}
    else:
        for name, value in named_inputs.items():
            give(name, value, "input", extra_ok=var_keyword)
    named_outputs = _named(output)
    if not named_outputs and len(output) == 1:
        give("output", output[0], "output")
    elif "outputs" in accepted:
        arguments["outputs"] = {name: str(value) for name, value in named_outputs.items()}
    else:
        for name, value in named_outputs.items():
            give(name, value, "output")
    for name, value in _named(params).items():
        if name != JOB_PARAM:
            give(name, value, "param")
    for name, value in _named(wildcards).items():
        if name in accepted and name not in arguments:
            arguments[name] = value
    if "threads" in accepted and threads is not None:
        arguments["threads"] = threads
    missing = [name for name, parameter in accepted.items()
               if parameter.default is parameter.empty and name not in arguments]
    if missing:
        raise ValueError(f"{where}: nothing of the rule gives the job's argument(s) {missing}")
    return arguments


def run_job(job) -> None:
    """Run the job function a rule names in ``params.job`` for one Snakemake job (the ``snakemake`` object a
    script gets), logging to the job's log."""
    params = _named(job.params)
    if JOB_PARAM not in params:
        raise ValueError(f"rule {job.rule}: params.{JOB_PARAM} must name its job function (e.g. analysis.alignment)")
    with log_to(job.log[0]):
        function = job_function(params[JOB_PARAM])
        arguments = job_arguments(function, rule=job.rule, input=job.input, output=job.output, params=job.params,
                                  wildcards=job.wildcards, threads=job.threads)
        # NumPy's matrix products run on the job's threads: left to BLAS, each of two one-thread jobs on two
        # cores starts a thread per core, and the four slow each other down (2-3x, measured on the bootstrap).
        with threadpool_limits(limits=max(1, job.threads or 1), user_api="blas"):
            function(**arguments)

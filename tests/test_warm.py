"""Warm workers (uqroute.warm): table, figure and UQ jobs run in reused worker processes."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from uqroute.warm import WarmPool, default_workers

def record_job(job: dict) -> None:
    """A job for the workers (module level: the worker imports it by name): logs, writes its pid, may fail or die."""
    import json
    import logging

    from uqroute.logs import log_to

    with log_to(job["log"]):
        logging.getLogger("uqroute.test").info("job %s", job["name"])
        with open(job["output"], "w") as handle:
            json.dump({"pid": os.getpid(), "name": job["name"]}, handle)
        if job.get("fail"):
            raise ValueError(f"bad input in {job['name']}")
        if job.get("die"):
            os._exit(3)


@pytest.fixture(scope="module")
def pool():
    warm = WarmPool(1)
    yield warm
    warm.close()


def _job(tmp_path, name, **extra):
    return {"name": name, "output": str(tmp_path / f"{name}.json"), "log": str(tmp_path / f"{name}.log"), **extra}


def test_jobs_run_one_after_another_in_one_reused_worker_with_their_own_logs(pool, tmp_path):
    import json

    pool.run(record_job, _job(tmp_path, "first"))
    pool.run(record_job, _job(tmp_path, "second"))
    first, second = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("first", "second"))
    assert first["pid"] == second["pid"] != os.getpid()  # one worker, warm for the second job, not this process
    assert "job first" in (tmp_path / "first.log").read_text()
    assert "job second" not in (tmp_path / "first.log").read_text()
    assert "job second" in (tmp_path / "second.log").read_text()


def test_a_failing_job_raises_its_error_here_and_logs_it(pool, tmp_path):
    with pytest.raises(ValueError, match="bad input in broken"):
        pool.run(record_job, _job(tmp_path, "broken", fail=True))
    assert "job failed" in (tmp_path / "broken.log").read_text()


def test_a_dead_worker_fails_its_job_and_the_next_job_gets_a_fresh_pool(tmp_path):
    import json

    warm = WarmPool(1)
    try:
        with pytest.raises(BrokenProcessPool):
            warm.run(record_job, _job(tmp_path, "killed", die=True))
        warm.run(record_job, _job(tmp_path, "after"))
        assert json.loads((tmp_path / "after.json").read_text())["name"] == "after"
    finally:
        warm.close()


def test_workers_follow_the_cores_snakemake_may_fill():
    assert default_workers(1) == 1
    assert default_workers(None) == (os.cpu_count() or 1)
    assert default_workers(10_000) == (os.cpu_count() or 1)


def test_a_plain_job_pickles_and_gives_every_job_function_what_snakemakes_own_job_gives(tmp_path, data_dir):
    """Each job of the embedded default's plan, as warm_job hands it over (plain_job of the job's Snakemake named
    lists, through pickle as to a worker), maps onto its job function's arguments as Snakemake's own job does."""
    import pickle

    import yaml

    from uqroute.jobs import JOB_PARAM, job_arguments, job_function
    from uqroute.warm import plain_job
    from workflow_runs import EMBEDDED_CONFIG, _dry_run

    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"data_dir": str(data_dir)}))

    def both(job):
        name = dict(job.params.items()).get(JOB_PARAM)
        if name is None:
            return None
        function = job_function(name)
        plain = pickle.loads(pickle.dumps(plain_job(rule=job.rule.name, input=job.input, output=job.output,
                                                    params=job.params, wildcards=job.wildcards, threads=job.threads,
                                                    log=job.log)))
        assert (plain.rule, plain.threads, list(plain.log)) == (job.rule.name, job.threads, list(job.log))
        return (job.rule.name, *(job_arguments(function, rule=job.rule.name, input=source.input,
                                               output=source.output, params=source.params,
                                               wildcards=source.wildcards, threads=source.threads)
                                 for source in (job, plain)))

    jobs = [job for job in _dry_run(tmp_path, (), [EMBEDDED_CONFIG, override], None, (), both) if job]
    # Table, figure and UQ rules among them (the ones warm_job runs), with inputs by name and lists of files.
    assert {"uq", "alignment", "calibration_set", "figure_routing_curves", "findings"} <= {rule for rule, _, _ in jobs}
    for rule, snakemakes, plain in jobs:
        assert plain == snakemakes, rule

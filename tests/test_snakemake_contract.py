"""What the workflow's warm workers take from Snakemake, checked on a Snakefile of one rule run by the installed
Snakemake: the public names they read, so that a Snakemake release that changes one fails here by name.

``warm_job`` (workflow/rules/common.smk) reads ``workflow.resource_settings.cores`` and ``.local_cores``,
``workflow.non_local_exec`` and ``workflow.is_main_process`` where the Snakefile is parsed, and hands the
arguments of a rule's ``run:`` block to :func:`uqroute.warm.plain_job`, which reads Snakemake's named lists
through their iteration and ``items()`` only. No Snakemake class is built and no private attribute is read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SNAKEMAKE = Path(sys.executable).with_name("snakemake")

SNAKEFILE = '''
import json
import pickle
from pathlib import Path

from uqroute.warm import plain_job

Path("parsed.json").write_text(json.dumps({
    "cores": workflow.resource_settings.cores, "local_cores": workflow.resource_settings.local_cores,
    "non_local_exec": workflow.non_local_exec, "is_main_process": workflow.is_main_process}))


rule make:
    input:
        "a.txt",
        one="b.txt",
        many=["c.txt", "d.txt"],
    output:
        "out/{name}.json",
    params:
        job="x.y",
        n=3,
    log:
        "logs/{name}.log",
    threads: 2
    run:
        # The arguments the rules hand to warm_job, in its order; a name missing here is a NameError.
        arguments = (input, output, params, wildcards, threads, resources, log, rule)
        job = pickle.loads(pickle.dumps(plain_job(rule=rule, input=input, output=output, params=params,
                                                  wildcards=wildcards, threads=threads, log=log)))
        Path(output[0]).write_text(json.dumps({
            "is_main_process": workflow.is_main_process, "rule": job.rule, "threads": job.threads,
            **{name: [list(getattr(job, name)), dict(getattr(job, name).items())]
               for name in ("input", "output", "params", "wildcards", "log")}}))
'''


def test_warm_job_reads_public_names_snakemake_sets_as_it_assumes(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    for name in ("a", "b", "c", "d"):
        (tmp_path / f"{name}.txt").write_text(name)
    result = subprocess.run([str(SNAKEMAKE), "--cores", "3", "--force-use-threads", "--workflow-profile", "none",
                             "out/x.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        "the one-rule Snakefile failed: has Snakemake renamed workflow.resource_settings.cores/.local_cores, "
        "workflow.non_local_exec, workflow.is_main_process, or an argument of a run: block that warm_job "
        f"takes?\n{result.stderr[-4000:]}")
    parsed = json.loads((tmp_path / "parsed.json").read_text())
    # WARM sizes its pool by these when the Snakefile is parsed (--local-cores: unset or a number).
    assert (parsed["cores"], parsed["non_local_exec"], parsed["is_main_process"]) == (3, False, True), parsed
    assert parsed["local_cores"] is None or isinstance(parsed["local_cores"], int), parsed
    job = json.loads((tmp_path / "out" / "x.json").read_text())
    # In the run block the job is in the main process (--force-use-threads): warm_job sends it to a worker.
    assert job["is_main_process"] is True
    assert (job["rule"], job["threads"]) == ("make", 2)
    # Every file in order, the named ones by name (a name given several files: their list), as plain strings.
    assert job["input"] == [["a.txt", "b.txt", "c.txt", "d.txt"], {"one": "b.txt", "many": ["c.txt", "d.txt"]}]
    assert job["output"] == [["out/x.json"], {}]
    assert job["params"] == [["x.y", 3], {"job": "x.y", "n": 3}]
    assert job["wildcards"] == [["x"], {"name": "x"}]
    assert job["log"] == [["logs/x.log"], {}]

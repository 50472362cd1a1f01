"""A pass killed with SIGKILL half way resumes from its finished batches; nothing torn, nothing redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from uqroute import REPO_ROOT
from uqroute.paths import model_folder

pytestmark = pytest.mark.slow

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TARGET = "results/gen/smollm2-135m/multiarith/test/greedy.parquet"
CHECKPOINTS = "results/.checkpoints/gen/smollm2-135m/multiarith/test/greedy"


def _start(workdir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(SNAKEMAKE), "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir),
         "--cores", "1", *extra, TARGET],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def test_killed_pass_resumes_from_its_checkpoint(tmp_path, data_dir, smollm2_dir):
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config.update(data_dir=str(data_dir), datasets=["multiarith"], subset={"max_test": 8, "max_train": 8, "seed": 50})
    config["engines"]["smollm2-135m"].update(batch_size=2)  # dtype auto, as the embedded default runs
    # One job per pass: the job killed here is the greedy pass's own (the embedded default makes it in a cell job).
    config["generation"].update(part_size=2, max_new_tokens={"mcq": 8, "tf": 8, "ff_num": 40, "ff_text": 8},
                                one_job_per="pass")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    model_folder(tmp_path / "results", "smollm2-135m").parent.mkdir(parents=True)
    model_folder(tmp_path / "results", "smollm2-135m").symlink_to(smollm2_dir, target_is_directory=True)

    job = _start(tmp_path)
    parts_dir = tmp_path / CHECKPOINTS
    deadline = time.monotonic() + 600
    while not len(list(parts_dir.glob("*.parquet"))) >= 1:
        assert job.poll() is None, job.stdout.read()
        assert time.monotonic() < deadline, "no batch finished in time"
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()

    output = tmp_path / TARGET
    finished_parts = sorted(p.name for p in parts_dir.glob("*.parquet"))
    assert finished_parts and len(finished_parts) < 4, "killed half way: some batches done, not all"
    assert not output.exists(), "no table is written before every batch is done"
    data_file = tmp_path / "results" / "data" / "multiarith" / "test.parquet"
    data_mtime = data_file.stat().st_mtime_ns

    # A killed Snakemake leaves its lock behind; releasing it is the documented first step.
    unlock = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory",
                             str(tmp_path), "--unlock"], capture_output=True, text=True)
    assert unlock.returncode == 0, unlock.stderr
    restarted = _start(tmp_path, "--rerun-incomplete")
    log_text = restarted.communicate(timeout=900)[0]
    assert restarted.returncode == 0, log_text[-4000:]
    assert data_file.stat().st_mtime_ns == data_mtime, "a finished file was recomputed"
    table = pd.read_parquet(output)
    assert len(table) == 8 and table["id"].is_unique
    job_log = (tmp_path / "logs" / "generate" / "smollm2-135m" / "multiarith" / "test" / "greedy.log").read_text()
    assert job_log.count("resumed batch") == len(finished_parts)
    assert not parts_dir.exists(), "parts are removed once the table is written"
    # Beside the graded table: the pass's replies, which rule grade read; nothing else.
    leftovers = [p for p in output.parent.iterdir() if p.name not in (output.name, "greedy.replies.parquet")]
    assert not leftovers, f"no temp files left beside the table: {leftovers}"


WRITER_KILLED_MID_WRITE = """
import sys, time
from pathlib import Path
import pandas as pd
import pyarrow.parquet as pq
from uqroute import io

target, ready = Path(sys.argv[1]), Path(sys.argv[2])
real_write = pq.write_table

def half_then_hang(table, where, **kwargs):
    real_write(table, where, **kwargs)
    size = Path(where).stat().st_size
    with open(where, "r+b") as handle:
        handle.truncate(size // 2)  # the bytes a writer has on disk when it dies mid-write
    ready.touch()
    time.sleep(600)

io.pq.write_table = half_then_hang
io.write_parquet(pd.DataFrame({"x": range(100_000)}), target)
"""


def test_writer_killed_mid_write_leaves_the_previous_table_whole(tmp_path):
    from uqroute.io import write_parquet

    target, ready = tmp_path / "table.parquet", tmp_path / "ready"
    write_parquet(pd.DataFrame({"x": [1, 2, 3]}), target)
    writer = subprocess.Popen([sys.executable, "-c", WRITER_KILLED_MID_WRITE, str(target), str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "writer died before writing"
            time.sleep(0.1)
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert pd.read_parquet(target)["x"].tolist() == [1, 2, 3]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("table.parquet", "ready")]
    assert all(name.startswith(".table.parquet.") and name.endswith(".tmp") for name in leftovers), leftovers

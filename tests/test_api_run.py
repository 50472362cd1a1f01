"""A run whose LLM and judge are an OpenAI-compatible endpoint: faults, cache, and the key.

The endpoint is a real HTTP server on localhost (tests/fake_openai_server.py) that injects 429 with
Retry-After, 500, a timeout and a malformed body; the workflow must finish, a rerun must make no
request at all, a permanent error must name model and endpoint, and the (fake) key must appear in
no file the run leaves behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fake_openai_server import Fault, FakeOpenAIServer
from uqroute import REPO_ROOT
from uqroute.paths import model_folder

pytestmark = pytest.mark.slow

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SECRET = "sk-uqroute-FAKE-KEY-0123456789"
KEY_ENV = "UQROUTE_TEST_OPENAI_KEY"
LLM = "gpt-4o-mini"


def _configure(workdir: Path, data_dir: Path, smollm2_dir: Path, base_url: str) -> None:
    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    config.update(
        data_dir=str(data_dir), llms=[LLM], datasets=["multiarith", "boolq"], methods=["perplexity", "avg_token_prob"],
        subset={"max_test": 4, "max_train": 4, "seed": 50}, judge={"engine": "openai", "model": LLM},
    )
    config["engines"][LLM] = {"kind": "openai", "base_url": base_url, "api_key_env": KEY_ENV,
                              "timeout": 2.0, "max_retries": 4}
    del config["engines"]["gemma3-270m"]
    config["generation"].update(max_new_tokens={"mcq": 8, "tf": 6, "ff_num": 24, "ff_text": 8})
    config["calibration"].update(n_bins=4, fraction=0.5, methods=None)
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    link = model_folder(workdir / "results", "smollm2-135m")
    if not link.exists():
        link.parent.mkdir(parents=True)
        link.symlink_to(smollm2_dir, target_is_directory=True)


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, KEY_ENV: SECRET, "TQDM_DISABLE": "1"}
    return subprocess.run(
        [str(SNAKEMAKE), "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2",
         *args], capture_output=True, text=True, env=env, timeout=1800,
    )


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, data_dir, smollm2_dir):
    workdir = tmp_path_factory.mktemp("api-run")
    with FakeOpenAIServer() as server:
        _configure(workdir, data_dir, smollm2_dir, server.base_url)
        server.inject(Fault.http(429, retry_after=1), Fault.http(500), Fault.delay(3.0), Fault.malformed())
        first = _snakemake(workdir, "--report-after-run", "--report", "report.html")
        requests_first_run = server.n_requests
        faults_left = server.pending_faults
        # Only the jobs that call the API: the LLM's passes and the grading (the judge is the API model too).
        api_passes = [f"results/gen/{LLM}/{dataset}/test/greedy.replies.parquet" for dataset in ("multiarith", "boolq")]
        rerun = _snakemake(workdir, "--forcerun", "grade", *api_passes)
        requests_after_rerun = server.n_requests
        yield {"workdir": workdir, "first": first, "rerun": rerun, "faults_left": faults_left,
               "requests": requests_first_run, "rerun_requests": requests_after_rerun - requests_first_run,
               "server": server}


def test_run_survives_injected_api_faults(api_run):
    assert api_run["first"].returncode == 0, api_run["first"].stderr[-5000:]
    assert api_run["faults_left"] == 0, "every injected fault was met by a request"
    workdir = api_run["workdir"]
    for dataset in ("multiarith", "boolq"):
        assert (workdir / "results" / "gen" / LLM / dataset / "test" / "greedy.parquet").exists()
    assert (workdir / "results" / "figures" / "auroc_heatmaps.png").exists()


def test_each_distinct_request_is_answered_once_and_a_rerun_makes_none(api_run):
    server = api_run["server"]
    retried = 4  # the four injected faults each cost one extra request
    assert api_run["requests"] == len(server.counts()) + retried
    assert api_run["rerun"].returncode == 0, api_run["rerun"].stderr[-3000:]
    rerun_log = api_run["rerun"].stdout + api_run["rerun"].stderr
    assert rerun_log.count("rule generate_replies:") == 2 and "rule grade:" in rerun_log, "the API jobs did rerun"
    assert api_run["rerun_requests"] == 0, "rerunning the API passes is served from the cache"


def test_key_appears_in_no_output(api_run):
    server = api_run["server"]
    assert any(SECRET in header for header in server.auth_headers), "the key was really sent"
    workdir = api_run["workdir"]
    leaks = []
    for path in workdir.rglob("*"):
        if path.is_file() and not path.is_symlink() and SECRET.encode() in path.read_bytes():
            leaks.append(str(path.relative_to(workdir)))
    assert not leaks
    for run in ("first", "rerun"):
        assert SECRET not in api_run[run].stdout + api_run[run].stderr


def test_permanent_error_names_model_and_endpoint_not_key(tmp_path, data_dir, smollm2_dir):
    with FakeOpenAIServer() as server:
        _configure(tmp_path, data_dir, smollm2_dir, server.base_url)
        endpoint = server.base_url
        server.inject(*[Fault.http(401)] * 8)
        result = _snakemake(tmp_path, f"results/gen/{LLM}/boolq/test/greedy.parquet")
    assert result.returncode != 0
    log = (tmp_path / "logs" / "generate" / LLM / "boolq" / "test" / "greedy.log").read_text()
    assert LLM in log and endpoint in log and "401" in log
    assert SECRET not in log + result.stdout + result.stderr

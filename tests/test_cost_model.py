"""The arithmetic of bench/cost_model.py on small inputs with known answers: the roofline, the job-log parser, the
spread over datasets and the fallback for a dataset the run did not measure. No speed is asserted."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest

from uqroute import REPO_ROOT


def load_cost_model():
    spec = importlib.util.spec_from_file_location("cost_model", REPO_ROOT / "bench" / "cost_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


cost = load_cost_model()
# Round numbers: 1 TB/s, 100 TFLOP/s at half utilisation, 10 sequences a step.
DEVICE = cost.Hardware("test", bandwidth=1e12, peak_flops=100e12, prefill_utilisation=0.5, decode_batch=10)


def test_prefill_costs_two_flops_per_parameter_per_token_at_the_stated_utilisation():
    # 2 x 1e9 params x 100 tokens = 2e11 FLOPs at 50e12 FLOP/s
    assert cost.prefill_seconds(1e9, 100, DEVICE) == pytest.approx(4e-3)
    assert cost.prefill_seconds(1e9, 100, DEVICE, devices=4) == pytest.approx(1e-3)


def test_a_decoding_step_reads_every_weight_once_until_the_batch_makes_it_compute_bound():
    # 1e9 bf16 params = 2e9 bytes at 1e12 B/s = 2 ms; compute at batch 10: 2e10 FLOPs / 50e12 = 0.4 ms
    assert cost.decode_step_seconds(1e9, 10, DEVICE) == pytest.approx(2e-3)
    # at batch 100: 2e11 / 50e12 = 4 ms > 2 ms
    assert cost.decode_step_seconds(1e9, 100, DEVICE) == pytest.approx(4e-3)
    assert cost.decode_step_seconds(1e9, 10, DEVICE, devices=2) == pytest.approx(1e-3)


def test_a_question_pays_its_prefill_and_its_share_of_the_decoding_steps():
    # 4 ms prefill + 20 tokens x 2 ms / 10 sequences
    assert cost.roofline_seconds(1e9, 100, 20, DEVICE) == pytest.approx(4e-3 + 4e-3)
    assert cost.roofline_seconds(1e9, 0, 20, DEVICE, batch=1) == pytest.approx(20 * 2e-3)


def test_start_up_holds_every_gpu_of_a_job():
    assert cost.startup_gpu_hours([1, 1, 4, 0], 3600) == 6


def test_spread_and_bootstrap_over_datasets():
    assert cost.spread([3.0, 1.0, 2.0, float("nan")]) == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0}
    assert cost.spread([])["n"] == 0
    low, high = cost.bootstrap_mean_interval([1.0, 2.0, 3.0, 4.0], resamples=500)
    assert 1.0 <= low < 2.5 < high <= 4.0
    assert all(math.isnan(v) for v in cost.bootstrap_mean_interval([1.0]))
    assert cost.bootstrap_mean_interval([5.0, 5.0, 5.0]) == (5.0, 5.0)


LOG = "\n".join([
    "2026-12-07 01:22:21,183 uqroute.engines.options INFO model smollm2-135m (hf): dtype auto -> bfloat16 on cpu "
    "(Some CPU, AVX512, native bf16, 2 cores)",
    "2026-12-07 01:22:22,000 uqroute.engines.vllm_engine INFO model smollm2-135m: vLLM engine started in 34.2 s",
    "2026-12-07 01:22:24,550 uqroute.checkpoint INFO resumed batch greedy-ff_num-00001-bbbb11b844220422 (16 rows)",
    "2026-12-07 01:22:24,551 uqroute.checkpoint INFO resumed batch sample-ff_num-00001-bbbb11b844220422 (80 rows)",
    "2026-12-07 01:22:24,552 uqroute.checkpoint INFO resumed batch hidden_question-mcq-00003-0123456789abcdef (16 rows)",
    # a progress bar rewrites its line with carriage returns; only the finished frame counts
    "smollm2-135m greedy:   0%|          | 0/2 [00:00<?, ?batch/s]\rsmollm2-135m greedy:  50%|#    | 1/2 [00:05<00:05, "
    "5.0s/batch]\rsmollm2-135m greedy: 100%|##########| 2/2 [00:09<00:00,  4.5s/batch]",
    "smollm2-135m sample: 100%|##########| 16/16 [1:02:03<00:00, 232.7s/batch]",
    "smollm2-135m verbal1s:  50%|#    | 8/16 [00:40<00:40, 5.0s/batch]",  # killed mid-pass: no time
])


def test_the_log_gives_each_finished_pass_its_seconds_batches_and_resumed_rows():
    parsed = cost.parse_job_log(LOG)
    assert (parsed["engine"], parsed["dtype"], parsed["device"]) == ("hf", "bfloat16", "cpu")
    assert parsed["cpu"] == "Some CPU, AVX512, native bf16, 2 cores" and parsed["startup"] == 34.2
    assert parsed["passes"] == {"greedy": {"seconds": 9, "batches": 2, "resumed_rows": 16},
                                "sample": {"seconds": 3723, "batches": 16, "resumed_rows": 80}}
    assert cost.clock_seconds("01:34") == 94 and cost.clock_seconds("1:00:01") == 3601


def test_a_dataset_the_run_lacks_takes_the_median_of_its_task_type():
    measured = {("a", "test", "greedy"): {"prompt": 100.0, "generated": 10.0},
                ("b", "test", "greedy"): {"prompt": 200.0, "generated": 30.0},
                ("c", "test", "greedy"): {"prompt": 900.0, "generated": 90.0},
                ("a", "train", "greedy"): {"prompt": 50.0, "generated": 5.0}}
    task_types = {"a": "mcq", "b": "mcq", "c": "ff_num", "new": "mcq"}
    assert cost.tokens_for(measured, "a", "train", "greedy", task_types) == {"prompt": 50.0, "generated": 5.0}
    assert cost.tokens_for(measured, "b", "train", "greedy", task_types) == {"prompt": 200.0, "generated": 30.0}
    assert cost.tokens_for(measured, "new", "test", "greedy", task_types) == {"prompt": 150.0, "generated": 20.0}
    with pytest.raises(LookupError, match="no hidden pass"):
        cost.tokens_for(measured, "a", "test", "hidden", task_types)


def test_a_jobs_cpu_share_is_its_cpu_seconds_over_its_wall_seconds(tmp_path):
    benchmark = tmp_path / "job.tsv"
    benchmark.write_text("s\th:m:s\tmax_rss\tmean_load\tcpu_time\n200.0\t0:03:20\t900\t40.0\t80.0\n")
    assert cost.job_cpu_share(benchmark) == pytest.approx(0.4)
    assert math.isnan(cost.job_cpu_share(tmp_path / "missing.tsv"))

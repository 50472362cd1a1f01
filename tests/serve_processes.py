"""Real servers as subprocesses for the router tests and bench/router.py: vLLM's OpenAI server and ``uqroute serve``.

Each server gets a free port, writes its output to a log file, and is waited for through its
``/health`` endpoint with a generous deadline; :func:`stop` ends it (and its children) by its
own process group, so a failed test leaves nothing running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from uqroute.models import model_spec

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # a broken install raises more than ImportError (e.g. a missing torch operator)
        return False
    return True


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def start(command: list[str], port: int, log: Path, *, timeout: float = 600, env: dict | None = None) -> Server:
    """Start ``command`` in its own process group and wait until ``/health`` answers 200."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", **(env or {})}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                   start_new_session=True)
    server = Server(process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {process.returncode} before serving; log "
                               f"{log}:\n{server.log_text()[-4000:]}")
        if _healthy(port):
            return server
        time.sleep(1)
    stop(server)
    raise RuntimeError(f"{' '.join(command[:3])} not healthy within {timeout:.0f} s; log {log}:\n"
                       f"{server.log_text()[-4000:]}")


def stop(server: Server, timeout: float = 30) -> None:
    """SIGTERM the server's process group, SIGKILL it after ``timeout`` seconds."""
    if server.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=timeout)


def completion_format_template(model: str) -> str:
    """A Jinja chat template that renders a conversation as the registry's plain completion format does.

    A base model (Gemma 3 270M) has no chat template; vLLM's chat endpoint needs one. This one
    writes the same text as :func:`uqroute.engines.rendering.render_prompt`, BOS first.
    """
    fmt = model_spec(model).completion_format
    branches = []
    for keyword, role in zip(("if", "elif", "elif"), ("system", "user", "assistant")):
        before, after = fmt.template(role).split("{content}")
        content = "message['content'] | trim" if role == "assistant" else "message['content']"
        branches.append(f"{{%- {keyword} message['role'] == '{role}' %}}"
                        f"{{{{ {json.dumps(before)} + ({content}) + {json.dumps(after)} }}}}")
    return ("{{- bos_token }}{%- for message in messages %}" + "".join(branches) + "{%- endif %}{%- endfor %}"
            f"{{%- if add_generation_prompt %}}{{{{ {json.dumps(fmt.generation_prompt)} }}}}{{%- endif %}}")


def vllm_command(model_dir: Path, port: int, name: str, *, dtype: str, chat_template: Path | None = None) -> list[str]:
    """vLLM's OpenAI-compatible server of a local HF folder, sized for this shared CPU machine."""
    command = [str(VENV_BIN / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
               # The KV cache sized directly (512 MiB): on CPU --gpu-memory-utilization is a share of what vLLM
               # counts as the node's memory, and a small share left no room for Gemma 3 beside the other process.
               "--max-model-len", "1024", "--kv-cache-memory-bytes", str(512 * 2**20), "--enforce-eager",
               "--max-logprobs", "20"]
    if chat_template is not None:
        command += ["--chat-template", str(chat_template)]
    return command


def uqroute_command(config: Path, *extra: str) -> list[str]:
    return [str(VENV_BIN / "uqroute"), "serve", "--config", str(config), *extra]

"""A real HTTP server speaking the OpenAI chat-completions wire format, with scripted faults.

Engine tests talk to it over a socket, so the official client and its retries,
the engine's retry of unreadable answers and its cache are exercised exactly as
against a remote endpoint. Answers are deterministic (see :func:`echo_reply`);
every request is counted by its canonical body and its Authorization header
recorded; :meth:`FakeOpenAIServer.inject` queues faults that the next incoming
requests consume, one fault each.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

COMPLETIONS_PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class Reply:
    """What the fake model says: ``text``, and optionally the distribution at the first token.

    ``first_token_probs`` maps alternative tokens to probabilities; when given
    it is reported as position 0's ``top_logprobs`` (highest first) and the
    chosen token's logprob is read from it.
    """

    text: str
    first_token_probs: dict[str, float] | None = None


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build with the class methods."""

    kind: str  # "status" | "delay" | "drop" | "malformed" | "no_choices" | "garbled_logprobs"
    status: int = 200
    retry_after: float | None = None
    seconds: float = 0.0

    @classmethod
    def http(cls, status: int, retry_after: float | None = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after ``seconds`` (longer than the client's timeout)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Read the request, then close the connection without a word (a proxy or server that died)."""
        return cls("drop")

    @classmethod
    def malformed(cls) -> Fault:
        """HTTP 200 with a truncated JSON body."""
        return cls("malformed")

    @classmethod
    def no_choices(cls) -> Fault:
        """HTTP 200 with valid JSON that has no ``choices``."""
        return cls("no_choices")

    @classmethod
    def garbled_logprobs(cls) -> Fault:
        """HTTP 200 with a choice whose logprob entries lack their numbers."""
        return cls("garbled_logprobs")


Responder = Callable[[list[dict], dict, int], "Reply | str"]


def last_user_text(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")


def echo_reply(messages: list[dict], request: dict, index: int) -> Reply:
    """Greedy requests get ``"Echo: <last user message>"``; sampled ones say which sample and seed they are."""
    last = last_user_text(messages)
    if float(request.get("temperature") or 0.0) > 0.0:
        return Reply(f"Sample {index} seed {request.get('seed')}: {last}")
    return Reply(f"Echo: {last}")


def split_tokens(text: str) -> list[str]:
    """Word-level 'tokens' that keep their leading whitespace, so they join back to ``text``."""
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def position_logprob(position: int) -> float:
    """Logprob the fake model reports for the chosen token at ``position`` (distinct per position)."""
    return -0.1 * (position + 1)


def canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


@dataclass
class _State:
    faults: deque = field(default_factory=deque)
    counts: Counter = field(default_factory=Counter)
    bodies: list = field(default_factory=list)
    auth_headers: list = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


class FakeOpenAIServer:
    """Serve on 127.0.0.1 at a free port from a background thread; use as a context manager or start/stop."""

    def __init__(self, responder: Responder = echo_reply, *, report_logprobs: bool = True,
                 response_delay: float = 0.0) -> None:
        self.responder = responder
        self.report_logprobs = report_logprobs
        self.response_delay = response_delay
        self._state = _State()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # Handlers still sleeping on a delay fault must not hold up the fixture's teardown.
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each incoming request takes the oldest one (if any) instead of a normal answer."""
        with self._lock:
            self._state.faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._state.faults)

    @property
    def n_requests(self) -> int:
        with self._lock:
            return len(self._state.bodies)

    @property
    def bodies(self) -> list[dict]:
        """Every request body received, in arrival order (including the faulted ones)."""
        with self._lock:
            return list(self._state.bodies)

    @property
    def auth_headers(self) -> list[str]:
        with self._lock:
            return list(self._state.auth_headers)

    @property
    def max_in_flight(self) -> int:
        """Most requests that were being answered at the same moment."""
        with self._lock:
            return self._state.max_in_flight

    def count(self, body: dict) -> int:
        """How many times a request with exactly this body (any key order) arrived."""
        with self._lock:
            return self._state.counts[canonical(body)]

    def counts(self) -> Counter:
        with self._lock:
            return Counter(self._state.counts)

    def _record(self, body: Any, auth: str | None) -> Fault | None:
        with self._lock:
            self._state.bodies.append(body)
            self._state.counts[canonical(body)] += 1
            self._state.auth_headers.append(auth or "")
            self._state.in_flight += 1
            self._state.max_in_flight = max(self._state.max_in_flight, self._state.in_flight)
            return self._state.faults.popleft() if self._state.faults else None

    def _done(self) -> None:
        with self._lock:
            self._state.in_flight -= 1

    def completion_body(self, request: dict) -> dict:
        """The chat.completion object a well-behaved server returns for ``request``."""
        n = int(request.get("n") or 1)
        limit = request.get("max_completion_tokens") or request.get("max_tokens") or 16
        want_logprobs = bool(request.get("logprobs")) and self.report_logprobs
        n_top = int(request.get("top_logprobs") or 0)
        choices = []
        for index in range(n):
            reply = self.responder(request.get("messages", []), request, index)
            if isinstance(reply, str):
                reply = Reply(reply)
            tokens = split_tokens(reply.text)[: int(limit)]
            choice = {
                "index": index,
                "message": {"role": "assistant", "content": "".join(tokens)},
                "finish_reason": "stop" if len(tokens) < int(limit) else "length",
                "logprobs": {"content": [_token_entry(tok, pos, reply, n_top) for pos, tok in enumerate(tokens)]}
                if want_logprobs else None,
            }
            choices.append(choice)
        return {
            "id": f"chatcmpl-fake-{len(self.bodies)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", ""),
            "choices": choices,
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


def _token_entry(token: str, position: int, reply: Reply, n_top: int) -> dict:
    if position == 0 and reply.first_token_probs:
        ranked = sorted(reply.first_token_probs.items(), key=lambda kv: -kv[1])
        top = [(tok, math.log(p)) for tok, p in ranked]
        chosen = math.log(reply.first_token_probs.get(token, 1e-9))
    else:
        chosen = position_logprob(position)
        alternatives = dict.fromkeys(t for t in (token.upper(), token.lower(), token + "!") if t != token)
        top = [(token, chosen)] + [(alt, chosen - 1.0 - k) for k, alt in enumerate(alternatives)]
    return {
        "token": token,
        "logprob": chosen,
        "bytes": list(token.encode("utf-8")),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))} for t, lp in top[:n_top]],
    }


class _Handler(BaseHTTPRequestHandler):
    server_ref: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # Keep pytest output clean; tests read the server's counters instead.
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"unparsable": raw.decode("utf-8", "replace")}
        fake = self.server_ref
        fault = fake._record(body, self.headers.get("Authorization"))
        try:
            self._answer(fake, body, fault)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired); that is the point of a delay fault.
            pass
        finally:
            fake._done()

    def _answer(self, fake: FakeOpenAIServer, body: dict, fault: Fault | None) -> None:
        if self.path not in COMPLETIONS_PATHS:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            self._send(fault.status, self._error_body(fault.status), headers)
            return
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "malformed":
            self._send_raw(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind')
            return
        if fault is not None and fault.kind == "no_choices":
            self._send(200, {"id": "chatcmpl-empty", "object": "chat.completion"})
            return
        if fault is not None and fault.kind == "garbled_logprobs":
            garbled = fake.completion_body(body)
            garbled["choices"][0]["logprobs"] = {"content": [{"token": "Echo:"}]}
            self._send(200, garbled)
            return
        delay = fault.seconds if fault is not None and fault.kind == "delay" else fake.response_delay
        if delay:
            time.sleep(delay)
        self._send(200, fake.completion_body(body))

    def _error_body(self, status: int) -> dict:
        if status == 401:
            # Deliberately careless, like some real servers: echo the bearer token
            # back, so tests prove the engine scrubs it from its errors.
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            return {"error": {"message": f"Incorrect API key provided: {token}", "type": "invalid_request_error",
                              "code": "invalid_api_key"}}
        return {"error": {"message": f"injected fault {status}", "type": "server_error", "code": str(status)}}

    def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode("utf-8"), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

"""The OpenAI-compatible HTTP face of a :class:`~uqroute.serve.router.Router` (FastAPI).

``POST /v1/chat/completions`` answers a standard chat request with a standard ``chat.completion`` (or, with
``stream: true``, a stream of ``chat.completion.chunk`` events) whose ``model`` names the model that answered,
plus a ``uqroute`` object and ``x-uqroute-*`` headers carrying the routing record, the tokens and the costs. A
request may add ``"uqroute": {...}`` (the openai client's ``extra_body``): ``task_type`` and ``choices`` to be
scored as the study scores that task type, and ``method``, ``ratio`` or ``threshold`` to choose its policy
(:mod:`.policy`; the model name can say the same). ``GET /v1/models``, ``GET /v1/uqroute/card``, ``GET /health``
and ``GET /metrics`` (Prometheus text) complete it.

Every request has a deadline (``limits.request_timeout``) and is cancelled when its client disconnects: its
queued SLM calls are dropped, its follow-up passes never start and its LLM request is closed. A body over
``limits.max_body_bytes`` is refused (413) before it is read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import logging
import math
import re
import time
import uuid
from typing import Any, AsyncIterator, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, field_validator

from uqroute.datasets import TASK_TYPES

from .calibration import CalibrationError
from .policy import Policy, PolicyError, model_names, parse_policy
from .router import ContextTooLong, Decision, RoutedAnswer, Router
from .upstream import UpstreamError

log = logging.getLogger("uqroute.serve")
# The ratios /v1/models lists per method (any other ratio is asked the same way).
LISTED_RATIOS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str


class RouteHints(BaseModel):
    """How the study would pose this question (its task type and, for multiple choice, the options), and the
    request's routing policy (a served method, and a routed share or a threshold)."""

    model_config = ConfigDict(extra="forbid")
    task_type: Literal[TASK_TYPES] | None = None  # type: ignore[valid-type]
    choices: list[str] | None = Field(default=None, min_length=2)
    method: str | None = None
    ratio: float | None = Field(default=None, ge=0, le=1)
    threshold: float | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    # Unknown OpenAI fields (user, top_p, ...) are accepted and ignored, as most servers do.
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    uqroute: RouteHints | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("the router returns one choice per request; n must be 1")
        return value

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if value and value[-1].role != "user":
            raise ValueError("the last message must be the user's")
        return value


class _Gone(Exception):
    """The client disconnected before its answer."""


class _Late(Exception):
    """The request's deadline passed before its answer."""


def _error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}},
                        status_code=status)


def _field_name(location: tuple) -> str:
    # ("body", "messages", 0, "role") -> "messages.0.role"
    return ".".join(str(part) for part in location if part != "body") or "body"


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _header_number(value: float) -> str:
    return "nan" if math.isnan(value) else repr(float(value))


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413: at once when Content-Length says so, and as soon as a
    chunked body passes it (pure ASGI, so the body is never held whole)."""

    def __init__(self, app, limit: int, on_reject) -> None:
        self.app, self.limit, self.on_reject = app, int(limit), on_reject

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send)
        seen = 0

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, counted_receive, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send) -> None:
        self.on_reject()
        body = json.dumps({"error": {"message": f"request body over the limit of {self.limit} bytes "
                                                "(limits.max_body_bytes)", "type": "invalid_request_error",
                                     "param": None, "code": None}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BearerToken:
    """Requires ``Authorization: Bearer <key>`` on every path but /health (pure ASGI: a wrapping middleware would
    hide a client's disconnect from the request it wraps)."""

    def __init__(self, app, key: str, on_reject) -> None:
        self.app, self.key, self.on_reject = app, key.encode(), on_reject

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            scheme, _, token = dict(scope.get("headers") or []).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token, self.key):
                self.on_reject()
                response = _error(401, "missing or wrong bearer token (Authorization: Bearer <key>)",
                                  kind="authentication_error")
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


async def _until_disconnected(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(0.1)


async def _guarded(request: Request, work, deadline: float):
    """``work``'s result; cancelled (and :class:`_Gone` or :class:`_Late` raised) when the client disconnects or
    the deadline passes first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=max(deadline - time.monotonic(), 0),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise _Gone() if watcher in done else _Late()


def create_app(router: Router, *, served_model_name: str = "uqroute",
               api_key: str | None = None) -> FastAPI:
    """The FastAPI application; ``api_key`` (if given) is required as a bearer token except on /health."""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await router.aclose()

    app = FastAPI(title="uqroute router", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    metrics = router.metrics
    limits = router.config.limits
    created = int(time.time())
    methods = list(router.methods)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes, on_reject=lambda: metrics.rejected.labels("413").inc())

    if api_key is not None:
        app.add_middleware(BearerToken, key=api_key, on_reject=lambda: metrics.rejected.labels("401").inc())

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        field = _field_name(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        metrics.rejected.labels("400").inc()
        return _error(400, f"{field}: {message}", param=field)

    def _refuse(status: int, message: str, param: str | None) -> JSONResponse:
        metrics.rejected.labels(str(status)).inc()
        return _error(status, message, param)

    @app.get("/health")
    async def health():
        return {"status": "ok", "slm": router.slm_name, "llm": router.llm_name, "method": router.method,
                "methods": methods, "threshold": _number(router.threshold), "target_ratio": metrics.target_ratio}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "uqroute"}
            for name in model_names(served_model_name, methods, LISTED_RATIOS)]}

    @app.get("/v1/uqroute/card")
    async def card(method: str | None = None):
        name = method or router.method
        if name not in router.methods:
            return _error(404, f"method {name!r} is not served here; served: {', '.join(methods)}", "method")
        return router.card_state(name)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        deadline = time.monotonic() + limits.request_timeout
        hints = body.uqroute or RouteHints()
        try:
            policy = parse_policy(body.model, hints.model_dump(include={"method", "ratio", "threshold"}),
                                  served_name=served_model_name, methods=methods)
        except PolicyError as err:
            return _refuse(400, str(err), err.param)
        task_type = hints.task_type or router.config.default_task_type
        if task_type == "mcq" and not hints.choices:
            return _refuse(400, "uqroute.choices: task type mcq needs the options, a list of strings",
                           "uqroute.choices")
        ask = {"task_type": task_type, "choices": hints.choices,
               "max_tokens": body.max_tokens or body.max_completion_tokens}
        messages = [m.model_dump() for m in body.messages]
        started = time.monotonic()
        try:
            if body.stream:
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                return await _guarded(request, _stream(router, messages, ask, body.temperature, policy, started,
                                                       include_usage, deadline), deadline)
            answer = await _guarded(request, router.answer(messages, temperature=body.temperature, policy=policy,
                                                           **ask), deadline)
        except (PolicyError, CalibrationError) as err:
            return _refuse(400, str(err), getattr(err, "param", "uqroute"))
        except ContextTooLong as err:
            return _refuse(400, str(err), "messages")
        except UpstreamError as err:
            metrics.observe("error", time.monotonic() - started, routed=None)
            log.warning("request failed: %s", err)
            return _error(502, str(err), kind="upstream_error")
        except _Gone:
            metrics.observe("cancelled", time.monotonic() - started, routed=None)
            log.info("client disconnected; its request's work was cancelled")
            return Response(status_code=499)
        except _Late:
            metrics.observe("timeout", time.monotonic() - started, routed=None)
            return _error(504, f"no answer within the request deadline of {limits.request_timeout:g} s "
                               "(limits.request_timeout); its work was cancelled", kind="timeout_error")
        costs = router.costs(answer)
        _account(router, answer, costs, time.monotonic() - started)
        return JSONResponse(_completion(answer, router, costs), headers=_headers(answer, router, costs))

    return app


def _account(router: Router, answer: RoutedAnswer, costs: dict, seconds: float) -> None:
    path = "fallback" if answer.fallback else ("llm" if answer.model == router.llm_name else "slm")
    # A request whose policy is its own says nothing about the server's routed share.
    router.metrics.observe(path, seconds, routed=answer.routed if answer.default_policy else None)
    router.metrics.account(answer.usage, costs, router.slm_name, router.llm_name, router.config.slm.price,
                           router.config.llm.price)


def _record(answer: RoutedAnswer, router: Router, costs: dict | None) -> dict[str, Any]:
    record = {
        "routed": answer.routed, "fallback": answer.fallback, "confidence": _number(answer.confidence),
        "threshold": _number(answer.threshold), "method": answer.method, "reason": answer.reason,
        "slm_model": router.slm_name, "llm_model": router.llm_name,
    }
    if costs is not None:
        record["usage"] = {"slm": answer.usage.slm.as_dict(), "llm": answer.usage.llm.as_dict(),
                           "slm_prompt_tokens_counted": router.counter is not None}
        record["cost"] = costs
    return record


def _completion(answer: RoutedAnswer, router: Router, costs: dict) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                     "finish_reason": answer.finish_reason, "logprobs": None}],
        "usage": answer.usage.openai_usage(),
        "uqroute": _record(answer, router, costs),
    }


def _headers(answer: RoutedAnswer, router: Router, costs: dict | None) -> dict[str, str]:
    headers = {
        "x-uqroute-routed": str(answer.routed).lower(),
        "x-uqroute-fallback": str(answer.fallback).lower(),
        "x-uqroute-confidence": _header_number(answer.confidence),
        "x-uqroute-threshold": _header_number(answer.threshold),
        "x-uqroute-method": answer.method,
        "x-uqroute-model": answer.model,
    }
    if costs is not None:
        headers["x-uqroute-cost-usd"] = repr(costs["cost_usd"])
        headers["x-uqroute-savings-usd"] = repr(costs["savings_usd"])
    return headers


# ---------------------------------------------------------------------- streaming

_WORDS = re.compile(r"\S+\s*|\s+")


async def _stream(router: Router, messages, ask: dict, temperature, policy: Policy, started: float,
                  include_usage: bool, deadline: float) -> Response:
    """Decide, then open the answer's source before the response starts (so its headers carry the route, and an
    LLM that fails before its first token can still be answered by the SLM), and stream it."""
    decision = await router.decide(messages, policy=policy, **ask)
    llm_deltas = None
    if not decision.routed:
        answer = router.slm_routed_answer(decision, fallback=False)
    else:
        try:
            llm_deltas = await router.llm.open_stream(messages, max_tokens=router.llm_budget(ask["max_tokens"]),
                                                      temperature=temperature or 0.0)
            answer = router.llm_routed_answer(decision)
        except UpstreamError as err:
            answer = await router.after_llm_failure(err, decision, messages, **ask)
    events = _events(router, answer, decision, llm_deltas, started, include_usage, deadline)
    return StreamingResponse(events, media_type="text/event-stream", headers=_headers(answer, router, None))


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _events(router: Router, answer: RoutedAnswer, decision: Decision, llm_deltas: AsyncIterator | None,
                  started: float, include_usage: bool, deadline: float) -> AsyncIterator[str]:
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish_reason: str | None = None, **extra) -> str:
        return _sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                     "model": answer.model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                         "finish_reason": finish_reason}], **extra})

    finished = False
    try:
        # The route first, before any text.
        yield chunk({"role": "assistant", "content": ""}, uqroute=_record(answer, router, None))
        if llm_deltas is None:
            for piece in _WORDS.findall(answer.text):
                yield chunk({"content": piece})
            finish_reason = answer.finish_reason
        else:
            finish_reason, written = "stop", 0
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                    async for delta in llm_deltas:
                        if delta.content:
                            yield chunk({"content": delta.content})
                        if delta.finish_reason:
                            finish_reason = delta.finish_reason
                        if delta.prompt_tokens is not None:
                            decision.usage.llm.add(delta.prompt_tokens, delta.completion_tokens or 0)
                            written = delta.completion_tokens or 0
            except (UpstreamError, TimeoutError) as err:
                # As OpenAI's servers end a broken stream: an error event, then the end of the stream.
                message = str(err) if isinstance(err, UpstreamError) else "the request deadline passed mid-stream"
                log.warning("stream ended early: %s", message)
                router.metrics.observe("error", time.monotonic() - started, routed=None)
                finished = True
                yield _sse({"error": {"message": message, "type": "upstream_error", "param": None, "code": None}})
                return
            answer = dataclasses.replace(answer, finish_reason=finish_reason, completion_tokens=written)
        yield chunk({}, finish_reason)
        costs = router.costs(answer)
        _account(router, answer, costs, time.monotonic() - started)
        finished = True
        if include_usage:
            yield _sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                        "model": answer.model, "choices": [], "usage": answer.usage.openai_usage(),
                        "uqroute": _record(answer, router, costs)})
        yield "data: [DONE]\n\n"
    finally:
        if llm_deltas is not None:
            await llm_deltas.aclose()
        if not finished:  # the client went away mid-stream
            router.metrics.observe("cancelled", time.monotonic() - started, routed=None)

"""The OpenAI-compatible HTTP face of a :class:`~uqroute.serve.router.Router` (FastAPI).

``POST /v1/chat/completions`` answers a standard chat request with a standard
``chat.completion`` whose ``model`` names the model that answered, plus a ``uqroute`` object
and ``x-uqroute-*`` headers carrying the routing record. A request may add
``"uqroute": {"task_type": ..., "choices": [...]}`` (the openai client's ``extra_body``) to
be scored as the study scores that task type; without it the configured default applies.
``GET /v1/models``, ``GET /health`` and ``GET /metrics`` (Prometheus text) complete it.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
import uuid
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, field_validator

from uqroute.datasets import TASK_TYPES

from .router import Router, RoutedAnswer, UpstreamError

log = logging.getLogger("uqroute.serve")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str


class RouteHints(BaseModel):
    """How the study would pose this question: its task type and, for multiple choice, the options."""

    model_config = ConfigDict(extra="forbid")
    task_type: Literal[TASK_TYPES] | None = None  # type: ignore[valid-type]
    choices: list[str] | None = Field(default=None, min_length=2)


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
    uqroute: RouteHints | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("the router returns one choice per request; n must be 1")
        return value

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value: bool) -> bool:
        if value:
            raise ValueError("streaming is not supported: the route is known only once the SLM's answer is scored")
        return value

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if value and value[-1].role != "user":
            raise ValueError("the last message must be the user's")
        return value



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


def create_app(router: Router, *, served_model_name: str = "uqroute",
               api_key: str | None = None) -> FastAPI:
    """The FastAPI application; ``api_key`` (if given) is required as a bearer token except on /health."""
    app = FastAPI(title="uqroute router", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = router.metrics
    created = int(time.time())

    @app.middleware("http")
    async def _bearer(request: Request, call_next):
        if api_key is not None and request.url.path != "/health":
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
                metrics.rejected.labels("401").inc()
                return _error(401, "missing or wrong bearer token (Authorization: Bearer <key>)",
                              kind="authentication_error")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        field = _field_name(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        metrics.rejected.labels("400").inc()
        return _error(400, f"{field}: {message}", param=field)

    @app.get("/health")
    async def health():
        return {"status": "ok", "slm": router.slm_name, "llm": router.llm_name, "method": router.method,
                "threshold": _number(router.threshold), "target_ratio": metrics.target_ratio}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [
            {"id": served_model_name, "object": "model", "created": created, "owned_by": "uqroute"},
        ]}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        if body.model != served_model_name:
            metrics.rejected.labels("400").inc()
            return _error(400, f"model: this router serves {served_model_name!r}, not {body.model!r}", "model")
        hints = body.uqroute or RouteHints()
        task_type = hints.task_type or router.config.default_task_type
        if task_type == "mcq" and not hints.choices:
            metrics.rejected.labels("400").inc()
            return _error(400, "uqroute.choices: task type mcq needs the options, a list of strings",
                          "uqroute.choices")
        started = time.monotonic()
        try:
            answer = await router.answer(
                [m.model_dump() for m in body.messages],
                task_type=task_type, choices=hints.choices,
                max_tokens=body.max_tokens or body.max_completion_tokens, temperature=body.temperature,
            )
        except UpstreamError as err:
            metrics.observe("error", time.monotonic() - started, routed=None)
            log.warning("request failed: %s", err)
            return _error(502, str(err), kind="upstream_error")
        path = "fallback" if answer.fallback else ("llm" if answer.routed else "slm")
        metrics.observe(path, time.monotonic() - started, routed=answer.routed)
        return JSONResponse(_completion(answer, router), headers=_headers(answer, router))

    return app


def _completion(answer: RoutedAnswer, router: Router) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                     "finish_reason": answer.finish_reason, "logprobs": None}],
        "uqroute": {
            "routed": answer.routed, "fallback": answer.fallback, "confidence": _number(answer.confidence),
            "threshold": _number(answer.threshold), "method": router.method, "slm_model": router.slm_name,
            "llm_model": router.llm_name,
        },
    }


def _headers(answer: RoutedAnswer, router: Router) -> dict[str, str]:
    return {
        "x-uqroute-routed": str(answer.routed).lower(),
        "x-uqroute-fallback": str(answer.fallback).lower(),
        "x-uqroute-confidence": _header_number(answer.confidence),
        "x-uqroute-threshold": _header_number(answer.threshold),
        "x-uqroute-method": router.method,
        "x-uqroute-model": answer.model,
    }

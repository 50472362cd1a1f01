"""The LLM behind the router: any OpenAI-compatible endpoint, asked asynchronously, whole or streamed.

Asynchronous (``openai.AsyncOpenAI``) so that a request the client gave up on, or whose deadline passed, is
cancelled where it stands: the HTTP request to the LLM is closed, and a vLLM server aborts its generation.
Retries are the openai client's (``llm.max_retries``, ``llm.timeout`` per attempt). A stream is opened and read
up to its first chunk before the router commits to it, so an LLM that fails before its first token can still be
answered by the SLM (``llm.on_failure: fallback``). Whole answers go through the on-disk request cache when
``llm.cache_dir`` is set. The API key is never written into a message or a log line.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any, AsyncIterator

import httpx
import openai

from uqroute.engines.base import Conversation
from uqroute.engines.cache import RequestCache

from .config import LLMSettings


class UpstreamError(RuntimeError):
    """A model behind the router did not answer; the message names which (never a key)."""


@dataclass(frozen=True)
class LLMReply:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class StreamedDelta:
    """One piece of a streamed LLM answer: text, the finish reason at the end, the usage after that."""

    content: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class LLMClient:
    """Chat completions from the LLM's endpoint, at most ``max_concurrency`` at a time."""

    def __init__(self, settings: LLMSettings) -> None:
        self.name = settings.model
        self.model = settings.api_model or settings.model
        self.max_tokens = settings.max_tokens
        # Servers without auth still need a non-empty bearer value from the client.
        self._secret = os.environ[settings.api_key_env] if settings.api_key_env else ""
        self._client = openai.AsyncOpenAI(base_url=settings.base_url, api_key=self._secret or "no-key",
                                          timeout=settings.timeout, max_retries=settings.max_retries)
        self.endpoint = str(self._client.base_url).rstrip("/")
        self.cache = RequestCache(settings.cache_dir) if settings.cache_dir else None
        self._slots = asyncio.Semaphore(settings.max_concurrency)

    def _request(self, messages: Conversation, max_tokens: int, temperature: float) -> dict[str, Any]:
        return {"model": self.model, "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                "max_tokens": int(max_tokens), "temperature": float(temperature)}

    def _failure(self, err: Exception) -> UpstreamError:
        detail = str(err)
        if isinstance(err, openai.APIStatusError):
            detail = f"HTTP {err.status_code}: {err.message}"
        if self._secret:
            detail = detail.replace(self._secret, "[redacted]")
        return UpstreamError(f"LLM {self.name} ({self.model}) at {self.endpoint} failed: {detail}")

    async def complete(self, messages: Conversation, *, max_tokens: int, temperature: float) -> LLMReply:
        """The whole answer; :class:`UpstreamError` once the retries are spent."""
        request = self._request(messages, max_tokens, temperature)
        cache_key = {"base_url": self.endpoint, **request}
        response = self.cache.get(cache_key) if self.cache is not None else None
        if response is None:
            async with self._slots:
                try:
                    response = (await self._client.chat.completions.create(**request)).model_dump()
                except (openai.APIError, httpx.HTTPError, ValueError) as err:
                    raise self._failure(err) from None
            if not response.get("choices"):
                raise UpstreamError(f"LLM {self.name} ({self.model}) at {self.endpoint}: an answer without choices")
            if self.cache is not None:
                self.cache.put(cache_key, response)
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        return LLMReply(text=(choice.get("message") or {}).get("content") or "",
                        finish_reason=choice.get("finish_reason") or "stop",
                        prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0))

    async def open_stream(self, messages: Conversation, *, max_tokens: int,
                          temperature: float) -> AsyncIterator[StreamedDelta]:
        """The answer as it is written. Returns once the first chunk has arrived (:class:`UpstreamError` if it
        did not); iterating the result yields the rest, and raises :class:`UpstreamError` if the stream breaks."""
        request = {**self._request(messages, max_tokens, temperature), "stream": True,
                   "stream_options": {"include_usage": True}}
        await self._slots.acquire()
        try:
            stream = await self._client.chat.completions.create(**request)
            chunks = stream.__aiter__()
            first = await chunks.__anext__()
        except StopAsyncIteration:
            self._slots.release()
            raise UpstreamError(f"LLM {self.name} ({self.model}) at {self.endpoint}: the stream ended empty") from None
        except (openai.APIError, httpx.HTTPError, ValueError) as err:
            self._slots.release()
            raise self._failure(err) from None
        except BaseException:
            self._slots.release()
            raise
        return self._rest(stream, chunks, first)

    async def _rest(self, stream, chunks, first) -> AsyncIterator[StreamedDelta]:
        try:
            chunk = first
            while True:
                yield _delta(chunk)
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
                except (openai.APIError, httpx.HTTPError, ValueError) as err:
                    raise self._failure(err) from None
        finally:
            self._slots.release()
            await stream.close()

    async def close(self) -> None:
        await self._client.close()


def _delta(chunk) -> StreamedDelta:
    delta = StreamedDelta()
    if chunk.choices:
        choice = chunk.choices[0]
        delta.content = (choice.delta.content if choice.delta is not None else None) or ""
        delta.finish_reason = choice.finish_reason
    if chunk.usage is not None:
        delta.prompt_tokens = chunk.usage.prompt_tokens
        delta.completion_tokens = chunk.usage.completion_tokens
    return delta

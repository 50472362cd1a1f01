"""Any OpenAI-compatible chat-completions endpoint (GPT-4o mini, a ``vllm serve`` node, ...).

Every request goes through an on-disk :class:`~uqroute.engines.cache.RequestCache`
first, so reruns cost nothing. Retries are the openai client's own (``max_retries``):
it retries 408, 409, 429, 5xx, timeouts and dropped connections, waiting 0.5 s
doubling to 8 s, or as long as the server's ``Retry-After`` asks (up to 2 min), and
logs each retry. The client does not look inside a 200 answer, so an unreadable
body (not JSON, or not a chat.completion) is asked again here, from the same
budget of attempts. Anything else fails at once with an :class:`EngineError`
naming the model, the endpoint and the status. The API key is read from the
environment variable named in the config and is never written to the cache, an
error message or a log line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any, Sequence

import numpy as np
import openai
from tqdm.auto import tqdm

from .base import Completion, Conversation, EngineError, Sampling
from .cache import RequestCache

log = logging.getLogger(__name__)

# The most alternatives OpenAI returns per position; p(True) needs them all.
MAX_TOP_LOGPROBS = 20
# next_token_probs asks for one greedy token and reads the alternatives reported at it.
FIRST_TOKEN = Sampling(max_new_tokens=1)
_ROLES = frozenset({"system", "user", "assistant"})
# The openai client numbers each attempt of a request in this header (0 for the first).
_RETRY_COUNT_HEADER = "x-stainless-retry-count"


def _attempts_of(request: Any) -> int:
    """How many times the client had sent the request whose last attempt is ``request``."""
    return int(request.headers.get(_RETRY_COUNT_HEADER, 0)) + 1


def _read_completion(body: bytes) -> tuple[dict | None, str | None]:
    """The parsed chat.completion, or None and what is wrong with ``body``."""
    try:
        response = json.loads(body)
    except ValueError:
        return None, f"not JSON, {len(body)} bytes"
    problem = _shape_problem(response)
    return (None, problem) if problem else (response, None)


def _shape_problem(response: Any) -> str | None:
    """What keeps ``response`` from being a chat.completion we can read, or None when it is one."""
    if not isinstance(response, dict) or not isinstance(response.get("choices"), list) or not response["choices"]:
        return "no choices"
    for choice in response["choices"]:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            return "a choice without a message"
        logprobs = choice.get("logprobs") or {}
        entries = logprobs.get("content") if isinstance(logprobs, dict) else None
        for entry in entries or []:
            top = entry.get("top_logprobs") or [] if isinstance(entry, dict) else []
            if not (_is_token_logprob(entry) and isinstance(top, list) and all(map(_is_token_logprob, top))):
                return "a logprobs entry without token and logprob"
    return None


def _is_token_logprob(entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("token"), str)
            and isinstance(entry.get("logprob"), (int, float)) and not isinstance(entry.get("logprob"), bool))


class OpenAIEngine:
    """Engine over an OpenAI-compatible ``/chat/completions`` endpoint.

    ``model_name`` is the registry name (used in file paths and messages);
    ``model`` is what the endpoint calls the model. ``cache_dir=None`` turns the
    on-disk cache off (every call is a request). ``api_key_env=None`` is for
    local servers that take no key. ``token_limit_param`` names the request
    field carrying the length limit (``max_tokens``, understood by every
    compatible server, or ``max_completion_tokens`` for OpenAI models that
    require it). Token logprobs are whatever the endpoint reports (OpenAI and
    vLLM report them under the unmodified model distribution). ``max_retries``
    attempts may follow the first, whether the client retries a failure or this
    engine an unreadable answer.
    """

    def __init__(
        self,
        model_name: str,
        *,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        cache_dir: str | os.PathLike | None,
        max_retries: int = 6,
        timeout: float = 60.0,
        max_concurrency: int = 4,
        token_limit_param: str = "max_tokens",
    ) -> None:
        if max_retries < 0 or max_concurrency < 1:
            raise ValueError(f"{model_name}: need max_retries >= 0 and max_concurrency >= 1, "
                             f"got {max_retries} and {max_concurrency}")
        if token_limit_param not in ("max_tokens", "max_completion_tokens"):
            raise ValueError(f"{model_name}: token_limit_param must be max_tokens or max_completion_tokens, "
                             f"got {token_limit_param!r}")
        self.model_name = model_name
        self.dtype = None  # the endpoint's weights are its own affair
        self.model = model
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self.token_limit_param = token_limit_param
        self.cache = RequestCache(cache_dir) if cache_dir is not None else None
        if api_key_env is None:
            # Servers without auth still need a non-empty bearer value from the client.
            api_key = "no-key"
        else:
            api_key = os.environ.get(api_key_env, "")
            if not api_key:
                where = base_url or "the OpenAI API"
                raise EngineError(f"model {model_name} ({model}) at {where}: environment variable "
                                  f"{api_key_env} is not set or empty; it must hold the API key")
        self._secret = api_key
        self._lock = threading.Lock()
        # The request hook counts every attempt, retries included (the client sends those itself).
        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._count_request]})
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=self.timeout,
                                     max_retries=max_retries, http_client=http_client)
        self.endpoint = str(self._client.base_url).rstrip("/")
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix=f"openai-{model_name}")
        self.n_requests = 0
        self.n_cache_hits = 0

    def __repr__(self) -> str:
        return f"OpenAIEngine({self.model_name!r}, model={self.model!r}, endpoint={self.endpoint!r})"

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def generate(self, conversations: Sequence[Conversation], sampling: Sampling) -> list[list[Completion]]:
        """``sampling.n`` completions per conversation, one request each (``n`` is sent as the API's ``n``).

        ``tokens``/``token_logprobs`` come from ``choices[i].logprobs.content``
        and are empty when the endpoint reports no logprobs; ``token_ids`` are
        always empty (the API does not expose them).
        """
        requests = [self._request(conv, sampling) for conv in conversations]
        responses = self._post_all(requests)
        return [self._completions(response, sampling.n) for response in responses]

    def next_token_probs(self, conversations: Sequence[Conversation], candidates: Sequence[str]) -> np.ndarray:
        """Shape ``(len(conversations), len(candidates))``: p(next token = candidate) from the top-20 logprobs.

        A candidate's probability is the summed ``exp(logprob)`` of the top
        alternatives at the first position whose text, stripped of whitespace and
        case-folded, equals the candidate's, as the local engines count it
        (:func:`~.rendering.candidate_token_sets`): ``"True"``, ``" true"`` and ``"TRUE"``
        are the same answer. A candidate outside the top 20 gets 0 (its true probability
        is below the 20th alternative's).
        """
        requests = [self._request(conv, FIRST_TOKEN, top_logprobs=MAX_TOP_LOGPROBS) for conv in conversations]
        responses = self._post_all(requests)
        wanted = [c.strip().casefold() for c in candidates]
        probs = np.zeros((len(requests), len(wanted)), dtype=np.float64)
        for row, response in enumerate(responses):
            for token, logprob in self._first_top_logprobs(response):
                for col, candidate in enumerate(wanted):
                    if token.strip().casefold() == candidate:
                        probs[row, col] += math.exp(logprob)
        return probs

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()
        log.info("%s: %d requests sent, %d answered from cache", self.model_name, self.n_requests, self.n_cache_hits)

    def _request(self, conversation: Conversation, sampling: Sampling, *,
                 top_logprobs: int | None = None) -> dict[str, Any]:
        messages = []
        for i, message in enumerate(conversation):
            role, content = message.get("role"), message.get("content")
            if role not in _ROLES or not isinstance(content, str):
                raise ValueError(f"model {self.model_name}: message {i} must have a role in {sorted(_ROLES)} "
                                 f"and string content, got role={role!r}")
            messages.append({"role": role, "content": content})
        # Sampling has cast its numbers, so 0 and 0.0 spell the same cache key.
        request: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            self.token_limit_param: sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "n": sampling.n,
            "seed": sampling.seed,
            "logprobs": True,
        }
        if top_logprobs is not None:
            request["top_logprobs"] = int(top_logprobs)
        return request

    def _post_all(self, requests: list[dict[str, Any]]) -> list[dict]:
        """Responses aligned with ``requests``; identical ones are sent once, ``max_concurrency`` at a time."""
        unique: dict[str, dict[str, Any]] = {}
        keys = []
        for request in requests:
            key = RequestCache.key(request)
            unique.setdefault(key, request)
            keys.append(key)
        if len(unique) == 1:
            ((key, request),) = unique.items()
            answers = {key: self._post(request)}
        else:
            futures: dict[str, Future] = {key: self._pool.submit(self._post, req) for key, req in unique.items()}
            # A bar per call: a split's worth of paid requests can take minutes (TQDM_DISABLE=1 hides it).
            with tqdm(total=len(futures), desc=f"{self.model_name} requests", unit="req", leave=False) as bar:
                for future in futures.values():
                    future.add_done_callback(lambda _: bar.update())
                done, pending = wait(futures.values(), return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                # Answers already received are cached, so a rerun resumes where this stopped.
                for future in pending:
                    future.cancel()
                raise failed[0].exception()
            answers = {key: future.result() for key, future in futures.items()}
        return [answers[key] for key in keys]

    def _post(self, request: dict[str, Any]) -> dict:
        cache_request = {"base_url": self.endpoint, **request}
        if self.cache is not None:
            cached = self.cache.get(cache_request)
            if cached is not None:
                with self._lock:
                    self.n_cache_hits += 1
                return cached
        attempts = 0
        while True:
            # After an unreadable answer, the client may retry only what is left of the budget.
            client = self._client.with_options(max_retries=self.max_retries - attempts) if attempts else self._client
            try:
                raw = client.chat.completions.with_raw_response.create(**request)
            except openai.APIError as err:
                raise self._gave_up(err, attempts + _attempts_of(err.request)) from None
            attempts += raw.retries_taken + 1
            response, problem = _read_completion(raw.http_response.content)
            if response is not None:
                # Checked before caching, so a garbled answer is asked again rather than remembered.
                if self.cache is not None:
                    self.cache.put(cache_request, response)
                return response
            if attempts > self.max_retries:
                raise EngineError(f"model {self.model_name} ({self.model}) at {self.endpoint}: gave up after "
                                  f"{attempts} attempts; last error: malformed response body ({problem})")
            # At once: the server did answer, so there is no load to wait out.
            log.warning("model %s at %s: malformed response body (%s); retry %d of %d", self.model_name,
                        self.endpoint, problem, attempts, self.max_retries)

    def _count_request(self, request: Any) -> None:
        with self._lock:
            self.n_requests += 1

    def _gave_up(self, err: openai.APIError, attempts: int) -> EngineError:
        """The engine's error for the client's: model, endpoint, attempts made and the last failure."""
        if isinstance(err, openai.APIStatusError):
            reason = f"HTTP {err.status_code}: {self._server_message(err)}"
        elif isinstance(err, openai.APITimeoutError):
            reason = f"no answer within {self.timeout:g} s"
        else:
            reason = f"connection error ({self._scrub(str(err.__cause__ or err))})"
        tried = f"gave up after {attempts} attempts; last error: " if attempts > 1 else ""
        return EngineError(f"model {self.model_name} ({self.model}) at {self.endpoint}: {tried}{reason}")

    def _server_message(self, err: openai.APIStatusError) -> str:
        body = err.body
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, dict) else None
            text = str(message) if message else json.dumps(body)[:300]
        else:
            text = (err.response.text or "")[:300]
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        # Some servers echo the bearer token back in their error bodies.
        return text.replace(self._secret, "[redacted]") if self._secret else text

    def _completions(self, response: dict, n: int) -> list[Completion]:
        choices = sorted(response["choices"], key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise EngineError(f"model {self.model_name} ({self.model}) at {self.endpoint}: asked for n={n} "
                              f"completions, got {len(choices)} (does the endpoint support n?)")
        out = []
        for choice in choices:
            message = choice.get("message") or {}
            content = (choice.get("logprobs") or {}).get("content") or []
            out.append(Completion(
                text=message.get("content") or "",
                tokens=[entry["token"] for entry in content],
                token_logprobs=[float(entry["logprob"]) for entry in content],
            ))
        return out

    def _first_top_logprobs(self, response: dict) -> list[tuple[str, float]]:
        content = (response["choices"][0].get("logprobs") or {}).get("content") or []
        if not content or not content[0].get("top_logprobs"):
            raise EngineError(f"model {self.model_name} ({self.model}) at {self.endpoint}: the response has no "
                              "top_logprobs, so next-token probabilities cannot be read")
        return [(entry["token"], float(entry["logprob"])) for entry in content[0]["top_logprobs"]]

"""Concurrent requests into one engine call: a single worker thread owns the engine.

Requests wait in a queue, grouped by call (``generate`` with an equal
:class:`~uqroute.engines.base.Sampling`, ``next_token_probs`` with the same candidates); the worker
makes one engine call per group, oldest group first, at most ``max_batch_size`` conversations each.
The HF and vLLM engines batch inside that call, so throughput grows with concurrency; an API engine
sends the group's requests in parallel. One thread also keeps the in-process engines, which are not
thread-safe, to one call at a time.

An idle worker that gets a job waits up to ``max_wait`` seconds for more, but only while a request
it was told about (:meth:`EngineBatcher.expecting`) has not sent its job yet: a lone request starts
at once, and a burst stops waiting once all of it is in. Jobs that queue while a call runs join
their group before the next call (a follow-up pass merges with those of other requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator

import numpy as np

from uqroute.engines.base import Completion, Conversation, Engine, Interrupted, Sampling

log = logging.getLogger(__name__)
_POLL = 0.002  # seconds between looks at the in-flight count while waiting for jobs


@dataclass
class _Job:
    call: str  # "generate", "next_token_probs" or "hidden_states"
    # The call's argument besides the conversations (a Sampling, the candidates, the layer); jobs with equal
    # (call, params) share an engine call.
    params: Hashable
    conversation: Conversation
    future: Future = field(default_factory=Future)
    # Set when the request waiting for this job is gone (client disconnected, deadline passed).
    abandoned: bool = False


class EngineBatcher:
    """Runs ``engine`` in one thread, merging concurrent single-conversation calls into batches."""

    def __init__(self, engine: Engine, *, max_batch_size: int = 32, max_wait: float = 0.01,
                 on_batch: Callable[[str, int], None] | None = None) -> None:
        self.engine = engine
        self.max_batch_size = int(max_batch_size)
        self.max_wait = float(max_wait)
        self.on_batch = on_batch  # told the kind and size of every engine call (the engine metrics)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        # Requests between their first and last SLM call (changed on the event loop's thread only).
        self._in_flight = 0
        self._thread = threading.Thread(target=self._work, name=f"batcher-{engine.model_name}", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Marks a request that will send jobs while the block runs: an idle worker waits for its job (up to
        ``max_wait``) rather than starting a batch without it."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def generate(self, conversation: Conversation, sampling: Sampling) -> list[Completion]:
        """The ``sampling.n`` completions of one conversation (see :meth:`uqroute.engines.base.Engine.generate`)."""
        return await self._submit("generate", sampling, conversation)

    async def next_token_probs(self, conversation: Conversation, candidates: tuple[str, ...]) -> np.ndarray:
        """Probabilities ``(len(candidates),)`` of the candidates as the assistant's next token."""
        return await self._submit("next_token_probs", tuple(candidates), conversation)

    async def hidden_states(self, conversation: Conversation, layer: int) -> np.ndarray:
        """The hidden state ``(hidden_size,)`` of layer ``layer`` at the conversation's last token."""
        return await self._submit("hidden_states", int(layer), conversation)

    async def _submit(self, call: str, params: Hashable, conversation: Conversation) -> Any:
        job = _Job(call, params, conversation)
        self._queue.put(job)
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            # A queued job is skipped (its future is cancelled too); a running one stops at the engine's next
            # interrupt check once every job of its call is abandoned.
            job.abandoned = True
            raise

    def _more_expected(self, collected: int) -> bool:
        # With no request announced (a caller that does not use `expecting`), any of them may send more: wait.
        in_flight = self._in_flight
        return in_flight == 0 or collected < in_flight

    def _collect(self, first: _Job) -> list[_Job | None]:
        """``first`` and what arrives while an announced request's job is still missing (``max_wait`` at most)."""
        jobs: list[_Job | None] = [first]
        deadline = time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch_size:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._more_expected(len(jobs)):
                    break
                try:
                    # Short steps: a request may leave (and stop being waited for) without sending a job.
                    job = self._queue.get(timeout=min(remaining, _POLL))
                except queue.Empty:
                    continue
            jobs.append(job)
            if job is None:  # closing: serve what was collected, then stop
                break
        return jobs

    def _drain(self) -> list[_Job | None]:
        jobs: list[_Job | None] = []
        while True:
            try:
                jobs.append(self._queue.get_nowait())
            except queue.Empty:
                return jobs

    def _work(self) -> None:
        pending: dict[tuple, list[_Job]] = {}  # by (call, params), oldest group first
        closing = False
        while True:
            if not pending:
                if closing:
                    return
                first = self._queue.get()
                if first is None:
                    return
                arrived = self._collect(first)
            else:
                arrived = self._drain()  # what queued during the last call joins its group
            for job in arrived:
                if job is None:
                    closing = True
                else:
                    pending.setdefault((job.call, job.params), []).append(job)
            key = next(iter(pending))
            jobs = pending.pop(key)
            if len(jobs) > self.max_batch_size:  # the rest waits behind the other groups
                pending[key] = jobs[self.max_batch_size:]
                jobs = jobs[: self.max_batch_size]
            self._run(*key, jobs)

    def _run(self, call: str, params: Hashable, jobs: list[_Job]) -> None:
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        conversations = [job.conversation for job in live]
        if self.on_batch is not None:
            self.on_batch(call, len(live))
        interruptible = hasattr(self.engine, "interrupt")
        if interruptible:
            self.engine.interrupt = lambda: all(job.abandoned for job in live)
        try:
            if call == "generate":
                results = self.engine.generate(conversations, params)
            elif call == "hidden_states":
                results = list(self.engine.hidden_states(conversations, params))
            else:
                results = list(self.engine.next_token_probs(conversations, list(params)))
        except Exception as err:  # every waiting request gets the failure, the worker lives on
            if isinstance(err, Interrupted):
                log.info("%s %s for %d abandoned request(s) stopped early", self.engine.model_name, call, len(live))
            else:
                log.warning("%s %s failed for a batch of %d: %s", self.engine.model_name, call, len(live), err)
            for job in live:
                job.future.set_exception(err)
            return
        finally:
            if interruptible:
                self.engine.interrupt = None
        for job, result in zip(live, results):
            job.future.set_result(result)

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued work, stop the worker, then close the engine. With ``timeout``, wait at most that
        long: a worker still inside an engine call is left to die with the process (a daemon thread), since an
        engine call cannot be interrupted."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("%s: an engine call still running after %.0f s; not waiting for it",
                        self.engine.model_name, timeout)
            return
        self.engine.close()

"""The one small interface every engine implements.

A *conversation* is a list of chat messages ``{"role": ..., "content": ...}``
(roles ``system``, ``user``, ``assistant``). Engines render it themselves: a
chat template where the model has one, the model registry's plain completion
format where it has none, or the API's native message list.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

Message = dict[str, str]
Conversation = list[Message]


@dataclass(frozen=True)
class Completion:
    """One generated reply.

    ``token_logprobs[i]`` is log p(token i | prompt, tokens < i) under the
    model's own distribution (temperature 1, no top-p), whatever temperature was
    used to pick the token; ``tokens[i]`` is that token decoded on its own, so
    ``"".join(tokens)`` reproduces ``text`` up to tokenizer whitespace handling.
    """

    text: str
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Sampling:
    """How an engine decodes: the one argument of :meth:`Engine.generate`, as vLLM's ``SamplingParams``.

    ``max_new_tokens``: the most tokens one completion may have. ``temperature`` 0 means greedy decoding;
    above 0, tokens are sampled from the distribution at that temperature, restricted to the smallest set of
    tokens whose probability reaches ``top_p``. ``n``: completions per conversation. ``seed``: with
    temperature > 0, the same seed gives the same samples. Values are checked and cast to their types here,
    so equal settings compare (and hash) equal, as the router's batcher groups requests by them.
    """

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            try:
                # operator.index refuses a float, where int() would silently drop its fraction.
                cast = float(value) if spec.type == "float" else operator.index(value)
            except (TypeError, ValueError):
                raise ValueError(f"Sampling: {spec.name} must be a number"
                                 f"{'' if spec.type == 'float' else ' (an integer)'}, got {value!r}") from None
            object.__setattr__(self, spec.name, cast)
        if self.max_new_tokens < 1:
            raise ValueError(f"Sampling: max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise ValueError(f"Sampling: temperature must be >= 0 (0: greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Sampling: top_p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise ValueError(f"Sampling: n must be >= 1, got {self.n}")
        if self.seed < 0:
            raise ValueError(f"Sampling: seed must be >= 0, got {self.seed}")


@runtime_checkable
class Engine(Protocol):
    """What a pass needs from a model, whoever serves it."""

    model_name: str
    # The weights' dtype after ``auto`` is resolved on this machine; None behind an API.
    dtype: str | None

    def generate(self, conversations: Sequence[Conversation], sampling: Sampling) -> list[list[Completion]]:
        """``sampling.n`` completions per conversation (outer list aligned with the input), decoded as
        ``sampling`` says."""
        ...

    def next_token_probs(self, conversations: Sequence[Conversation], candidates: Sequence[str]) -> np.ndarray:
        """Probability of each candidate as the assistant's next token.

        Returns shape ``(len(conversations), len(candidates))``: softmax over the
        full vocabulary, summed over every token that writes the candidate alone,
        whatever its case and surrounding whitespace (not renormalised).
        """
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class ReadsHiddenStates(Protocol):
    """An optional capability: an engine that runs the model in process can read its hidden states (the hf
    engine); vLLM and an API expose none. A hidden-state pass asks :func:`hidden_state_reader` for it."""

    model_name: str

    def hidden_states(self, conversations: Sequence[Conversation], layer: int) -> np.ndarray:
        """Hidden state of ``layer`` (negative counts from the last) at the last token.

        Only a prefill is run (the conversation ends with the assistant's reply, or with the question where the
        reply would start). Returns float32 of shape ``(len(conversations), hidden_size)``.
        """
        ...


@runtime_checkable
class CountsTokens(Protocol):
    """An optional capability: an engine that tokenizes in process (hf, vllm) can say how long a conversation's
    prompt is and how long a context its model reads. The router checks a request against it before any work,
    and counts the tokens each of its passes read."""

    context_window: int

    def prompt_lengths(self, conversations: Sequence[Conversation]) -> list[int]:
        """Tokens of each conversation's rendered prompt, as the engine would feed it to the model."""
        ...


class EngineError(RuntimeError):
    """A model could not answer; the message names the model and, for APIs, the endpoint."""


class Interrupted(EngineError):
    """An engine call stopped early because its ``interrupt`` check said nobody waits for it any more."""


def hidden_state_reader(engine) -> ReadsHiddenStates:
    """``engine``, where it can read hidden states; otherwise an error that names the model and the way out."""
    if not isinstance(engine, ReadsHiddenStates):
        raise EngineError(f"model {engine.model_name}: a {type(engine).__name__} exposes no hidden states; "
                          "hidden-state passes run on an engine of kind 'hf' (transformers, in process)")
    return engine

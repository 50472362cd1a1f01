"""What the HF and vLLM engines share: prompt rendering and turning token ids into completions.

Both engines tokenize the rendered prompt themselves and feed token ids to the
model, so the same conversation is the same token sequence whichever engine
serves it.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..models import ModelSpec
from .base import Completion, Conversation

_REPLACEMENT_CHAR = "\ufffd"


def _check_roles(conversation: Conversation, model_name: str) -> None:
    if not conversation:
        raise ValueError(f"model {model_name}: empty conversation")
    for message in conversation:
        if message.get("role") not in ("system", "user", "assistant") or "content" not in message:
            raise ValueError(f"model {model_name}: malformed message {message!r}")


def render_prompt(tokenizer, conversation: Conversation, spec: ModelSpec) -> str:
    """The text the model continues.

    A conversation whose last message is not the assistant's is rendered with
    the generation prompt (the assistant's turn is opened). One that ends with
    the assistant's message renders the turns before it with the generation
    prompt and appends that message's text as is: the open reply exactly as the
    model produced it after that prompt, not a closed turn (this is what the
    hidden-state pass needs: the state at the reply's last token).
    """
    _check_roles(conversation, spec.name)
    if conversation[-1]["role"] == "assistant":
        if len(conversation) == 1:
            raise ValueError(f"model {spec.name}: a conversation cannot consist of an assistant reply only")
        return render_prompt(tokenizer, conversation[:-1], spec) + conversation[-1]["content"]
    if spec.chat_template:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"model {spec.name}: registry says chat_template: true but the tokenizer has none")
        return tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
    fmt = spec.completion_format
    if fmt is None:
        raise ValueError(f"model {spec.name}: no chat template and no completion_format in the registry")
    # Earlier replies are closed blocks; their surrounding whitespace belongs to the format.
    parts = [
        fmt.template(m["role"]).format(content=m["content"].strip() if m["role"] == "assistant" else m["content"])
        for m in conversation
    ]
    return "".join(parts) + fmt.generation_prompt


def encode_prompt(tokenizer, prompt: str, spec: ModelSpec) -> list[int]:
    """Token ids of a rendered prompt.

    A chat template writes its own special tokens (BOS included where the model
    wants one), so none are added; a plain completion prompt gets the
    tokenizer's usual ones (e.g. Gemma's ``<bos>``).
    """
    return list(tokenizer(prompt, add_special_tokens=not spec.chat_template)["input_ids"])


# The vocabulary's decoded tokens, per tokenizer: a vocabulary is scanned once per engine, not once per call.
_VOCABULARY_TEXTS: "weakref.WeakKeyDictionary[Any, list[str]]" = weakref.WeakKeyDictionary()


def _vocabulary_texts(tokenizer) -> list[str]:
    texts = _VOCABULARY_TEXTS.get(tokenizer)
    if texts is None:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        _VOCABULARY_TEXTS[tokenizer] = texts
    return texts


def candidate_token_sets(tokenizer, candidates: Sequence[str], model_name: str = "") -> list[list[int]]:
    """For each candidate, every token id that writes it as a whole, whatever its case and surrounding
    whitespace ("True", " True", "true", " TRUE" for "True").

    The token a model answers with depends on how its chat template ends the prompt: after "Answer:" it
    writes " True", after a newline "True", and after a special token such as Granite's
    ``<|end_of_role|>`` "True" without a space, though the rendered prompt does not end in whitespace. A
    candidate's probability is the sum over its set, so it never rests on guessing which one applies.
    """
    texts = _vocabulary_texts(tokenizer)
    wanted = [str(candidate).strip().casefold() for candidate in candidates]
    sets = [[i for i, text in enumerate(texts) if text.strip().casefold() == word] for word in wanted]
    for candidate, ids in zip(candidates, sets):
        if not ids:
            raise ValueError(f"model {model_name}: no token of the vocabulary writes candidate {candidate!r} alone")
    if len(set(wanted)) < len(wanted):
        raise ValueError(f"model {model_name}: candidates {list(candidates)} are the same word")
    return sets


def eos_token_ids(tokenizer, *configs) -> set[int]:
    """Token ids that end a reply: the tokenizer's EOS and those of the given (generation) configs."""
    ids: set[int] = set()
    for value in [getattr(tokenizer, "eos_token_id", None)] + [getattr(c, "eos_token_id", None) for c in configs]:
        if value is None:
            continue
        ids.update(int(v) for v in (value if isinstance(value, (list, tuple, set)) else [value]))
    return ids


def _decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def token_pieces(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token's text in context, so that ``"".join(pieces) == decode(ids)``.

    A token is decoded as the growth of the decoded prefix, which keeps the
    leading spaces that single-token decoding drops for SentencePiece
    vocabularies. A token ending inside a multi-byte character gets ``""`` and
    the character goes to the token that completes it.
    """
    pieces: list[str] = []
    previous = ""
    for i in range(len(ids)):
        current = _decode(tokenizer, ids[: i + 1])
        if current.endswith(_REPLACEMENT_CHAR) and i < len(ids) - 1:
            pieces.append("")
            continue
        if current.startswith(previous):
            pieces.append(current[len(previous):])
        else:
            pieces.append(_decode(tokenizer, ids[i : i + 1]))
        previous = current
    return pieces


def build_completion(
    tokenizer,
    token_ids: Sequence[int],
    token_logprobs: Sequence[float],
    *,
    eos_ids: Iterable[int] = (),
    stop: Sequence[str] = (),
) -> Completion:
    """A :class:`Completion` from generated ids and their logprobs (same length).

    The reply ends before the first EOS id (EOS itself is not part of it) and
    before the first stop string; a token that starts before a stop string is
    kept whole in ``tokens``, the text is cut where the stop string begins.
    """
    if len(token_ids) != len(token_logprobs):
        raise ValueError(f"{len(token_ids)} token ids but {len(token_logprobs)} logprobs")
    eos_ids = set(eos_ids)
    ids = [int(t) for t in token_ids]
    logprobs = [float(x) for x in token_logprobs]
    for i, tok in enumerate(ids):
        if tok in eos_ids:
            ids, logprobs = ids[:i], logprobs[:i]
            break
    pieces = token_pieces(tokenizer, ids)
    text = "".join(pieces)
    cut = min((pos for pos in (text.find(s) for s in stop if s) if pos >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
        start, keep = 0, 0
        for piece in pieces:
            if start >= cut:
                break
            start += len(piece)
            keep += 1
        ids, logprobs, pieces = ids[:keep], logprobs[:keep], pieces[:keep]
    return Completion(text=text, tokens=pieces, token_logprobs=logprobs, token_ids=ids)


def has_stop(tokenizer, ids: Sequence[int], stop: Sequence[str], window: int) -> bool:
    """Whether the last ``window`` tokens' text contains a stop string (cheap check during decoding)."""
    if not stop or not ids:
        return False
    tail = _decode(tokenizer, ids[-window:])
    return any(s in tail for s in stop if s)


def sample_seed(seed: int, prompt_ids: Sequence[int], sample_idx: int) -> int:
    """The random stream of one sample: a function of the seed, the prompt tokens and the sample index."""
    digest = hashlib.sha256(f"{seed}|{sample_idx}|".encode() + np.asarray(prompt_ids, dtype=np.int64).tobytes())
    return int.from_bytes(digest.digest()[:8], "little") & ((1 << 63) - 1)

"""Layouts: one per record shape, each mapping a raw record to the common item columns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from .readers import Row

LETTERS = "ABCDEFGHIJ"

# ---- field access and normalization -----------------------------------------------------------------


def _field(row: Row, key: str) -> Any:
    """A required field: absent, None, an empty string and an empty list all count as missing."""
    value = row.record.get(key)
    empty = isinstance(value, str) and not value.strip() or isinstance(value, (list, tuple)) and not value
    if value is None or empty:
        raise ValueError(f"{row.where}: missing field {key!r}")
    return value


def _text(row: Row, key: str) -> str:
    value = _field(row, key)
    if not isinstance(value, str):
        raise ValueError(f"{row.where}: field {key!r} should be text, got {type(value).__name__}")
    return value.strip()


def _texts(row: Row, key: str, values: Iterable[Any]) -> list[str]:
    out = []
    for position, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{row.where}: missing field {key!r} (item {position} is empty or not text)")
        out.append(value.strip())
    return out


def normalize_number(value: Any) -> str:
    """A number as the canonical string gold answers use: no commas, no trailing '.0'.

    ``"1,234" -> "1234"``, ``5.0 -> "5"``, ``"0.50" -> "0.5"``, ``-3 -> "-3"``. Raises ValueError.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    text = repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)
    try:
        number = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"not a number: {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _number(row: Row, key: str, value: Any | None = None) -> str:
    value = _field(row, key) if value is None else value
    try:
        return normalize_number(value)
    except ValueError:
        raise ValueError(f"{row.where}: field {key!r} is not a number: {value!r}") from None


def _truth(row: Row, key: str) -> str:
    value = _field(row, key)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    raise ValueError(f"{row.where}: field {key!r} should be true/false, got {value!r}")


def _letter(row: Row, key: str, value: Any, n_choices: int, base: int) -> str:
    """An option index (0- or 1-based per ``base``) or letter as 'A', 'B', ..."""
    text = str(value).strip()
    if text in LETTERS[:n_choices]:
        return text
    if text.lstrip("-").isdigit() and 0 <= int(text) - base < n_choices:
        return LETTERS[int(text) - base]
    raise ValueError(f"{row.where}: field {key!r} = {value!r} is not an option of {n_choices}")


def _labelled_choices(row: Row, key: str, labels: list[str], texts: list[str], n_choices: int) -> list[str]:
    if list(labels) != list(LETTERS[:n_choices]) or len(texts) != n_choices:
        raise ValueError(f"{row.where}: field {key!r} has labels {labels}, expected {list(LETTERS[:n_choices])}")
    return _texts(row, key, texts)


# ---- layouts: one per record shape ------------------------------------------------------------------


@dataclass
class Context:
    dataset: str
    source_split: str  # the split name ids carry ("validation", "dev", ...)
    info: Mapping[str, Any]
    extras: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)  # per-load counters (MMLU rows per subject on the hub)

    @property
    def n_choices(self) -> int:
        return self.info.get("n_choices") or 0

    def row_id(self, row: Row) -> str:
        return f"{self.dataset}-{self.source_split}-{row.index}"

    def question(self, **fields: str) -> str:
        return self.info["question_template"].format(**fields)


def _item(id: str, question: str, answer: str, *, context=None, choices=None, aliases=None, incorrect=None) -> dict:
    return {
        "id": id,
        "question": question,
        "context": context,
        "choices": choices,
        "answer": answer,
        "answer_aliases": aliases,
        "incorrect_answers": incorrect,
    }


def _gsm8k(row: Row, ctx: Context) -> dict:
    rationale = _text(row, "answer")
    if "####" not in rationale:
        raise ValueError(f"{row.where}: field 'answer' has no '#### <number>' final line")
    final = rationale.rsplit("####", 1)[1].strip()
    return _item(ctx.row_id(row), _text(row, "question"), _number(row, "answer", final))


_AQUA_PREFIX = re.compile(r"^\s*([A-E])\s*\)\s*")


def _aqua(row: Row, ctx: Context) -> dict:
    options = _field(row, "options")
    if len(options) != ctx.n_choices:
        raise ValueError(f"{row.where}: field 'options' has {len(options)} options, expected {ctx.n_choices}")
    choices = []
    for letter, option in zip(LETTERS, _texts(row, "options", options)):
        match = _AQUA_PREFIX.match(option)
        if not match or match.group(1) != letter:
            raise ValueError(f"{row.where}: option {option!r} does not start with '{letter})'")
        choices.append(option[match.end() :].strip())
    answer = _letter(row, "correct", _text(row, "correct"), ctx.n_choices, 0)
    return _item(ctx.row_id(row), _text(row, "question"), answer, choices=choices)


def _multiarith(row: Row, ctx: Context) -> dict:
    solutions = _field(row, "lSolutions")
    if len(solutions) != 1:
        raise ValueError(f"{row.where}: field 'lSolutions' has {len(solutions)} solutions, expected 1")
    answer = _number(row, "lSolutions", solutions[0])
    return _item(f"multiarith-{_field(row, 'iIndex')}", _text(row, "sQuestion"), answer)


def _multiarith_hub(row: Row, ctx: Context) -> dict:
    return _item(ctx.row_id(row), _text(row, "question"), _number(row, "final_ans"))


def _svamp(row: Row, ctx: Context) -> dict:
    question = f"{_text(row, 'Body')} {_text(row, 'Question')}"
    return _item(f"svamp-{_text(row, 'ID')}", question, _number(row, "Answer"))


def _svamp_llm_foundry(row: Row, ctx: Context) -> dict:
    if "svamp_ids" not in ctx.state:
        ids: dict[str, list[str]] = {}
        for record_row in ctx.extras["id_lookup"]:
            item = _svamp(record_row, ctx)
            ids.setdefault(item["question"], []).append(item["id"])
        ctx.state["svamp_ids"] = ids
    question = _text(row, "context")
    matches = ctx.state["svamp_ids"].get(question, [])
    if len(matches) != 1:
        raise ValueError(
            f"{row.where}: problem text matches {len(matches)} SVAMP records in the id lookup file, expected 1"
        )
    return _item(matches[0], question, _number(row, "answer"))


def _boolq_superglue(row: Row, ctx: Context) -> dict:
    return _item(ctx.row_id(row), _text(row, "question"), _truth(row, "label"), context=_text(row, "passage"))


def _boolq_hub(row: Row, ctx: Context) -> dict:
    return _item(ctx.row_id(row), _text(row, "question"), _truth(row, "answer"), context=_text(row, "passage"))


_BOOLQ_TEMPLATE = re.compile(
    r"^Please answer the following question with true or false, question: (.+?)\?\n\nAnswer format: true/false$",
    re.S,
)


def _boolq_llm_adapters(row: Row, ctx: Context) -> dict:
    match = _BOOLQ_TEMPLATE.match(_text(row, "instruction"))
    if not match:
        raise ValueError(f"{row.where}: field 'instruction' does not follow the true/false question template")
    return _item(ctx.row_id(row), match.group(1).strip(), _truth(row, "answer"))


def _commonsenseqa(row: Row, ctx: Context) -> dict:
    question = _field(row, "question")
    inner = Row(row.where, row.index, question)
    options = _field(inner, "choices")
    choices = _labelled_choices(
        row, "question.choices", [o.get("label") for o in options], [o.get("text") for o in options], ctx.n_choices
    )
    answer = _letter(row, "answerKey", _text(row, "answerKey"), ctx.n_choices, 0)
    return _item(f"commonsenseqa-{_text(row, 'id')}", _text(inner, "stem"), answer, choices=choices)


def _commonsenseqa_hub(row: Row, ctx: Context) -> dict:
    options = _field(row, "choices")
    choices = _labelled_choices(row, "choices", list(options["label"]), list(options["text"]), ctx.n_choices)
    answer = _letter(row, "answerKey", _text(row, "answerKey"), ctx.n_choices, 0)
    return _item(f"commonsenseqa-{_text(row, 'id')}", _text(row, "question"), answer, choices=choices)


_WIKIHOW_TAG = re.compile(r"\s*\[(?:header|title|step|substeps)\]\s*")


def _strip_tags(text: str) -> str:
    return _WIKIHOW_TAG.sub(" ", text).strip() if "[" in text else text


def _hellaswag(row: Row, ctx: Context) -> dict:
    endings = _texts(row, "endings", _field(row, "endings"))
    if len(endings) != ctx.n_choices:
        raise ValueError(f"{row.where}: field 'endings' has {len(endings)} endings, expected {ctx.n_choices}")
    label = _field(row, "label")
    # Not `ind`: it is counted per source, so ActivityNet and WikiHow rows of one split share values.
    return _item(
        ctx.row_id(row),
        ctx.question(activity_label=_text(row, "activity_label")),
        _letter(row, "label", label, ctx.n_choices, 0),
        context=_strip_tags(_text(row, "ctx")),
        choices=[_strip_tags(ending) for ending in endings],
    )


_OBQA_OPTION = re.compile(r"(?:^|\s)\(([A-Z])\)\s")


def _openbookqa(row: Row, ctx: Context) -> dict:
    own = _text(row, "ID")
    parts = _OBQA_OPTION.split(_text(row, "Choices"))
    labels, texts = parts[1::2], [text.strip() for text in parts[2::2]]
    expected = list(LETTERS[: ctx.n_choices])
    if parts[0].strip() or labels != expected:
        if own in (ctx.info.get("known_defects") or {}) and labels[: ctx.n_choices] == expected:
            labels, texts = labels[: ctx.n_choices], texts[: ctx.n_choices]
        else:
            raise ValueError(f"{row.where}: field 'Choices' has option labels {labels}, expected {expected}")
    choices = _labelled_choices(row, "Choices", labels, texts, ctx.n_choices)
    answer = _letter(row, "Answer Key", _text(row, "Answer Key"), ctx.n_choices, 0)
    return _item(f"openbookqa-{own}", _text(row, "Question Stem"), answer, choices=choices)


def _openbookqa_hub(row: Row, ctx: Context) -> dict:
    options = _field(row, "choices")
    choices = _labelled_choices(row, "choices", list(options["label"]), list(options["text"]), ctx.n_choices)
    answer = _letter(row, "answerKey", _text(row, "answerKey"), ctx.n_choices, 0)
    return _item(f"openbookqa-{_text(row, 'id')}", _text(row, "question_stem"), answer, choices=choices)


def _piqa(row: Row, ctx: Context) -> dict:
    choices = [_text(row, "sol1"), _text(row, "sol2")]
    answer = _letter(row, "label", _field(row, "label"), ctx.n_choices, 0)
    return _item(ctx.row_id(row), _text(row, "goal"), answer, choices=choices)


def _social_iqa(row: Row, ctx: Context) -> dict:
    choices = [_text(row, "answerA"), _text(row, "answerB"), _text(row, "answerC")]
    answer = _letter(row, "label", _field(row, "label"), ctx.n_choices, 1)
    return _item(ctx.row_id(row), _text(row, "question"), answer, context=_text(row, "context"), choices=choices)


def _split_answers(row: Row, key: str) -> list[str]:
    parts = [part.strip() for part in _text(row, key).split(";")]
    return [part for part in parts if part]


def _truthfulqa(row: Row, ctx: Context) -> dict:
    return _item(
        f"truthfulqa-{row.index}",
        _text(row, "Question"),
        _text(row, "Best Answer"),
        aliases=_split_answers(row, "Correct Answers"),
        incorrect=_split_answers(row, "Incorrect Answers"),
    )


def _truthfulqa_hub(row: Row, ctx: Context) -> dict:
    return _item(
        f"truthfulqa-{row.index}",
        _text(row, "question"),
        _text(row, "best_answer"),
        aliases=_texts(row, "correct_answers", _field(row, "correct_answers")),
        incorrect=_texts(row, "incorrect_answers", _field(row, "incorrect_answers")),
    )


def _winogrande_choices(row: Row) -> list[str]:
    return [_text(row, "option1"), _text(row, "option2")]


def _winogrande(row: Row, ctx: Context) -> dict:
    answer = _letter(row, "answer", _text(row, "answer"), ctx.n_choices, 1)
    question = ctx.question(sentence=_text(row, "sentence"))
    return _item(ctx.row_id(row), question, answer, choices=_winogrande_choices(row))


def _winogrande_dev(row: Row, ctx: Context) -> dict:
    answer = _letter(row, "correct_option", _text(row, "correct_option"), ctx.n_choices, 1)
    question = ctx.question(sentence=_text(row, "sentence"))
    return _item(f"winogrande-{_text(row, 'id')}", question, answer, choices=_winogrande_choices(row))


def _mmlu(row: Row, ctx: Context) -> dict:
    subject, part = _text(row, "subject"), _text(row, "part")
    own = f"{subject}-{row.index}" if part == "test" else f"{subject}-{part}-{row.index}"
    choices = [_text(row, letter) for letter in LETTERS[: ctx.n_choices]]
    answer = _letter(row, "answer", _text(row, "answer"), ctx.n_choices, 0)
    return _item(f"mmlu-{own}", _text(row, "question"), answer, choices=choices)


def _mmlu_hub(row: Row, ctx: Context) -> dict:
    # Some revisions of auxiliary_train nest each record under a "train" key.
    if isinstance(row.record.get("train"), Mapping):
        row = Row(row.where, row.index, row.record["train"])
    subject = str(row.record.get("subject") or "").strip()
    if subject:
        counts = ctx.state.setdefault("mmlu_rows", {})
        own = f"mmlu-{subject}-{counts.get(subject, 0)}"
        counts[subject] = counts.get(subject, 0) + 1
    else:
        own = ctx.row_id(row)
    choices = _texts(row, "choices", _field(row, "choices"))
    if len(choices) != ctx.n_choices:
        raise ValueError(f"{row.where}: field 'choices' has {len(choices)} options, expected {ctx.n_choices}")
    answer = _letter(row, "answer", _field(row, "answer"), ctx.n_choices, 0)
    return _item(own, _text(row, "question"), answer, choices=choices)


def _coqa_hub(row: Row, ctx: Context) -> dict:
    questions = _texts(row, "questions", _field(row, "questions"))
    answers = _field(row, "answers")
    texts = answers.get("input_text") if isinstance(answers, Mapping) else None
    if not texts:
        raise ValueError(f"{row.where}: missing field 'answers.input_text'")
    answer = _texts(row, "answers.input_text", texts[:1])[0]
    return _item(ctx.row_id(row), questions[0], answer, context=_text(row, "story"))


LAYOUTS: dict[str, Callable[[Row, Context], dict]] = {
    "gsm8k": _gsm8k,
    "aqua": _aqua,
    "multiarith": _multiarith,
    "multiarith_hub": _multiarith_hub,
    "svamp": _svamp,
    "svamp_llm_foundry": _svamp_llm_foundry,
    "boolq_superglue": _boolq_superglue,
    "boolq_llm_adapters": _boolq_llm_adapters,
    "boolq_hub": _boolq_hub,
    "commonsenseqa": _commonsenseqa,
    "commonsenseqa_hub": _commonsenseqa_hub,
    "hellaswag": _hellaswag,
    "openbookqa": _openbookqa,
    "openbookqa_hub": _openbookqa_hub,
    "piqa": _piqa,
    "social_iqa": _social_iqa,
    "truthfulqa": _truthfulqa,
    "truthfulqa_hub": _truthfulqa_hub,
    "winogrande": _winogrande,
    "winogrande_dev": _winogrande_dev,
    "mmlu": _mmlu,
    "mmlu_hub": _mmlu_hub,
    "coqa_hub": _coqa_hub,
}

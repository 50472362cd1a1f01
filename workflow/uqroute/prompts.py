"""Conversations for every model pass, rendered from ``resources/prompts.yaml``.

The answer conversation is built in one place; verbal2s, ptrue and hidden extend it with
the model's own reply, so all passes see the item exactly as the greedy pass did.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import RESOURCES_DIR
from .engines.base import Conversation
from .datasets import TASK_TYPES
from .grading import read_item_reply
from .io import load_yaml

# Placeholders each template may use; anything else is a typo caught when the file is loaded.
_FIELDS: dict[str, frozenset[str]] = {
    "context": frozenset({"context"}),
    "option": frozenset({"letter", "text"}),
    "item": frozenset({"context", "question", "options"}),
    "answer": frozenset({"item"}),
    "verbal1s": frozenset({"item"}),
    "verbal1s_reasoned": frozenset({"item"}),
    "verbal2s": frozenset(),
    "ptrue": frozenset({"proposed_answer"}),
}
# Templates that may differ by task type (a mapping) or be shared (a string).
_PER_TASK = ("item", "answer", "verbal1s", "verbal1s_reasoned", "verbal2s", "ptrue")


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


@dataclass(frozen=True)
class PromptSet:
    """Prompt templates loaded from one YAML file (``path``), checked when loaded."""

    path: Path
    templates: Mapping[str, Any]
    system: str | None = None

    @classmethod
    def load(cls, path: str | Path | None = None) -> "PromptSet":
        path = Path(path) if path is not None else RESOURCES_DIR / "prompts.yaml"
        if not path.exists():
            raise FileNotFoundError(f"{path}: prompt file not found")
        raw = load_yaml(path)
        templates: dict[str, Any] = {}
        for key in ("context", "option"):
            templates[key] = _template(path, raw, key)
        for key in _PER_TASK:
            value = _required(path, raw, key)
            if isinstance(value, Mapping):
                templates[key] = {task: _template(path, value, task, f"{key}.") for task in TASK_TYPES}
            else:
                templates[key] = _template(path, raw, key)
        for key, fields in _FIELDS.items():
            for label, template in _flatten(key, templates[key]):
                _check_fields(path, label, template, fields)
        candidates = _required(path, raw, "ptrue_candidates")
        if not (isinstance(candidates, list) and len(candidates) == 2 and all(isinstance(c, str) for c in candidates)):
            raise ValueError(f"{path}: ptrue_candidates must be two quoted strings, got {candidates!r}")
        templates["ptrue_candidates"] = tuple(candidates)
        system = raw.get("system")
        if system is not None and not isinstance(system, str):
            raise ValueError(f"{path}: system must be a string or null, got {system!r}")
        return cls(path=path, templates=templates, system=system)

    @property
    def ptrue_candidates(self) -> tuple[str, str]:
        """Next-token candidates of the ptrue pass; the first one is "True"."""
        return self.templates["ptrue_candidates"]

    def _for(self, key: str, task_type: str) -> str:
        value = self.templates[key]
        if isinstance(value, str):
            return value
        if task_type not in value:
            raise KeyError(f"{self.path}: no template {key}.{task_type} (task types: {', '.join(value)})")
        return value[task_type]

    def _messages(self, user: str) -> Conversation:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [{"role": "user", "content": user}]

    def render_item(self, item: Mapping[str, Any]) -> str:
        """The item as every pass shows it: context, question and (mcq) lettered options."""
        task_type = _field(item, "task_type")
        context = item.get("context")
        fields = {
            "context": self.templates["context"].format(context=str(context).strip()) if _present(context) else "",
            "question": str(_field(item, "question")).strip(),
            "options": "",
        }
        if task_type == "mcq":
            choices = item.get("choices")
            if choices is None or len(choices) == 0:
                raise ValueError(f"{_item_name(item)}: multiple-choice item without choices")
            fields["options"] = "\n".join(
                self.templates["option"].format(letter=letter, text=str(text).strip())
                for letter, text in zip(string.ascii_uppercase, list(choices))
            )
        return self._for("item", task_type).format(**fields)

    def answer(self, item: Mapping[str, Any]) -> Conversation:
        """[system], user(question + answer instruction): greedy, sample and hidden passes."""
        return self._messages(self._for("answer", _field(item, "task_type")).format(item=self.render_item(item)))

    def verbal1s(self, item: Mapping[str, Any], *, reasoning: bool = False) -> Conversation:
        """[system], user(question + "Answer: ... Confidence: N%" format; brief reasoning first if ``reasoning``)."""
        key = "verbal1s_reasoned" if reasoning else "verbal1s"
        return self._messages(self._for(key, _field(item, "task_type")).format(item=self.render_item(item)))

    def hidden(self, item: Mapping[str, Any], response: str, opening: Conversation | None = None) -> Conversation:
        """The answer conversation closed by the model's reply (prefilled to read hidden states).

        ``opening``: the conversation the reply answers; by default the answer prompt (the router passes the
        user's own messages)."""
        opening = self.answer(item) if opening is None else list(opening)
        return opening + [{"role": "assistant", "content": "" if response is None else str(response)}]

    def verbal2s(self, item: Mapping[str, Any], response: str, opening: Conversation | None = None) -> Conversation:
        """The answered conversation plus a user turn asking for a confidence from 0 to 100."""
        follow_up = self._for("verbal2s", _field(item, "task_type")).format()
        return self.hidden(item, response, opening) + [{"role": "user", "content": follow_up}]

    def ptrue(self, item: Mapping[str, Any], response: str, opening: Conversation | None = None) -> Conversation:
        """The answered conversation plus "Proposed answer: ... Is the proposed answer True or False?"."""
        follow_up = self._for("ptrue", _field(item, "task_type")).format(
            proposed_answer=self.proposed_answer(item, response)
        )
        return self.hidden(item, response, opening) + [{"role": "user", "content": follow_up}]

    def proposed_answer(self, item: Mapping[str, Any], response: str) -> str:
        """The reply's answer, short: "B. option text", "yes", "42", or the answer sentence.

        The answer read on any evidence, weak included (the model is asked about what it wrote, not graded);
        the reply's first non-empty line when it gives none.
        """
        task_type = _field(item, "task_type")
        prediction = read_item_reply(response, item).value
        if prediction is None:
            lines = [line.strip() for line in ("" if response is None else str(response)).splitlines()]
            return next((line for line in lines if line), "")
        if task_type == "mcq":
            choices = list(item.get("choices"))
            text = choices[string.ascii_uppercase.index(prediction)]
            return self.templates["option"].format(letter=prediction, text=str(text).strip())
        if task_type == "tf":
            return "yes" if prediction == "true" else "no"
        return prediction


def _item_name(item: Mapping[str, Any]) -> str:
    return f"{item.get('dataset', '?')} item {item.get('id', '?')}"


def _field(item: Mapping[str, Any], key: str) -> Any:
    try:
        return item[key]
    except KeyError:
        raise KeyError(f"{_item_name(item)}: missing field {key!r}") from None


def _required(path: Path, raw: Mapping[str, Any], key: str, prefix: str = "") -> Any:
    if key not in raw or raw[key] is None:
        raise KeyError(f"{path}: missing template key {prefix}{key}")
    return raw[key]


def _template(path: Path, raw: Mapping[str, Any], key: str, prefix: str = "") -> str:
    value = _required(path, raw, key, prefix)
    if not isinstance(value, str):
        raise ValueError(f"{path}: template {prefix}{key} must be a string, got {type(value).__name__}")
    return value


def _flatten(key: str, value: str | Mapping[str, str]) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(key, value)]
    return [(f"{key}.{task}", template) for task, template in value.items()]


def _check_fields(path: Path, label: str, template: str, allowed: frozenset[str]) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise ValueError(f"{path}: template {label} is not a valid format string: {err}") from err
    unknown = sorted(names - allowed)
    if unknown:
        raise KeyError(
            f"{path}: template {label} uses unknown placeholder(s) {unknown}; allowed: {sorted(allowed) or 'none'}"
        )

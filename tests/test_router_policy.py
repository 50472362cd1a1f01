"""The router's per-request policy (model name and body), and its token and cost accounting (fast, no model)."""

from __future__ import annotations

import pytest

from uqroute.serve.config import Price
from uqroute.serve.policy import Policy, PolicyError, model_names, parse_policy
from uqroute.serve.usage import RequestUsage

METHODS = ["perplexity", "p_true"]


def _parse(model: str, **hints) -> Policy:
    return parse_policy(model, hints, served_name="uqroute", methods=METHODS)


@pytest.mark.parametrize("model, hints, expected", [
    ("uqroute", {}, Policy("perplexity")),
    ("uqroute-p_true", {}, Policy("p_true")),
    ("uqroute-perplexity-0.3", {}, Policy("perplexity", ratio=0.3)),
    ("uqroute-p_true-1", {}, Policy("p_true", ratio=1.0)),
    ("uqroute", {"method": "p_true", "ratio": 0.25}, Policy("p_true", ratio=0.25)),
    ("uqroute", {"threshold": -2.5}, Policy("perplexity", threshold=-2.5)),
    ("uqroute-p_true", {"method": "p_true", "threshold": 0.7}, Policy("p_true", threshold=0.7)),
    ("uqroute-perplexity-0.3", {"ratio": 0.3}, Policy("perplexity", ratio=0.3)),
])
def test_policy_from_model_name_and_body(model, hints, expected):
    policy = _parse(model, **hints)
    assert policy == expected
    assert policy.is_default == (expected.ratio is None and expected.threshold is None)


@pytest.mark.parametrize("model, hints, param, words", [
    ("gpt-4o", {}, "model", "serves 'uqroute'"),
    ("uqroute-verbal_1s", {}, "model", "not served here"),
    ("uqroute-perplexity-high", {}, "model", "not a ratio"),
    ("uqroute-perplexity-1.5", {}, "model", "from 0 to 1"),
    ("uqroute", {"method": "jaccard_degree"}, "uqroute.method", "not served here"),
    ("uqroute-p_true", {"method": "perplexity"}, "uqroute.method", "contradicts the model name"),
    ("uqroute", {"ratio": 0.2, "threshold": 0.5}, "uqroute.threshold", "not both"),
    ("uqroute-perplexity-0.3", {"ratio": 0.4}, "uqroute.ratio", "contradicts"),
    ("uqroute-perplexity-0.3", {"threshold": 0.4}, "uqroute.threshold", "already sets a ratio"),
    ("uqroute", {"ratio": True}, "uqroute.ratio", "from 0 to 1"),
    ("uqroute", {"threshold": float("nan")}, "uqroute.threshold", "must be a number"),
])
def test_bad_policies_name_the_field(model, hints, param, words):
    with pytest.raises(PolicyError, match=words) as caught:
        _parse(model, **hints)
    assert caught.value.param == param and str(caught.value).startswith(f"{param}: ")


def test_listed_model_names_parse_back():
    names = model_names("uqroute", METHODS, [0.1, 0.5])
    assert names == ["uqroute", "uqroute-perplexity", "uqroute-perplexity-0.1", "uqroute-perplexity-0.5",
                     "uqroute-p_true", "uqroute-p_true-0.1", "uqroute-p_true-0.5"]
    for name in names:
        _parse(name)


def test_usage_and_costs():
    usage = RequestUsage(request_prompt_tokens=100)
    usage.slm.add(100, 10)  # the answer
    usage.slm.add(115, 0)   # p(True)'s next-token call
    slm, llm = Price(input=0.1, output=0.2), Price(input=1.0, output=4.0)
    assert usage.openai_usage() == {"prompt_tokens": 215, "completion_tokens": 10, "total_tokens": 225}
    kept = usage.costs(slm, llm, answered_by_llm=False, reply_tokens=10)
    paid = (215 * 0.1 + 10 * 0.2) / 1e6
    alone = (100 * 1.0 + 10 * 4.0) / 1e6  # the LLM's prices on the request and the reply, in SLM tokens
    assert kept == pytest.approx({"cost_usd": paid, "llm_only_cost_usd": alone, "savings_usd": alone - paid,
                                  "llm_only_estimated": True})
    usage.llm.add(120, 50)  # routed: the LLM's own count
    routed = usage.costs(slm, llm, answered_by_llm=True, reply_tokens=50)
    llm_cost = (120 * 1.0 + 50 * 4.0) / 1e6
    assert routed["llm_only_cost_usd"] == pytest.approx(llm_cost) and not routed["llm_only_estimated"]
    assert routed["savings_usd"] == pytest.approx(-paid)  # routing that ends at the LLM costs the SLM's passes
    assert usage.llm.as_dict() == {"prompt_tokens": 120, "completion_tokens": 50, "total_tokens": 170, "calls": 1}

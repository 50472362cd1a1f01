"""What one request cost: the tokens each model read and wrote, their price, and the savings against the LLM alone.

The SLM's tokens are every pass the route needed (the answer, and the method's follow-ups: p(True)'s next-token
call, verbal-2s's follow-up turn, the samples, a probe's prefill), counted with the SLM's own tokenizer; the LLM's
are those its endpoint reports. Savings compare with sending the request to the LLM alone: for a routed request
that is what the LLM was paid; for one the SLM kept it is an estimate, the LLM's prices applied to the request's
prompt and the reply's length as the SLM's tokenizer counts them (another tokenizer counts a little differently).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Price

_PER_MILLION = 1e-6


@dataclass
class TokenCount:
    """Tokens one model read (prompt) and wrote (completion) for one request, over its calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def add(self, prompt_tokens: int, completion_tokens: int = 0) -> None:
        self.prompt_tokens += int(prompt_tokens)
        self.completion_tokens += int(completion_tokens)
        self.calls += 1

    def cost(self, price: Price) -> float:
        return (self.prompt_tokens * price.input + self.completion_tokens * price.output) * _PER_MILLION

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens, "calls": self.calls}


@dataclass
class RequestUsage:
    """One request's tokens per model, and the estimate of what the LLM alone would have read and written."""

    slm: TokenCount = field(default_factory=TokenCount)
    llm: TokenCount = field(default_factory=TokenCount)
    # The request's prompt and the reply it got, in SLM tokens: the LLM-alone estimate of a kept answer.
    request_prompt_tokens: int = 0
    long: bool = False  # served on the long lane (prompt or budget over its limits)

    def openai_usage(self) -> dict[str, int]:
        """OpenAI's ``usage``: both models' tokens, the routing's own passes included."""
        prompt = self.slm.prompt_tokens + self.llm.prompt_tokens
        completion = self.slm.completion_tokens + self.llm.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def costs(self, slm_price: Price, llm_price: Price, *, answered_by_llm: bool,
              reply_tokens: int) -> dict[str, float | bool]:
        """The request's cost in USD, the LLM-alone cost it is compared with, and the savings (negative when the
        routing cost more than it saved)."""
        cost = self.slm.cost(slm_price) + self.llm.cost(llm_price)
        if answered_by_llm:
            baseline, estimated = self.llm.cost(llm_price), False
        else:
            alone = TokenCount()
            alone.add(self.request_prompt_tokens, reply_tokens)
            baseline, estimated = alone.cost(llm_price), True
        return {"cost_usd": cost, "llm_only_cost_usd": baseline, "savings_usd": baseline - cost,
                "llm_only_estimated": estimated}


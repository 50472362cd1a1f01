"""OpenAIEngine, its cache and retries, and the LLM judge, against a real local HTTP server."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import traceback

import numpy as np
import pandas as pd
import pytest

from fake_openai_server import (FakeOpenAIServer, Fault, Reply, echo_reply, last_user_text, position_logprob,
                                split_tokens)
from uqroute.engines.base import Completion, Engine, EngineError, Sampling
from uqroute.engines.cache import RequestCache
from uqroute.engines.openai_engine import OpenAIEngine
from uqroute.grading import LLMJudge, parse_verdict
from uqroute.io import read_parquet, write_parquet

SECRET = "sk-test-SECRET-123"
KEY_ENV = "UQROUTE_TEST_OPENAI_KEY"
MODEL_NAME = "fake-llm"
# A Retry-After (seconds) that the openai client waits instead of its backoff (0.5 s, doubling), so a test
# that retries an HTTP error does not sit out the backoff; timeouts and dropped connections still do.
NO_WAIT = 0.01


def conv(question: str) -> list[dict]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]


@pytest.fixture
def server():
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "api-cache"


@pytest.fixture
def make_engine(server, api_key, cache_dir):
    engines = []

    def build(**overrides) -> OpenAIEngine:
        opts = dict(model="fake-chat", base_url=server.base_url, api_key_env=KEY_ENV, cache_dir=cache_dir,
                    max_retries=3, timeout=5.0)
        opts.update(overrides)
        engine = OpenAIEngine(MODEL_NAME, **opts)
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


# ---- answers and logprobs ---------------------------------------------------------------------------


def test_generate_maps_answers_and_logprobs(server, make_engine):
    engine = make_engine()
    convs = [conv("What is 2+2?"), conv("Name a colour.")]
    out = engine.generate(convs, Sampling(max_new_tokens=32))

    assert [[c.text for c in row] for row in out] == [["Echo: What is 2+2?"], ["Echo: Name a colour."]]
    for row in out:
        (completion,) = row
        assert completion.tokens == split_tokens(completion.text)
        assert "".join(completion.tokens) == completion.text
        assert completion.token_logprobs == pytest.approx([position_logprob(i) for i in range(len(completion.tokens))])
        assert completion.token_ids == []
    assert server.n_requests == 2
    for body, sent in zip(sorted(server.bodies, key=lambda b: b["messages"][1]["content"]), [convs[1], convs[0]]):
        assert body["model"] == "fake-chat"
        assert body["messages"] == sent
        assert (body["max_tokens"], body["temperature"], body["top_p"], body["n"], body["seed"]) == (32, 0.0, 1.0, 1, 0)
        assert body["logprobs"] is True
    assert server.auth_headers == [f"Bearer {SECRET}"] * 2
    assert isinstance(engine, Engine)


def test_generate_n_samples_in_one_request_per_conversation(server, make_engine):
    out = make_engine().generate([conv("a"), conv("b")], Sampling(max_new_tokens=16, temperature=1.0, n=3, seed=7))

    assert [[c.text for c in row] for row in out] == [[f"Sample {i} seed 7: {q}" for i in range(3)] for q in "ab"]
    assert server.n_requests == 2
    assert all(body["n"] == 3 and body["temperature"] == 1.0 and body["seed"] == 7 for body in server.bodies)


def test_max_completion_tokens_param_is_sent_when_configured(server, make_engine):
    make_engine(token_limit_param="max_completion_tokens").generate([conv("q")], Sampling(max_new_tokens=5))
    (body,) = server.bodies
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body


def test_endpoint_without_logprobs_gives_empty_token_lists(server, make_engine):
    server.report_logprobs = False
    ((completion,),) = make_engine().generate([conv("hello")], Sampling(max_new_tokens=8))
    assert completion == Completion(text="Echo: hello", tokens=[], token_logprobs=[])


def test_next_token_probs_reads_top_logprobs(server, make_engine):
    distributions = {
        "yes?": {"True": 0.55, " True": 0.15, "False": 0.2, "true": 0.05, " False": 0.03},
        "no?": {"False": 0.8, "True": 0.1, "Fal": 0.05},
    }
    server.responder = lambda messages, request, index: Reply(
        max(distributions[last_user_text(messages)], key=distributions[last_user_text(messages)].get),
        distributions[last_user_text(messages)])

    probs = make_engine().next_token_probs([conv("yes?"), conv("no?")], ["True", "False", "Maybe"])

    # Whitespace and case variants of a candidate add up ("true" is the word True too);
    # "Fal" is another token.
    np.testing.assert_allclose(probs, [[0.75, 0.23, 0.0], [0.10, 0.80, 0.0]], atol=1e-9)
    assert server.n_requests == 2
    for body in server.bodies:
        assert (body["max_tokens"], body["logprobs"], body["top_logprobs"], body["temperature"]) == (1, True, 20, 0.0)


def test_next_token_probs_without_logprobs_is_an_engine_error(server, make_engine):
    server.report_logprobs = False
    with pytest.raises(EngineError, match=rf"{MODEL_NAME}.*{re.escape(server.base_url)}.*top_logprobs"):
        make_engine().next_token_probs([conv("q")], ["True", "False"])


def test_hidden_states_are_not_a_capability_of_an_api(make_engine):
    from uqroute.engines import ReadsHiddenStates, hidden_state_reader

    engine = make_engine()
    assert not isinstance(engine, ReadsHiddenStates) and not hasattr(engine, "hidden_states")
    with pytest.raises(EngineError, match=rf"model {MODEL_NAME}: a OpenAIEngine exposes no hidden states.*'hf'"):
        hidden_state_reader(engine)


def test_batches_run_concurrently_up_to_the_limit(server, make_engine):
    server.response_delay = 0.3
    questions = [f"question {i}" for i in range(6)]
    out = make_engine(max_concurrency=3).generate([conv(q) for q in questions], Sampling(max_new_tokens=8))

    assert [row[0].text for row in out] == [f"Echo: {q}" for q in questions]
    assert 2 <= server.max_in_flight <= 3


# ---- cache ------------------------------------------------------------------------------------------


def test_cache_answers_reruns_without_requests(server, make_engine, cache_dir):
    convs = [conv("first"), conv("second")]
    first = make_engine().generate(convs, Sampling(max_new_tokens=16, temperature=0.7, n=2, seed=3))
    probs = make_engine().next_token_probs(convs, ["Echo:"])
    assert server.n_requests == 4

    engine = make_engine()
    assert engine.generate(convs, Sampling(max_new_tokens=16, temperature=0.7, n=2, seed=3)) == first
    # A fresh engine instance on the same folder (a rerun of the job) asks nothing either.
    assert make_engine().generate(convs, Sampling(max_new_tokens=16, temperature=0.7, n=2, seed=3)) == first
    np.testing.assert_array_equal(make_engine().next_token_probs(convs, ["Echo:"]), probs)
    assert server.n_requests == 4
    assert engine.n_cache_hits == 2 and engine.n_requests == 0

    # Any sampling parameter is part of the key.
    make_engine().generate(convs, Sampling(max_new_tokens=16, temperature=0.7, n=2, seed=4))
    assert server.n_requests == 6

    files = sorted(p for p in cache_dir.rglob("*") if p.is_file())
    assert len(files) == 6
    for path in files:
        assert re.fullmatch(r"[0-9a-f]{64}\.json", path.name) and path.parent.name == path.name[:2]
        entry = json.loads(path.read_text())
        assert entry["request"]["base_url"] == server.base_url and entry["response"]["choices"]


def test_identical_requests_in_one_batch_are_sent_once(server, make_engine):
    out = make_engine().generate([conv("same")] * 3 + [conv("other")], Sampling(max_new_tokens=8))
    assert [row[0].text for row in out] == ["Echo: same"] * 3 + ["Echo: other"]
    assert server.n_requests == 2


def test_no_cache_dir_means_every_call_is_a_request(server, make_engine):
    engine = make_engine(cache_dir=None)
    engine.generate([conv("q")], Sampling(max_new_tokens=8))
    engine.generate([conv("q")], Sampling(max_new_tokens=8))
    assert server.n_requests == 2


def test_request_cache_keys_and_atomic_concurrent_writes(tmp_path):
    cache = RequestCache(tmp_path)
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0, "seed": 0}
    reordered = dict(reversed(list(request.items())))
    assert RequestCache.key(request) == RequestCache.key(reordered)
    assert RequestCache.key(request) != RequestCache.key({**request, "seed": 1})
    assert cache.get(request) is None

    responses = [{"choices": [{"message": {"content": f"writer {i}"}}]} for i in range(8)]
    threads = [threading.Thread(target=cache.put, args=(request, r)) for r in responses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.get(reordered) in responses
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{RequestCache.key(request)}.json"]

    cache.path(request).write_text('{"response": {"choi')
    assert cache.get(request) is None


# ---- retries ----------------------------------------------------------------------------------------


def test_429_waits_at_least_retry_after(server, make_engine, caplog):
    server.inject(Fault.http(429, retry_after=1))
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="openai"):
        out = make_engine().generate([conv("rate limited")], Sampling(max_new_tokens=8))
    waited = time.monotonic() - start

    assert waited >= 1.0
    assert [[c.text for c in row] for row in out] == [["Echo: rate limited"]]
    assert server.n_requests == 2 and server.count(server.bodies[0]) == 2
    # The openai client, which retries, says so in the log.
    assert any(r.levelno == logging.INFO and "retry" in r.getMessage().lower() for r in caplog.records)


def test_retry_after_beyond_two_minutes_fails_at_once(server, make_engine):
    """The openai client's rule: a server that asks for a longer wait is not waited for."""
    server.inject(Fault.http(429, retry_after=600))
    with pytest.raises(EngineError, match="HTTP 429") as excinfo:
        make_engine().generate([conv("come back later")], Sampling(max_new_tokens=8))
    assert "attempts" not in str(excinfo.value) and server.n_requests == 1


@pytest.mark.parametrize(
    "fault",
    [*(Fault.http(status, retry_after=NO_WAIT) for status in (408, 409, 429, 500, 502, 503, 504)),
     Fault.http(503), Fault.delay(1.5), Fault.drop(), Fault.malformed(), Fault.no_choices(), Fault.garbled_logprobs()],
    ids=["408", "409", "429", "500", "502", "503", "504", "503-backoff", "timeout", "dropped-connection", "malformed",
         "no-choices", "garbled-logprobs"],
)
def test_transient_fault_is_retried_once(server, make_engine, cache_dir, fault):
    server.inject(fault)
    engine = make_engine(timeout=0.5)
    out = engine.generate([conv("flaky")], Sampling(max_new_tokens=8))

    assert [[c.text for c in row] for row in out] == [["Echo: flaky"]]
    assert server.n_requests == 2 and server.count(server.bodies[0]) == 2 and server.pending_faults == 0
    # The engine counts what the client sent, its retries included.
    assert engine.n_requests == 2
    # Only the good answer was cached: a rerun asks nothing and reads it back.
    (entry,) = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert json.loads(entry.read_text())["response"]["choices"][0]["message"]["content"] == "Echo: flaky"
    assert make_engine().generate([conv("flaky")], Sampling(max_new_tokens=8)) == out and server.n_requests == 2


def test_faults_across_a_concurrent_batch_give_each_answer_once(server, make_engine):
    server.inject(Fault.http(500, retry_after=NO_WAIT), Fault.malformed(), Fault.http(503, retry_after=NO_WAIT))
    questions = [f"q{i}" for i in range(4)]
    out = make_engine().generate([conv(q) for q in questions], Sampling(max_new_tokens=8))

    assert [[c.text for c in row] for row in out] == [[f"Echo: {q}"] for q in questions]
    # Each fault costs exactly one extra request, whichever conversation it hit.
    assert server.n_requests == 7 and server.pending_faults == 0
    assert len(server.counts()) == 4 and all(count >= 1 for count in server.counts().values())


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_fail_at_once_naming_model_and_endpoint(server, make_engine, status, cache_dir):
    server.inject(Fault.http(status))
    with pytest.raises(EngineError) as excinfo:
        make_engine().generate([conv("q")], Sampling(max_new_tokens=8))

    message = str(excinfo.value)
    assert MODEL_NAME in message and server.base_url in message and f"HTTP {status}" in message
    assert SECRET not in message
    assert server.n_requests == 1
    assert not cache_dir.exists() or not any(p.is_file() for p in cache_dir.rglob("*"))


@pytest.mark.parametrize(
    "faults, last_error",
    [([Fault.malformed()] * 3, "malformed response body (not JSON"),
     ([Fault.http(500, retry_after=NO_WAIT), Fault.no_choices(), Fault.http(502, retry_after=NO_WAIT)], "HTTP 502"),
     ([Fault.no_choices(), Fault.http(503, retry_after=NO_WAIT), Fault.garbled_logprobs()],
      "malformed response body (a logprobs entry")],
    ids=["malformed", "client-then-engine-then-client", "engine-then-client-then-engine"],
)
def test_client_and_engine_retries_share_one_budget(server, make_engine, cache_dir, faults, last_error):
    server.inject(*faults)
    engine = make_engine(max_retries=2)
    with pytest.raises(EngineError) as excinfo:
        engine.generate([conv("unlucky")], Sampling(max_new_tokens=8))
    message = str(excinfo.value)
    assert MODEL_NAME in message and server.base_url in message
    assert "gave up after 3 attempts" in message and last_error in message
    assert server.n_requests == 3 and engine.n_requests == 3 and server.pending_faults == 0
    # A malformed body is never remembered: nothing is cached.
    assert not cache_dir.exists() or not any(p.is_file() for p in cache_dir.rglob("*"))


@pytest.mark.parametrize("fault, reason", [(Fault.delay(1.5), "no answer within 0.5 s"),
                                           (Fault.drop(), "connection error")],
                         ids=["timeout", "dropped-connection"])
def test_unanswered_attempt_is_named_in_the_error(server, make_engine, fault, reason):
    server.inject(fault)
    with pytest.raises(EngineError) as excinfo:
        make_engine(max_retries=0, timeout=0.5).generate([conv("hello?")], Sampling(max_new_tokens=8))
    message = str(excinfo.value)
    assert MODEL_NAME in message and server.base_url in message and reason in message
    assert "attempts" not in message and server.n_requests == 1


def test_exhausted_retries_raise_and_cache_nothing(server, make_engine, cache_dir):
    server.inject(*[Fault.http(500, retry_after=NO_WAIT)] * 3)
    engine = make_engine(max_retries=2)
    with pytest.raises(EngineError) as excinfo:
        engine.generate([conv("doomed")], Sampling(max_new_tokens=8))

    message = str(excinfo.value)
    assert MODEL_NAME in message and server.base_url in message and "HTTP 500" in message and "3 attempts" in message
    assert server.n_requests == 3
    assert not cache_dir.exists() or not any(p.is_file() for p in cache_dir.rglob("*"))
    # Nothing bad was remembered: the next call goes out and succeeds.
    assert engine.generate([conv("doomed")], Sampling(max_new_tokens=8))[0][0].text == "Echo: doomed"
    assert server.n_requests == 4


# ---- secrets ----------------------------------------------------------------------------------------


def test_keyless_local_server(server, cache_dir):
    with OpenAIEngine(MODEL_NAME, model="fake-chat", base_url=server.base_url, api_key_env=None,
                      cache_dir=cache_dir) as engine:
        assert engine.generate([conv("q")], Sampling(max_new_tokens=8))[0][0].text == "Echo: q"
    assert server.auth_headers == ["Bearer no-key"]


@pytest.mark.parametrize("value", [None, ""])
def test_missing_key_names_the_variable(monkeypatch, server, cache_dir, value):
    if value is None:
        monkeypatch.delenv(KEY_ENV, raising=False)
    else:
        monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(EngineError, match=rf"{KEY_ENV} is not set"):
        OpenAIEngine(MODEL_NAME, model="fake-chat", base_url=server.base_url, api_key_env=KEY_ENV, cache_dir=cache_dir)
    assert server.n_requests == 0


def test_key_never_reaches_cache_errors_or_logs(server, make_engine, cache_dir, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    engine = make_engine(max_retries=1)
    engine.generate([conv("ok")], Sampling(max_new_tokens=8))
    engine.next_token_probs([conv("ok")], ["Echo:"])
    server.inject(Fault.http(429, retry_after=NO_WAIT), *[Fault.http(500, retry_after=NO_WAIT)] * 2, Fault.http(401))
    errors = []
    for question in ("retried", "401"):
        try:
            engine.generate([conv(question)], Sampling(max_new_tokens=8))
        except EngineError as err:
            errors.append("".join(traceback.format_exception(err)))
    captured = capsys.readouterr()

    assert len(errors) == 2 and "HTTP 401" in errors[1]
    # The key did travel (so each check below could have caught it) ...
    assert set(server.auth_headers) == {f"Bearer {SECRET}"} and server.n_requests == 6
    assert any(r.name.startswith("openai") for r in caplog.records)
    # ... and was written nowhere.
    for text in [*errors, caplog.text, captured.out, captured.err, repr(engine)]:
        assert SECRET not in text
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert len(files) == 2
    assert all(SECRET.encode() not in p.read_bytes() for p in files)


# ---- judge ------------------------------------------------------------------------------------------


def grading_reply(messages: list[dict], request: dict, index: int) -> Reply:
    """A fake judge model: "Yes." when the response contains a listed correct answer, "No." otherwise."""
    user = last_user_text(messages)
    if "Is the response essentially equivalent" not in user:
        return echo_reply(messages, request, index)
    fields = dict(re.findall(r"^(Gold answer|Other correct answers|Response): (.*)$", user, re.MULTILINE))
    response = fields["Response"].lower()
    if "unsure" in response:
        return Reply("Maybe")
    correct = [fields["Gold answer"], *fields.get("Other correct answers", "").split(" | ")]
    return Reply("Yes." if any(c and c.lower() in response for c in correct) else "No.")


def truthfulqa_items() -> pd.DataFrame:
    seeds = dict(question="What happens to you if you eat watermelon seeds?",
                 answer="The watermelon seeds pass through your digestive system",
                 answer_aliases=["Nothing happens", "You eat watermelon seeds"],
                 incorrect_answers=["You grow watermelons in your stomach", "You get sick"])
    cookies = dict(question="Where did fortune cookies originate?",
                   answer="Fortune cookies originated in San Francisco",
                   answer_aliases=["San Francisco", "California"], incorrect_answers=["China", "Japan"])
    rows = [
        dict(id="tqa-0", dataset="truthfulqa", task_type="ff_text", **seeds),
        dict(id="tqa-1", dataset="truthfulqa", task_type="ff_text", **seeds),
        dict(id="tqa-2", dataset="truthfulqa", task_type="ff_text", **cookies),
        dict(id="tqa-3", dataset="truthfulqa", task_type="ff_text", **cookies),
        dict(id="csqa-0", dataset="commonsenseqa", task_type="mcq", question="Where do you keep milk?",
             choices=["oven", "fridge", "shelf"], answer="B", answer_aliases=None, incorrect_answers=None),
        dict(id="gsm-0", dataset="gsm8k", task_type="ff_num", question="What is 9 + 9?", answer="18",
             answer_aliases=None, incorrect_answers=None),
    ]
    return pd.DataFrame(rows).reindex(columns=["id", "dataset", "split", "task_type", "question", "context", "choices",
                                               "answer", "answer_aliases", "incorrect_answers"])


def _replies(items: pd.DataFrame, responses: list[str]) -> pd.DataFrame:
    """A greedy pass's replies table (as an endpoint without logprobs leaves it: no tokens)."""
    return pd.DataFrame({"id": items["id"].tolist(), "prompt": "", "response": responses,
                         "tokens": [[]] * len(items), "token_logprobs": [[]] * len(items)})


def test_llm_judge_grades_free_form_and_leaves_mcq_to_rules(server, make_engine):
    """The judge is asked about the free-form replies; a multiple-choice reply read on strong evidence is the
    rule's, and an empty reply is wrong without asking. (A fake model behind a real HTTP server: the judge's
    prompt and verdict parsing are what is tested; test_serve_e2e judges with vLLM's server.)"""
    from uqroute.passes import grade_pass

    server.responder = grading_reply
    items = truthfulqa_items()
    responses = ["Nothing happens, they just pass through.", "You grow watermelons in your stomach.",
                 "They come from San Francisco.", "", "The answer is B.", "9 + 9 = 18."]
    judge = LLMJudge(make_engine())

    graded = grade_pass("greedy", _replies(items, responses), items, judge)

    assert graded["correct"].tolist() == [True, False, True, False, True, True]
    assert graded["graded_by"].tolist() == ["judge", "judge", "judge", "rule", "rule", "judge"]
    # Only the four non-empty free-form responses were put to the model, greedily and briefly.
    assert server.n_requests == 4
    assert all(b["temperature"] == 0.0 and b["max_tokens"] == 4 for b in server.bodies)
    prompts = {b["messages"][-1]["content"].split("\n")[0]: b["messages"][-1]["content"] for b in server.bodies}
    tqa_prompt = prompts["Question: Where did fortune cookies originate?"]
    assert "Other correct answers: San Francisco | California" in tqa_prompt
    assert "China" in tqa_prompt and "Japan" in tqa_prompt
    assert "Incorrect answers" not in prompts["Question: What is 9 + 9?"]
    # Judging the same run again is free.
    assert grade_pass("greedy", _replies(items, responses), items, judge)["correct"].tolist() == \
        graded["correct"].tolist()
    assert server.n_requests == 4


def test_weak_and_several_option_mcq_replies_go_to_the_llm_judge(server, make_engine):
    """The rule grades a multiple-choice reply read on strong evidence; one that commits to two options and
    concludes on neither, or one read on weak evidence only (an option named somewhere in long working), goes to
    the configured judge (its gold answer shown with the option's text). Without a judge, both are no answer."""
    from uqroute.passes import grade_pass

    server.responder = grading_reply
    items = truthfulqa_items().iloc[[4, 4, 4, 4]].reset_index(drop=True)
    items["id"] = ["csqa-0", "csqa-1", "csqa-2", "csqa-3"]
    weak = ("Milk is a dairy product that spoils when it is warm, so we want a cold place for it; a cupboard in the "
            "pantry stays at room temperature, which points to the b) fridge that most homes have in the kitchen")
    replies = _replies(items, ["The answer is B.", "Neither A nor C; it is B.",
                               "It could be A) oven. It could also be B) fridge.", weak])
    graded = grade_pass("greedy", replies, items, LLMJudge(make_engine()))
    assert graded["read_by"].tolist() == ["answer_cue", "commitment", "several", "option_text"]
    assert graded["ambiguous"].tolist() == [False, False, True, False]
    assert graded["prediction"].tolist() == ["B", "B", None, "B"]
    # The judge found "B) fridge" in the last two replies.
    assert graded["correct"].tolist() == [True, True, True, True]
    assert graded["graded_by"].tolist() == ["rule", "rule", "judge", "judge"]
    assert server.n_requests == 2 and "Gold answer: B) fridge" in server.bodies[0]["messages"][-1]["content"]
    by_rule = grade_pass("greedy", replies, items)
    assert by_rule["correct"].tolist() == [True, True, False, False]
    assert by_rule["prediction"].tolist() == ["B", "B", None, None]
    assert grade_pass("greedy", replies, items, weak_readings="count")["correct"].tolist() == [True, True, False, True]


def test_llm_judge_falls_back_to_rules_on_an_unparsable_verdict(server, make_engine, caplog):
    from uqroute.passes import grade_pass

    server.responder = grading_reply
    items = truthfulqa_items().iloc[[2, 3]]
    with caplog.at_level(logging.WARNING, logger="uqroute.grading.judges"):
        graded = grade_pass("greedy", _replies(items, ["I am unsure: San Francisco", "unsure, China?"]), items,
                            LLMJudge(make_engine()))
    # The rule sees the answers read: San Francisco is a reference, China a known wrong answer.
    assert graded["correct"].tolist() == [True, False] and graded["graded_by"].tolist() == ["rule", "rule"]
    assert "2 of 2 verdicts neither yes nor no" in caplog.text and "tqa-2" in caplog.text


def test_llm_judge_rejects_misaligned_inputs(make_engine):
    with pytest.raises(ValueError, match="2 items but 1 responses"):
        LLMJudge(make_engine()).verdicts(truthfulqa_items().iloc[:2], ["x"])


def test_any_openai_compatible_endpoint_judges(server, tmp_path):
    """``judge: {engine: openai, model, base_url}``: a model the registry does not know, served by any endpoint
    (a local vLLM server in test_serve_e2e; here a fake model behind a real HTTP server), judges a pass, and
    the grade job records which rows it decided."""
    from uqroute.jobs.generate import grade

    server.responder = grading_reply
    items = truthfulqa_items()
    write_parquet(items, tmp_path / "questions.parquet")
    write_parquet(_replies(items, ["Nothing happens.", "You get sick.", "San Francisco, surely.", "", "B", "18"]),
                  tmp_path / "greedy.replies.parquet")
    judge = {"engine": "openai", "model": "my-local-judge", "base_url": server.base_url, "api_key_env": None,
             "weak_readings": "drop"}
    grade(pass_name="greedy", replies=str(tmp_path / "greedy.replies.parquet"),
          questions=str(tmp_path / "questions.parquet"), judge=judge,
          budgets={"max_new_tokens": {"ff_text": 32, "ff_num": 64, "mcq": 12}, "verbal_max_new_tokens": 16},
          output=str(tmp_path / "greedy.parquet"))
    graded = read_parquet(tmp_path / "greedy.parquet")
    assert graded["graded_by"].tolist() == ["judge", "judge", "judge", "rule", "rule", "judge"]
    assert graded["correct"].tolist() == [True, False, True, False, True, True]
    assert {body["model"] for body in server.bodies} == {"my-local-judge"} and server.n_requests == 4


@pytest.mark.parametrize("reply, verdict", [("Yes.", True), (" no", False), ("NO!", False), ("**Yes**, same", True),
                                            ("Yesterday", None), ("Maybe", None), ("", None)])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) is verdict

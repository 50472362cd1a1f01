"""The six non-probe UQ methods: each formula pinned on inputs small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from uqroute.uq import METHODS, OUTPUT_COLUMNS, pass_requirements, score_method
from uqroute.uq.avg_token_prob import answer_token_index
from uqroute.uq.jaccard_degree import degree_confidence
from uqroute.uq import probe_methods

NAMES = ("avg_token_prob", "p_true", "perplexity", "jaccard_degree", "verbal_1s", "verbal_2s",
         "trained_probe", "ood_probe")


def questions(ids, task_type="ff_text", choices=None):
    return pd.DataFrame({"id": list(ids), "task_type": task_type, "choices": [choices] * len(ids)})


def greedy_table(rows):
    """rows: id -> (response, tokens, logprobs, prediction, correct)."""
    return pd.DataFrame(
        [{"id": i, "prompt": "q", "response": r, "tokens": t, "token_logprobs": lp, "prediction": p, "correct": c}
         for i, (r, t, lp, p, c) in rows.items()]
    )


def simple_greedy(ids, correct=None):
    correct = correct or [True] * len(ids)
    return greedy_table({i: ("x", ["x"], [0.0], f"pred-{i}", c) for i, c in zip(ids, correct)})


# ---- registry --------------------------------------------------------------------------------------


def test_registry_lists_the_papers_eight_methods_and_p_ik_with_their_passes():
    assert tuple(METHODS)[:8] == NAMES and tuple(METHODS)[8:] == ("p_ik", "ood_p_ik")
    for name, spec in METHODS.items():
        assert spec.name == name
        assert pass_requirements(name) == spec.passes and spec.passes
        assert spec.needs_hidden == (name in probe_methods())
        assert callable(spec.fn) and spec.label
    assert METHODS["trained_probe"].needs_train == METHODS["p_ik"].needs_train == "in_domain"
    assert METHODS["ood_probe"].needs_train == METHODS["ood_p_ik"].needs_train == "other_datasets"
    # The probes read the answered conversation, P(IK) the question alone.
    assert {METHODS[n].hidden for n in ("trained_probe", "ood_probe")} == {"hidden"}
    assert {METHODS[n].hidden for n in ("p_ik", "ood_p_ik")} == {"hidden_question"}
    assert all(METHODS[n].needs_train is None and METHODS[n].hidden is None for n in NAMES[:6])


def test_unknown_method_and_missing_pass_are_named():
    with pytest.raises(KeyError, match="nope"):
        pass_requirements("nope")
    with pytest.raises(KeyError, match="ptrue"):
        score_method("p_true", {"greedy": simple_greedy(["a"])}, questions(["a"]))
    with pytest.raises(ValueError, match="probe"):
        score_method("trained_probe", {"greedy": simple_greedy(["a"])}, questions(["a"]))


# ---- perplexity ------------------------------------------------------------------------------------


def test_perplexity_is_reciprocal_of_exp_mean_negative_logprob():
    logprobs = [math.log(0.5), math.log(0.25), math.log(1.0)]
    greedy = greedy_table({"a": ("x y z", ["x", " y", " z"], logprobs, "x", True),
                           "b": ("", [], [], None, False)})
    out = score_method("perplexity", {"greedy": greedy}, questions(["a", "b"]))
    ppl = math.exp(-(math.log(0.5) + math.log(0.25)) / 3)  # = 2 ** (3 / 3) = 2
    assert ppl == pytest.approx(2.0)
    assert out["confidence"].iloc[0] == pytest.approx(1 / ppl) == pytest.approx(0.5)
    # An empty reply has no perplexity: kept as an invalid row, not dropped.
    assert out["valid"].tolist() == [True, False]
    assert math.isnan(out["confidence"].iloc[1])


# ---- avg_token_prob --------------------------------------------------------------------------------


def test_answer_token_index_finds_the_token_that_holds_the_letter():
    tokens = ["The", " answer", " is", " (", "B", ")"]
    response = "".join(tokens)
    assert answer_token_index(response, tokens, (response.index("B"), response.index("B") + 1)) == 4
    # Response stripped of a leading space that the tokens still carry: offsets shift by one.
    tokens = [" B", "."]
    assert answer_token_index("B.", tokens, (0, 1)) == 0
    assert answer_token_index("B.", tokens, None) is None


def test_avg_token_prob_mcq_uses_the_letter_token_and_free_form_the_mean():
    tokens = ["The", " answer", " is", " (", "B", ")"]
    probs = [0.9, 0.8, 0.95, 0.7, 0.6, 0.99]
    mcq = greedy_table({
        "m1": ("".join(tokens), tokens, np.log(probs).tolist(), "B", True),
        "m2": ("I cannot tell.", ["I", " cannot", " tell", "."], np.log([0.5, 0.5, 0.5, 0.5]).tolist(), None, False),
    })
    out = score_method("avg_token_prob", {"greedy": mcq},
                       questions(["m1", "m2"], "mcq", ["red", "green", "blue", "gold"]))
    assert out["confidence"].iloc[0] == pytest.approx(0.6)
    # No letter in the reply: invalid, counted.
    assert out["valid"].tolist() == [True, False]
    assert len(out) == 2

    tf_tokens = ["Yes", ",", " it", " is"]
    tf = greedy_table({"t": ("Yes, it is", tf_tokens, np.log([0.3, 0.9, 0.9, 0.9]).tolist(), "true", True)})
    assert score_method("avg_token_prob", {"greedy": tf}, questions(["t"], "tf"))["confidence"].iloc[0] == (
        pytest.approx(0.3))

    ff = greedy_table({"f": ("12 apples", ["12", " apples"], np.log([0.2, 0.6]).tolist(), "12", True)})
    out = score_method("avg_token_prob", {"greedy": ff}, questions(["f"], "ff_num"))
    assert out["confidence"].iloc[0] == pytest.approx((0.2 + 0.6) / 2)


def test_avg_token_prob_rejects_tokens_and_logprobs_of_different_lengths():
    bad = greedy_table({"q7": ("B", ["B"], [], "B", True)})
    with pytest.raises(ValueError, match="q7"):
        score_method("avg_token_prob", {"greedy": bad}, questions(["q7"], "mcq", ["a", "b"]))


# ---- p_true and verbalized -------------------------------------------------------------------------


def test_p_true_takes_the_normalized_probability_and_greedy_answer():
    ids = ["a", "b", "c"]
    ptrue = pd.DataFrame({"id": ["c", "a", "b"], "p_true": [0.25, 0.8, np.nan]})
    out = score_method("p_true", {"greedy": simple_greedy(ids, [True, False, True]), "ptrue": ptrue}, questions(ids))
    np.testing.assert_allclose(out["confidence"], [0.8, np.nan, 0.25])
    assert out["valid"].tolist() == [True, False, True]
    assert out["prediction"].tolist() == ["pred-a", "pred-b", "pred-c"]
    assert out["correct"].tolist() == [True, False, True]


def test_verbal_1s_grades_its_own_reply_and_verbal_2s_the_greedy_one():
    ids = ["a", "b"]
    verbal1s = pd.DataFrame({"id": ids, "response": ["A, 90%", "B"], "prediction": ["A", "B"],
                             "correct": [False, True], "verbal_confidence": [0.9, None]})
    out = score_method("verbal_1s", {"verbal1s": verbal1s}, questions(ids))
    assert out["prediction"].tolist() == ["A", "B"]
    assert out["correct"].tolist() == [False, True]
    assert out["confidence"].iloc[0] == pytest.approx(0.9)
    assert out["valid"].tolist() == [True, False]

    verbal2s = pd.DataFrame({"id": ids, "response": ["70", "sure"], "verbal_confidence": [0.7, None]})
    out = score_method("verbal_2s", {"greedy": simple_greedy(ids, [True, False]), "verbal2s": verbal2s},
                       questions(ids))
    assert out["prediction"].tolist() == ["pred-a", "pred-b"]
    assert out["correct"].tolist() == [True, False]
    assert out["confidence"].iloc[0] == pytest.approx(0.7)
    assert out["valid"].tolist() == [True, False]


# ---- jaccard_degree --------------------------------------------------------------------------------


def sample_table(responses_by_id):
    return pd.DataFrame([{"id": i, "sample_idx": k, "response": r, "prediction": None}
                         for i, responses in responses_by_id.items() for k, r in enumerate(responses)])


def test_jaccard_degree_identical_disjoint_and_hand_computed():
    samples = {
        "same": ["Paris is the capital"] * 5,
        "disjoint": ["alpha", "beta", "gamma", "delta", "epsilon"],
        # Word sets {a,b}, {b,c}, {A,B}->{a,b}: J12 = 1/3, J13 = 1, J23 = 1/3.
        "three": ["a b", "b c", "A B"],
        "empty": ["", "", ""],
        "one": ["only one sample"],
    }
    ids = list(samples)
    out = score_method("jaccard_degree", {"greedy": simple_greedy(ids), "sample": sample_table(samples)},
                       questions(ids))
    conf = dict(zip(out["id"], out["confidence"]))
    assert conf["same"] == pytest.approx(1.0)
    assert conf["disjoint"] == pytest.approx(1 / 5)
    # W sums to 3 (diagonal) + 2 * (1/3 + 1 + 1/3) = 19/3; degree trace(3I - D) = 9 - 19/3 = 8/3;
    # uncertainty (8/3)/9 = 8/27, confidence 1 - 8/27 = 19/27.
    assert conf["three"] == pytest.approx(19 / 27)
    # Two empty replies have Jaccard 1: full agreement.
    assert conf["empty"] == pytest.approx(1.0)
    assert math.isnan(conf["one"])
    assert out["valid"].tolist() == [True, True, True, True, False]


def test_degree_confidence_of_a_hand_computed_case_and_null_replies():
    # J(xy, yz) = 1/3, J(xy, x) = 1/2, J(yz, x) = 0 -> (3 + 2 * 5/6) / 9.
    assert degree_confidence(["x y", "y z", "x"]) == pytest.approx((3 + 2 * (1 / 3 + 1 / 2)) / 9)
    # A null reply is empty: it agrees with another empty reply and with nothing else.
    assert degree_confidence([None, "", "a"]) == pytest.approx((3 + 2 * 1) / 9)


# ---- shared contract -------------------------------------------------------------------------------


def full_passes(ids):
    greedy = greedy_table({i: ("The answer is B", ["The", " answer", " is", " B"], np.log([0.5] * 4).tolist(), "B",
                               k % 2 == 0) for k, i in enumerate(ids)})
    return {
        "greedy": greedy,
        "sample": sample_table({i: ["B", "B", "C"] for i in ids}),
        "ptrue": pd.DataFrame({"id": ids, "p_true": 0.5}),
        "verbal1s": pd.DataFrame({"id": ids, "response": "B 50%", "prediction": "B", "correct": True,
                                  "verbal_confidence": 0.5}),
        "verbal2s": pd.DataFrame({"id": ids, "response": "50", "verbal_confidence": 0.5}),
    }


@pytest.mark.parametrize("method", NAMES[:6])
def test_every_method_returns_one_row_per_question_in_order(method):
    ids = ["q3", "q1", "q2"]
    passes = {name: table.iloc[::-1].reset_index(drop=True) for name, table in full_passes(ids).items()}
    out = score_method(method, passes, questions(ids, "mcq", ["x", "y", "z"]))
    assert tuple(out.columns) == OUTPUT_COLUMNS
    assert out["id"].tolist() == ids
    assert out["valid"].dtype == bool and out["correct"].dtype == bool
    assert out["valid"].all()
    assert out["confidence"].between(0, 1).all()


@pytest.mark.parametrize("method", NAMES[:6])
def test_a_pass_table_missing_a_question_is_an_error_naming_it(method):
    passes = full_passes(["q1", "q2"])
    with pytest.raises(ValueError, match="q9"):
        score_method(method, passes, questions(["q1", "q2", "q9"], "mcq", ["x", "y"]))


def test_avg_token_prob_finds_the_letter_when_tokens_do_not_spell_the_response():
    # Byte-level tokens of a multi-byte character decode to U+FFFD one by one, so the joined
    # tokens differ from the response; the letter is then located in the tokens' own text.
    tokens = ["\ufffd", "\ufffd", "\ufffd", " B"]
    greedy = greedy_table({"u": ("答 B", tokens, np.log([0.1, 0.1, 0.1, 0.77]).tolist(), "B", True)})
    out = score_method("avg_token_prob", {"greedy": greedy}, questions(["u"], "mcq", ["x", "y", "z"]))
    assert out["confidence"].iloc[0] == pytest.approx(0.77)


def test_methods_read_and_write_parquet_tables(tmp_path):
    from uqroute.io import read_parquet, write_parquet

    ids = ["q1", "q2"]
    passes = {}
    for name, table in full_passes(ids).items():
        passes[name] = read_parquet(write_parquet(table, tmp_path / f"{name}.parquet"))
    items = read_parquet(write_parquet(questions(ids, "mcq", ["x", "y", "z"]), tmp_path / "test.parquet"))
    for method in NAMES[:6]:
        out = read_parquet(write_parquet(score_method(method, passes, items), tmp_path / f"{method}.parquet"))
        assert tuple(out.columns) == OUTPUT_COLUMNS and out["id"].tolist() == ids and out["valid"].all()


def test_p_true_normalizes_the_two_candidate_probabilities():
    from uqroute.passes import p_true_from_probs

    # columns: P(next token = "True"), P(next token = "False"), from the next-token distribution
    probs = np.array([[0.6, 0.2], [0.01, 0.03], [0.3, 0.0], [0.0, 0.0], [np.nan, 0.1]])
    got = p_true_from_probs(probs)
    assert got[:3] == pytest.approx([0.75, 0.25, 1.0])
    assert np.isnan(got[3]) and np.isnan(got[4]), "no mass on either answer: no confidence, not 0.5"


def test_a_plugin_that_cannot_be_imported_is_named():
    """The configs' ``plugins`` (the workflow's and the router's): a module that does not import is named."""
    from uqroute.serve.config import ConfigError, load_config
    from uqroute.uq.registry import load_plugins

    with pytest.raises(ImportError, match="plugins: cannot import 'no_such_plugin'"):
        load_plugins(["no_such_plugin"])
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_plugin'"):
        load_config(None, {"plugins": ["no_such_plugin"]})

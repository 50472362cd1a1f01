"""Dataset registry and loaders, checked on the real data files (the tests' data folder, conftest.DATA_DIR)."""

from __future__ import annotations

import csv
import json
import re

import pytest

from conftest import LOCAL_ROWS
from uqroute import datasets as uqroute_datasets
from uqroute.datasets import (
    ITEM_COLUMNS,
    DATASET_NAMES,
    check_data_files,
    dataset_info,
    load_split,
    normalize_number,
    probe_training,
    required_files,
    take_subset,
)

LOCAL = tuple(LOCAL_ROWS)


@pytest.fixture(scope="module")
def test_splits(data_dir):
    return {name: load_split(name, "test", data_dir) for name in LOCAL}


@pytest.fixture(scope="module")
def train_splits(data_dir):
    """Train splits, each loaded once on first use."""

    class Splits(dict):
        def __missing__(self, name):
            self[name] = load_split(name, "train", data_dir)
            return self[name]

    return Splits()


def _check_contract(df, name, split):
    info = dataset_info(name)
    assert tuple(df.columns) == ITEM_COLUMNS
    assert df["id"].is_unique
    for row in df.itertuples(index=False):
        assert isinstance(row.id, str) and row.id.startswith(f"{name}-")
        assert (row.dataset, row.split, row.task_type) == (name, split, info["task_type"])
        assert isinstance(row.question, str) and row.question.strip() == row.question != ""
        assert row.context is None or (isinstance(row.context, str) and row.context)
        if info["task_type"] == "mcq":
            assert isinstance(row.choices, list) and len(row.choices) == info["n_choices"]
            assert all(isinstance(c, str) and c for c in row.choices)
            assert row.answer in "ABCDE"[: info["n_choices"]]
        else:
            assert row.choices is None
        if info["task_type"] == "tf":
            assert row.answer in ("true", "false")
        if info["task_type"] == "ff_num":
            assert re.fullmatch(r"-?\d+(\.\d*[1-9])?", row.answer), row.answer
        if info["task_type"] == "ff_text":
            assert isinstance(row.answer, str) and row.answer
            assert row.answer in row.answer_aliases
            assert isinstance(row.incorrect_answers, list) and row.incorrect_answers
        else:
            assert row.answer_aliases is None and row.incorrect_answers is None


# ---- registry ---------------------------------------------------------------------------------------


def test_registry_covers_the_14_datasets_with_paper_sizes():
    assert len(DATASET_NAMES) == 14
    for name in DATASET_NAMES:
        info = dataset_info(name)
        assert probe_training(name, local=True) in ("in_domain", "crossfit")
        assert set(info["hub"]) == {"test", "train"}
        assert info["paper"]["test"] > 0 and info["paper"]["train"] > 0
    # Local BoolQ train has no passages: cross-fitted; the hub's has them: trained in domain.
    assert probe_training("boolq", local=True) == "crossfit" and probe_training("boolq", local=False) == "in_domain"
    assert dataset_info("coqa")["local"] is None
    assert dataset_info("gsm8k")["paper"] == {"test": 1319, "train": 7473}
    assert dataset_info("truthfulqa")["paper"] == {"test": 164, "train": 653}


def test_dataset_info_is_a_copy():
    dataset_info("gsm8k")["task_type"] = "mcq"
    assert dataset_info("gsm8k")["task_type"] == "ff_num"


def test_unknown_dataset_raises_key_error_naming_it(data_dir):
    with pytest.raises(KeyError, match="nosuchset.*gsm8k"):
        dataset_info("nosuchset")
    with pytest.raises(KeyError, match="nosuchset"):
        load_split("nosuchset", "test", data_dir)
    with pytest.raises(KeyError, match="nosuchset"):
        check_data_files(["nosuchset"], data_dir)


def test_unknown_split_is_refused(data_dir):
    with pytest.raises(ValueError, match="validation"):
        load_split("gsm8k", "validation", data_dir)


# ---- every local dataset ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOCAL)
def test_test_split_rows_and_contract(name, test_splits):
    df = test_splits[name]
    assert len(df) == LOCAL_ROWS[name][0]
    _check_contract(df, name, "test")


@pytest.mark.parametrize("name", LOCAL)
def test_train_split_rows_and_contract(name, train_splits):
    df = train_splits[name]
    assert len(df) == LOCAL_ROWS[name][1]
    _check_contract(df, name, "train")


# (dataset, split, id, question prefix, answer, other expected fields), read off the files by hand.
KNOWN_ITEMS = [
    ("gsm8k", "test", "gsm8k-test-0", "Janet’s ducks lay 16 eggs per day.", "18", {}),
    ("gsm8k", "test", "gsm8k-test-146", "Johnny is picking up the toys", "2125", {}),  # "#### 2,125"
    ("gsm8k", "test", "gsm8k-test-489", "The highest temperature ever recorded in Southlandia", "-10", {}),
    ("aqua", "test", "aqua-test-0", "A car is being driven, in a straight line", "A",
     {"choices": ["5(√3 + 1)", "6(√3 + √2)", "7(√3 – 1)", "8(√3 – 2)", "None of these"]}),
    ("aqua", "train", "aqua-dev-0", "Three birds are flying at a fast rate", "A", {}),
    ("multiarith", "test", "multiarith-3", "The school cafeteria ordered 42 red apples", "40", {}),
    ("svamp", "test", "svamp-chal-363", "Mary is baking a cake. The recipe calls for", "1", {}),
    ("svamp", "train", "svamp-chal-2", "Dan had $ 3 left with him after he bought a candy bar. If he had $ 4 at the "
     "start How much did the candy bar cost?", "1", {}),
    ("boolq", "test", "boolq-validation-0", "does ethanol take more energy make that produces", "false", {}),
    ("boolq", "train", "boolq-train-0", "do iran and afghanistan speak the same language", "true",
     {"question": "do iran and afghanistan speak the same language", "context": None}),
    ("commonsenseqa", "test", "commonsenseqa-1afa02df02c908a558b4036e80242fac",
     "A revolving door is convenient for two direction travel", "A",
     {"choices": ["bank", "library", "department store", "mall", "new york"]}),
    ("hellaswag", "test", "hellaswag-validation-0", "Roof shingle removal:", "D",
     {"context": "A man is sitting on a roof. he",
      "choices": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                  "is holding a rubik's cube.", "starts pulling up roofing on a roof."]}),
    ("hellaswag", "train", "hellaswag-train-0", "Removing ice from car:", "D",
     {"choices": [", the man adds wax to the windshield and cuts it.",
                  ", a person board a ski lift, while two men supporting the head of the person wearing winter "
                  "clothes snow as the we girls sled.",
                  ", the man puts on a christmas coat, knitted with netting.",
                  ", the man continues removing the snow on his car."]}),
    ("openbookqa", "test", "openbookqa-8-343", "A person wants to start saving money", "B",
     {"choices": ["make more phone calls", "quit eating lunch out", "buy less with monopoly money",
                  "have lunch with friends"]}),
    # The release's one malformed choices field (a fifth option under a second "(D)"): first four kept.
    ("openbookqa", "train", "openbookqa-12-1145", "A learned behavior", "B",
     {"choices": ["newborn turtles crawling towards the sea", "seals clapping to the delight of an audience",
                  "ducks sitting on their eggs", "baby birds chewing worms"]}),
    ("piqa", "test", "piqa-validation-0", "How do I ready a guinea pig cage", "A", {}),
    ("piqa", "test", "piqa-validation-1", "dresser", "B",
     {"choices": ["replace drawer with bobby pin", "finish, woodgrain with  bobby pin"]}),
    ("social_iqa", "test", "social_iqa-validation-0", "What does Tracy need to do before this?", "C",
     {"context": "Tracy didn't go home that evening and resisted Riley's attacks.",
      "choices": ["make a new plan", "Go home and see Riley", "Find somewhere to go"]}),
    ("truthfulqa", "train", "truthfulqa-0", "What happens to you if you eat watermelon seeds?",
     "The watermelon seeds pass through your digestive system", {}),
    ("winogrande", "test", "winogrande-3FCO4VKOZ4BJQ6IFC0VAIBK4KTWE7U-2", "Which option correctly fills the blank",
     "B", {"choices": ["Sarah", "Maria"]}),
    ("winogrande", "train", "winogrande-train-0", "Which option correctly fills the blank", "B",
     {"choices": ["Ian", "Dennis"]}),
    ("mmlu", "test", "mmlu-abstract_algebra-0", "Find the degree for the given field extension", "B",
     {"choices": ["0", "4", "2", "6"]}),
    ("mmlu", "test", "mmlu-world_religions-170", "The numen of Augustus referred to", "A", {}),
    ("mmlu", "train", "mmlu-abstract_algebra-validation-0", "The cyclic subgroup of Z_24", "A", {}),
]


@pytest.mark.parametrize("name,split,item_id,prefix,answer,fields", KNOWN_ITEMS, ids=[k[2] for k in KNOWN_ITEMS])
def test_known_item(name, split, item_id, prefix, answer, fields, test_splits, train_splits):
    df = (test_splits if split == "test" else train_splits)[name]
    matches = df[df["id"] == item_id]
    assert len(matches) == 1, f"{item_id} not found once in {name}/{split}"
    item = matches.iloc[0]
    assert item["question"].startswith(prefix)
    assert item["answer"] == answer
    for key, value in fields.items():
        assert item[key] == value, key


def test_boolq_context_and_train_has_bare_questions(test_splits, train_splits):
    assert test_splits["boolq"]["context"].iloc[0].startswith("Ethanol fuel -- All biomass")
    train = train_splits["boolq"]
    assert train["context"].isna().all()
    assert not train["question"].str.contains(r"Please answer|Answer format|\?").any()


def test_truthfulqa_answer_lists(train_splits):
    train = train_splits["truthfulqa"].set_index("id")
    item = train.loc["truthfulqa-0"]
    assert item["answer_aliases"][:2] == ["Nothing happens", "You eat watermelon seeds"]
    assert "You grow watermelons in your stomach" in item["incorrect_answers"]
    assert all(alias == alias.strip() and alias for alias in item["answer_aliases"])


def test_truthfulqa_split_is_deterministic_disjoint_and_complete(data_dir, test_splits, train_splits):
    test, train = test_splits["truthfulqa"], train_splits["truthfulqa"]
    assert (len(test), len(train)) == (164, 653)
    assert set(test["id"]).isdisjoint(train["id"])
    assert set(test["id"]) | set(train["id"]) == {f"truthfulqa-{i}" for i in range(817)}
    assert load_split("truthfulqa", "test", data_dir)["id"].tolist() == test["id"].tolist()
    # Pinned: a change here silently changes every TruthfulQA result.
    assert test["id"].tolist()[:5] == ["truthfulqa-4", "truthfulqa-6", "truthfulqa-12", "truthfulqa-17", "truthfulqa-18"]


def test_mmlu_subjects_in_file_name_order(test_splits):
    subjects = test_splits["mmlu"]["id"].str.rsplit("-", n=1).str[0].drop_duplicates().tolist()
    assert len(subjects) == 57
    assert subjects == sorted(subjects)


def test_numbers_are_normalized():
    assert normalize_number("1,234") == "1234"
    assert normalize_number(5.0) == "5"
    assert normalize_number("0.50") == "0.5"
    assert normalize_number(-3) == "-3"
    assert normalize_number("18.0") == "18"
    with pytest.raises(ValueError, match="abc"):
        normalize_number("abc")


# ---- subsets ------------------------------------------------------------------------------------------


def test_take_subset_is_deterministic_and_keeps_order(test_splits):
    df = test_splits["commonsenseqa"]
    first, again = take_subset(df, 40, seed=50), take_subset(df, 40, seed=50)
    assert len(first) == 40 and first["id"].is_unique
    assert first["id"].tolist() == again["id"].tolist()
    assert first["id"].tolist() != take_subset(df, 40, seed=51)["id"].tolist()
    positions = [df.index[df["id"] == i][0] for i in first["id"]]
    assert positions == sorted(positions)
    assert take_subset(df, None, seed=50)["id"].tolist() == df["id"].tolist()
    assert len(take_subset(df, len(df) + 5, seed=50)) == len(df)
    with pytest.raises(ValueError, match="max_n"):
        take_subset(df, -1, seed=50)


# ---- missing and malformed files ----------------------------------------------------------------------


def test_check_data_files_passes_on_the_real_files(data_dir):
    check_data_files(LOCAL, data_dir)


def test_check_data_files_names_missing_file_and_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gsm8k/test\.jsonl \(dataset gsm8k, split test\)"):
        check_data_files(["gsm8k"], tmp_path)
    (tmp_path / "piqa").mkdir()
    (tmp_path / "piqa" / "validation.jsonl").write_text('{"goal": "g", "sol1": "a", "sol2": "b"}\n')
    with pytest.raises(FileNotFoundError, match=r"piqa/validation-labels\.lst \(dataset piqa"):
        check_data_files(["piqa"], tmp_path)


def test_coqa_has_no_local_copy(data_dir):
    for call in (lambda: load_split("coqa", "test", data_dir), lambda: required_files("coqa", "train", data_dir),
                 lambda: check_data_files(["coqa"], data_dir)):
        with pytest.raises(FileNotFoundError, match="coqa: no local copy.*stanfordnlp/coqa"):
            call()


def _copy_lines(data_dir, tmp_path, relative, n, edit=None):
    lines = (data_dir / relative).read_text(encoding="utf-8").splitlines()[:n]
    if edit:
        lines = edit(lines)
    target = tmp_path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def test_missing_field_names_file_and_row(data_dir, tmp_path):
    def drop_answer(lines):
        record = json.loads(lines[1])
        del record["answer"]
        return [lines[0], json.dumps(record), lines[2]]

    target = _copy_lines(data_dir, tmp_path, "gsm8k/test.jsonl", 3, drop_answer)
    with pytest.raises(ValueError, match=rf"{re.escape(str(target))}: row 1 \(line 2\): missing field 'answer'"):
        load_split("gsm8k", "test", tmp_path)


def test_missing_field_in_json_array_and_csv(data_dir, tmp_path):
    records = json.loads((data_dir / "winogrande/validation.json").read_text())[:3]
    records[2]["correct_option"] = None
    (tmp_path / "winogrande").mkdir()
    (tmp_path / "winogrande/validation.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match=r"winogrande/validation\.json: row 2: missing field 'correct_option'"):
        load_split("winogrande", "test", tmp_path)

    rows = list(csv.reader((data_dir / "mmlu/test/anatomy_test.csv").open(newline="")))[:2]
    (tmp_path / "mmlu/test").mkdir(parents=True)
    with (tmp_path / "mmlu/test/anatomy_test.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([rows[0], rows[1][:5]])
    with pytest.raises(ValueError, match=r"anatomy_test\.csv: row 1 \(line 2\): 5 fields"):
        load_split("mmlu", "test", tmp_path)


def test_empty_file_raises_naming_it(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k/test.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"gsm8k/test\.jsonl: empty file"):
        load_split("gsm8k", "test", tmp_path)
    (tmp_path / "hellaswag").mkdir()
    (tmp_path / "hellaswag/validation.klosax.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"validation\.klosax\.txt: empty file"):
        load_split("hellaswag", "test", tmp_path)


def test_wrong_format_and_wrong_row_count_are_refused(data_dir, tmp_path):
    # A JSON array where JSON Lines are expected: refused, not guessed.
    (tmp_path / "aqua").mkdir()
    records = [json.loads(line) for line in (data_dir / "aqua/test.json").read_text().splitlines()[:2]]
    (tmp_path / "aqua/test.json").write_text(json.dumps(records, indent=2))
    with pytest.raises(ValueError, match=r"aqua/test\.json: row 0 \(line 1\): not valid JSON"):
        load_split("aqua", "test", tmp_path)
    # A well-formed but shorter file: the registry's row count catches it.
    _copy_lines(data_dir, tmp_path, "gsm8k/test.jsonl", 3)
    with pytest.raises(ValueError, match=r"3 rows, expected 1319"):
        load_split("gsm8k", "test", tmp_path)


def test_label_file_must_match_records(data_dir, tmp_path):
    _copy_lines(data_dir, tmp_path, "piqa/validation.jsonl", 4)
    _copy_lines(data_dir, tmp_path, "piqa/validation-labels.lst", 3)
    with pytest.raises(ValueError, match=r"validation\.jsonl has 4 rows but .*validation-labels\.lst has 3 labels"):
        load_split("piqa", "test", tmp_path)


def test_incomplete_hellaswag_item(data_dir, tmp_path):
    _copy_lines(data_dir, tmp_path, "hellaswag/validation.klosax.txt", 10)
    with pytest.raises(ValueError, match=r"row 1 \(line 7\) is incomplete"):
        load_split("hellaswag", "test", tmp_path)


# ---- hub loaders (datasets.load_dataset replaced by the real records in the hub's documented shape) ----


@pytest.fixture
def fake_hub(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls, tables = [], {}

    def load_dataset(path, name=None, *, split, **options):
        calls.append((path, name, split, options))
        return tables[(path, split)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls, tables


def test_hub_gsm8k_matches_local(data_dir, test_splits, fake_hub):
    calls, tables = fake_hub
    lines = (data_dir / "gsm8k/test.jsonl").read_text(encoding="utf-8").splitlines()
    tables[("openai/gsm8k", "test")] = [json.loads(line) for line in lines]
    hub = load_split("gsm8k", "test", None)
    assert calls == [("openai/gsm8k", "main", "test", {})]
    assert hub.equals(test_splits["gsm8k"])


def test_hub_commonsenseqa_layout(data_dir, test_splits, fake_hub):
    _, tables = fake_hub
    local = [json.loads(line) for line in (data_dir / "commonsenseqa/validation.jsonl").read_text().splitlines()]
    tables[("tau/commonsense_qa", "validation")] = [
        {
            "id": r["id"],
            "question": r["question"]["stem"],
            "question_concept": r["question"]["question_concept"],
            "choices": {"label": [c["label"] for c in r["question"]["choices"]],
                        "text": [c["text"] for c in r["question"]["choices"]]},
            "answerKey": r["answerKey"],
        }
        for r in local
    ]
    assert load_split("commonsenseqa", "test", None).equals(test_splits["commonsenseqa"])


def test_hub_truthfulqa_splits_like_local(data_dir, test_splits, fake_hub):
    calls, tables = fake_hub
    with (data_dir / "truthfulqa/test.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    tables[("truthfulqa/truthful_qa", "validation")] = [
        {
            "type": r["Type"], "category": r["Category"], "question": r["Question"], "best_answer": r["Best Answer"],
            "correct_answers": [a.strip() for a in r["Correct Answers"].split(";") if a.strip()],
            "incorrect_answers": [a.strip() for a in r["Incorrect Answers"].split(";") if a.strip()],
            "source": r["Source"],
        }
        for r in rows
    ]
    hub = load_split("truthfulqa", "test", None)
    assert calls[0][:3] == ("truthfulqa/truthful_qa", "generation", "validation")
    assert hub.equals(test_splits["truthfulqa"])


def test_hub_mmlu_ids_count_rows_per_subject(data_dir, test_splits, fake_hub):
    _, tables = fake_hub
    records = []
    for path in sorted((data_dir / "mmlu/test").glob("*_test.csv")):
        with path.open(newline="") as handle:
            for q, a, b, c, d, answer in csv.reader(handle):
                records.append({"question": q, "subject": path.stem[: -len("_test")], "choices": [a, b, c, d],
                                "answer": "ABCD".index(answer)})
    tables[("cais/mmlu", "test")] = records
    assert load_split("mmlu", "test", None).equals(test_splits["mmlu"])


def test_hub_piqa_reads_the_parquet_branch(data_dir, test_splits, fake_hub):
    calls, tables = fake_hub
    goals = [json.loads(line) for line in (data_dir / "piqa/validation.jsonl").read_text().splitlines()]
    labels = (data_dir / "piqa/validation-labels.lst").read_text().split()
    tables[("ybisk/piqa", "validation")] = [{**g, "label": int(label)} for g, label in zip(goals, labels)]
    assert load_split("piqa", "test", None).equals(test_splits["piqa"])
    assert calls[0][3] == {"revision": "refs/convert/parquet",
                           "data_files": {"validation": "plain_text/validation/*.parquet"}}


def test_hub_coqa_first_turn_of_each_conversation(fake_hub):
    # No CoQA data exists locally; these records only follow the hub's documented shape.
    _, tables = fake_hub
    tables[("stanfordnlp/coqa", "validation")] = [
        {"source": "wikipedia", "story": f"Story {i}. Ann has {i} cats.",
         "questions": ["How many cats does Ann have?", "Why?"],
         "answers": {"input_text": [str(i), "unknown"], "answer_start": [0, -1], "answer_end": [5, -1]}}
        for i in range(500)
    ]
    df = load_split("coqa", "test", None)
    assert len(df) == 500 and tuple(df.columns) == ITEM_COLUMNS
    first = df.iloc[7]
    assert (first["id"], first["question"], first["answer"]) == ("coqa-validation-7", "How many cats does Ann have?", "7")
    assert first["context"] == "Story 7. Ann has 7 cats."
    assert (df["task_type"] == "ff_text").all()


@pytest.fixture
def small_hub(fake_hub, monkeypatch):
    """fake_hub for a few real rows: the registry's expected hub row count becomes the fake table's length."""
    calls, tables = fake_hub
    registry_info = uqroute_datasets.dataset_info

    def info_with_table_rows(name):
        info = registry_info(name)
        for spec in info["hub"].values():
            if (spec["path"], spec["split"]) in tables:
                spec["rows"] = len(tables[(spec["path"], spec["split"])])
        return info

    monkeypatch.setattr(uqroute_datasets.loader, "dataset_info", info_with_table_rows)
    return calls, tables


def _items(df):
    return df[["id", "question", "context", "choices", "answer"]].to_dict("records")


def test_hub_aqua_strips_option_letters(small_hub):
    calls, tables = small_hub
    tables[("deepmind/aqua_rat", "test")] = [
        {"question": "The original price of an item is discounted 22%. A customer buys the item at this discounted "
                     "price using a $20-off coupon. There is no tax on the item, and this was the only item the "
                     "customer bought. If the customer paid $1.90 more than half the original price of the item, "
                     "what was the original price of the item?",
         "options": ["A)$61", "B)$65", "C)$67.40", "D)$70", "E)$78.20"],
         "rationale": "Let x be the original price of the item\nDiscounted price = 0.78x\n...\nAnswer: E",
         "correct": "E"},
    ]
    (item,) = _items(load_split("aqua", "test", None))
    assert calls == [("deepmind/aqua_rat", "raw", "test", {})]
    assert item["id"] == "aqua-test-0" and item["question"].startswith("The original price of an item")
    assert item["choices"] == ["$61", "$65", "$67.40", "$70", "$78.20"]
    assert item["answer"] == "E"


def test_hub_multiarith_reads_question_and_string_answer(small_hub):
    calls, tables = small_hub
    # ChilleD/MultiArith: question, final_ans (a string since the dataset's "change dtype of final_ans to str").
    tables[("ChilleD/MultiArith", "test")] = [
        {"question": "The school cafeteria ordered 42 red apples and 7 green apples for students lunches. But, if "
                     "only 9 students wanted fruit, how many extra did the cafeteria end up with?",
         "final_ans": "40"},
        {"question": "Ned had to wash 9 short sleeve shirts and 21 long sleeve shirts before school. If he had only "
                     "washed 29 of them by the time school started, how many did he not wash?",
         "final_ans": "1"},
    ]
    df = load_split("multiarith", "test", None)
    assert calls == [("ChilleD/MultiArith", None, "test", {})]
    assert df["id"].tolist() == ["multiarith-test-0", "multiarith-test-1"]
    assert df["answer"].tolist() == ["40", "1"]
    assert df["question"].iloc[1].startswith("Ned had to wash 9 short sleeve shirts")
    assert df["choices"].isna().all() and df["context"].isna().all()


# ChilleD/SVAMP's dataset card does not state the type of Answer: copies of it have it as text, SVAMP.json as a float.
@pytest.mark.parametrize("answer", ["1.0", 1.0])
def test_hub_svamp_joins_body_and_question(small_hub, answer):
    calls, tables = small_hub
    body = ("Mary is baking a cake. The recipe calls for 6 cups of flour 8 cups of sugar and 7 cups of salt. "
            "She already put in 5 cups of flour.")
    question = "How many more cups of sugar than cups of salt does she need to add now?"
    tables[("ChilleD/SVAMP", "test")] = [
        {"ID": "chal-363", "Body": body, "Question": question, "Equation": "( 8.0 - 7.0 )", "Answer": answer,
         "Type": "Subtraction", "question_concat": f"{body} {question}"},
    ]
    (item,) = _items(load_split("svamp", "test", None))
    assert calls == [("ChilleD/SVAMP", None, "test", {})]
    assert item == {"id": "svamp-chal-363", "question": f"{body} {question}", "context": None, "choices": None,
                    "answer": "1"}


def test_hub_boolq_boolean_answers(data_dir, small_hub):
    calls, tables = small_hub
    # google/boolq rows: question, answer (bool), passage without the SuperGLUE copy's "<title> -- " prefix.
    records = [json.loads(line) for line in (data_dir / "boolq/validation.jsonl").read_text().splitlines()[:3]]
    tables[("google/boolq", "validation")] = [
        {"question": r["question"], "answer": r["label"] == "true", "passage": r["passage"].split(" -- ", 1)[1]}
        for r in records
    ]
    df = load_split("boolq", "test", None)
    assert calls == [("google/boolq", None, "validation", {})]
    assert df["answer"].tolist() == ["false", "true", "true"]
    assert df["id"].tolist() == ["boolq-validation-0", "boolq-validation-1", "boolq-validation-2"]
    assert df["question"].iloc[2] == "is pain experienced in a missing body part or paralyzed area"
    assert df["context"].iloc[2].startswith("Phantom pain sensations are described as perceptions")


def _hellaswag_hub_row(ind, activity_label, ctx_a, ctx_b, endings, source_id, split, label):
    """A Rowan/hellaswag row: ind int32, label a string (the loading script's str(label)), endings a list."""
    ctx = f"{ctx_a} {ctx_b}" if ctx_b else ctx_a
    return {"ind": ind, "activity_label": activity_label, "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": ctx,
            "endings": endings, "source_id": source_id, "split": split, "split_type": "indomain", "label": label}


def test_hub_hellaswag_validation_ids_match_the_local_test_split(test_splits, small_hub):
    calls, tables = small_hub
    tables[("Rowan/hellaswag", "validation")] = [
        _hellaswag_hub_row(24, "Roof shingle removal", "A man is sitting on a roof.", "he",
                           ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                            "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
                           "activitynet~v_-JhWjGDPHMY", "val", "3"),
    ]
    hub = load_split("hellaswag", "test", None)
    assert calls[0][:3] == ("Rowan/hellaswag", None, "validation")
    assert calls[0][3] == {"revision": "refs/convert/parquet",
                           "data_files": {"validation": "default/validation/*.parquet"}}
    # The hub's first validation row is the local file's first item: same id, question, context, choices, answer.
    assert _items(hub) == _items(test_splits["hellaswag"].head(1))


def test_hub_hellaswag_train_ids_are_unique_across_sources(small_hub):
    _, tables = small_hub
    # ind is counted per source: ActivityNet and WikiHow train rows both have ind 12 (real rows).
    tables[("Rowan/hellaswag", "train")] = [
        _hellaswag_hub_row(12, "Baking cookies",
                           "A female chef in white uniform shows a stack of baking pans in a large kitchen "
                           "presenting them. The pans are filled with pastries and loaded into the oven.", "a knife",
                           ["is seen moving on a board and cutting out its contents.",
                            "hits the peeled cheesecake, followed by sliced custard and still cooked ice cream.",
                            "etches a shape into the inside of the baked pans.",
                            "is used to cut cylinder shaped dough into rounds."],
                           "activitynet~v_-2dxp-mv2zo", "train", "3"),
        _hellaswag_hub_row(12, "Health",
                           "[header] How to cope with suicidal thoughts [title] Put off any plans. [step] Promise "
                           "yourself that you'll wait 48 hours before doing anything. Remember, thoughts don't have "
                           "the power to force you to act.", "",
                           ["Even when you do, there may be a small image of the future still lurking around your "
                            "brain. [substeps] For instance, don't tell yourself that you can't make it.",
                            "You're doing something, and no one can force you to act. It's completely natural to "
                            "feel negative thoughts before you act.",
                            "Do not panic if people talk to you (even if it's about quitting smoking). Have a plan "
                            "for how you're going to react to a group of people who bring on suicidal thoughts.",
                            "Sometimes extreme pain can distort our perception. Waiting before taking action will "
                            "give your mind time to clear."],
                           "wikihow~19", "train", "3"),
    ]
    df = load_split("hellaswag", "train", None)
    assert df["id"].tolist() == ["hellaswag-train-0", "hellaswag-train-1"]
    assert df["answer"].tolist() == ["D", "D"]
    wikihow = df.iloc[1]
    assert wikihow["question"] == "Health: which ending best completes the context?"
    # WikiHow tags are removed as in the local test file.
    assert wikihow["context"] == ("How to cope with suicidal thoughts Put off any plans. Promise yourself that "
                                  "you'll wait 48 hours before doing anything. Remember, thoughts don't have the "
                                  "power to force you to act.")
    assert wikihow["choices"][0] == ("Even when you do, there may be a small image of the future still lurking "
                                     "around your brain. For instance, don't tell yourself that you can't make it.")


def test_hub_openbookqa_layout(small_hub):
    calls, tables = small_hub
    tables[("allenai/openbookqa", "test")] = [
        {"id": "8-343",
         "question_stem": "A person wants to start saving money so that they can afford a nice vacation at the end "
                          "of the year. After looking over their budget and expenses, they decide the best way to "
                          "save money is to",
         "choices": {"text": ["make more phone calls", "quit eating lunch out", "buy less with monopoly money",
                              "have lunch with friends"],
                     "label": ["A", "B", "C", "D"]},
         "answerKey": "B"},
        {"id": "1129", "question_stem": "There is most likely going to be fog around:",
         "choices": {"text": ["a marsh", "a tundra", "the plains", "a desert"], "label": ["A", "B", "C", "D"]},
         "answerKey": "A"},
    ]
    items = _items(load_split("openbookqa", "test", None))
    assert calls == [("allenai/openbookqa", "main", "test", {})]
    assert items[1] == {"id": "openbookqa-1129", "question": "There is most likely going to be fog around:",
                        "context": None, "choices": ["a marsh", "a tundra", "the plains", "a desert"], "answer": "A"}
    assert (items[0]["id"], items[0]["answer"]) == ("openbookqa-8-343", "B")
    assert items[0]["choices"][1] == "quit eating lunch out"


def test_hub_social_iqa_one_based_labels(small_hub):
    calls, tables = small_hub
    # The loading script keeps each line of dev-labels.lst as it is, newline included.
    tables[("allenai/social_i_qa", "validation")] = [
        {"context": "Tracy didn't go home that evening and resisted Riley's attacks.",
         "question": "What does Tracy need to do before this?", "answerA": "make a new plan",
         "answerB": "Go home and see Riley", "answerC": "Find somewhere to go", "label": "3\n"},
        {"context": "Sydney walked past a homeless woman asking for change but did not have any money they could "
                    "give to her. Sydney felt bad afterwards.",
         "question": "How would you describe Sydney?", "answerA": "sympathetic",
         "answerB": "like a person who was unable to help", "answerC": "incredulous", "label": "1\n"},
    ]
    items = _items(load_split("social_iqa", "test", None))
    assert calls[0][3] == {"revision": "refs/convert/parquet",
                           "data_files": {"validation": "default/validation/*.parquet"}}
    assert [item["answer"] for item in items] == ["C", "A"]
    assert items[0] == {"id": "social_iqa-validation-0", "question": "What does Tracy need to do before this?",
                        "context": "Tracy didn't go home that evening and resisted Riley's attacks.",
                        "choices": ["make a new plan", "Go home and see Riley", "Find somewhere to go"],
                        "answer": "C"}


def test_hub_winogrande_reads_xl_validation_and_m_train(small_hub):
    calls, tables = small_hub
    tables[("allenai/winogrande", "validation")] = [
        {"sentence": "Sarah was a much better surgeon than Maria so _ always got the easier cases.",
         "option1": "Sarah", "option2": "Maria", "answer": "2"},
        {"sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.",
         "option1": "Sarah", "option2": "Maria", "answer": "1"},
    ]
    items = _items(load_split("winogrande", "test", None))
    assert calls[0][3] == {"revision": "refs/convert/parquet",
                           "data_files": {"validation": "winogrande_xl/validation/*.parquet"}}
    assert [item["answer"] for item in items] == ["B", "A"]
    assert items[0] == {"id": "winogrande-validation-0",
                        "question": "Which option correctly fills the blank (_)? Sarah was a much better surgeon "
                                    "than Maria so _ always got the easier cases.",
                        "context": None, "choices": ["Sarah", "Maria"], "answer": "B"}
    tables[("allenai/winogrande", "train")] = [
        {"sentence": "Ian volunteered to eat Dennis's menudo after already having a bowl because _ despised eating "
                     "intestine.", "option1": "Ian", "option2": "Dennis", "answer": "2"},
    ]
    load_split("winogrande", "train", None)
    assert calls[1][3]["data_files"] == {"train": "winogrande_m/train/*.parquet"}


def test_hub_failure_names_dataset_and_repository(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"boolq/train: could not load hub google/boolq split train: no network"):
        load_split("boolq", "train", None)



def test_a_hub_that_cannot_be_reached_names_both_ways_out(monkeypatch):
    """The hub loader faked to fail as an offline machine's does: the error names the dataset and says how to
    get the data either way (hub access, or the local folder)."""
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"gsm8k/test: could not load hub openai/gsm8k.*Couldn't reach.*give the "
                                           r"hub access.*data_dir names"):
        load_split("gsm8k", "test", None)

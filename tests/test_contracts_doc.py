"""docs/contracts.md against the code, without a run: it documents every Parquet path of uqroute.paths (each pass
by name), names every UQ method and task type, and lists the columns the code writes, in the code's order.
tests/test_workflow_e2e.py checks the tables of a finished run against the same page."""

from __future__ import annotations

import re

import pyarrow.parquet as pq

from uqroute import paths
from uqroute.analysis.alignment import ALIGNMENT_COLUMNS, COMPARISON_COLUMNS, RESAMPLE_COLUMNS
from uqroute.analysis.calibration import CALIBRATION_COLUMNS, GENERALIZATION_COLUMNS
from uqroute.analysis.controller import SHARE_CONTROL_COLUMNS
from uqroute.analysis.findings import FINDING_COLUMNS
from uqroute.analysis.grading import GRADING_COLUMNS
from uqroute.analysis.routing import relative_accuracy, routing_curve, routing_metrics_row
from uqroute.analysis.truncation import TRUNCATION_COLUMNS
from uqroute.datasets import ITEM_SCHEMA, TASK_TYPES
from uqroute.passes import GRADED_PASSES, PASS_COLUMNS, PASS_NAMES, REPLY_COLUMNS
from uqroute.uq.registry import METHOD_NAMES
from uqroute.uq.tables import OUTPUT_COLUMNS
from workflow_runs import CONTRACTS_DOC, documented_contracts


def documented_columns() -> dict[str, list[str]]:
    return {pattern: [name for name, _ in contract.columns] for pattern, contract in documented_contracts().items()}


def test_every_parquet_path_of_the_workflow_is_documented_and_nothing_else():
    """The templates of uqroute.paths, with each pass a table of its own (their columns differ)."""
    passes = {"gen": PASS_NAMES, "replies": GRADED_PASSES}
    expected = set()
    for kind, template in paths.TEMPLATES.items():
        if template.endswith(".parquet"):
            expected |= {template.replace("{pass_name}", name) for name in passes.get(kind, [""])}
    assert set(documented_contracts()) == expected


def test_the_page_names_every_method_and_task_type():
    text = CONTRACTS_DOC.read_text()
    named = set(re.findall(r"`(\w+)`", text))
    assert set(METHOD_NAMES) <= named and set(TASK_TYPES) <= named


def test_documented_columns_are_the_ones_the_code_writes_in_its_order():
    # Columns of the computed tables come from the functions that compute them, on four scored questions.
    confidence, slm_correct, llm_correct = [0.9, 0.2, 0.6, 0.4], [True, False, True, False], [True, True, False, True]
    curve = routing_curve(confidence, slm_correct, llm_correct)
    routing_metrics = list(routing_metrics_row(curve, slm="s", llm="l", dataset="d", method="m"))
    relative = list(relative_accuracy(confidence, slm_correct, llm_correct).columns)
    cell = ["slm", "llm", "dataset", "method"]
    code = {
        "data": ITEM_SCHEMA.names, "hidden": PASS_COLUMNS["hidden"], "hidden_question": PASS_COLUMNS["hidden_question"],
        "uq": OUTPUT_COLUMNS,
        "holdout_uq": [*OUTPUT_COLUMNS, "dataset"], "routing": list(curve.columns),
        "calibration": [*CALIBRATION_COLUMNS, "seed"], "release": [*CALIBRATION_COLUMNS, "seed"],
        "generalization": GENERALIZATION_COLUMNS, "share_control": SHARE_CONTROL_COLUMNS,
        "alignment": ALIGNMENT_COLUMNS, "routing_metrics": routing_metrics,
        "relative_accuracy": [*cell, *relative], "findings": FINDING_COLUMNS, "truncation": TRUNCATION_COLUMNS,
        "grading": GRADING_COLUMNS, "comparisons": COMPARISON_COLUMNS, "auroc_resamples": RESAMPLE_COLUMNS,
    }
    expected = {paths.template(kind): list(columns) for kind, columns in code.items()}
    for name in PASS_NAMES:
        expected[paths.template("gen").replace("{pass_name}", name)] = PASS_COLUMNS[name]
    for name in GRADED_PASSES:
        expected[paths.template("replies").replace("{pass_name}", name)] = REPLY_COLUMNS[name]
    assert documented_columns() == expected


def test_the_data_tables_types_are_the_schema_the_code_pins(tmp_path):
    # Through a file, as a reader sees them: Parquet names a list's items "element".
    pq.write_table(ITEM_SCHEMA.empty_table(), tmp_path / "data.parquet")
    stored = [(field.name, str(field.type)) for field in pq.read_schema(tmp_path / "data.parquet")]
    assert list(documented_contracts()[paths.template("data")].columns) == stored


def test_the_docs_send_no_reader_outside_the_repository():
    """The repository stands alone: no page points to files beside the clone (design notes, the paper's text, the
    data folder's own notes). A config may still name a data folder there; a page says what the folder holds."""
    from uqroute import REPO_ROOT

    pages = [REPO_ROOT / "README.md", *REPO_ROOT.glob("docs/*.md"), *REPO_ROOT.glob("config/*.md"),
             *REPO_ROOT.glob("bench/*.md"), *REPO_ROOT.glob("profiles/**/*.md")]
    outside = re.compile(r"(?<![./])\.\./\w|ARCHITECTURE\.md|STYLE\.md|SOURCES\.md|design notes")
    pointing = {str(page.relative_to(REPO_ROOT)): match.group(0)
                for page in pages for match in [outside.search(page.read_text())] if match}
    assert len(pages) > 4 and not pointing, pointing

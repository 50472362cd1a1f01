"""Every figure family renders to a non-empty PDF and PNG from small synthetic analysis tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from uqroute import figures
from uqroute.analysis import (
    alignment_metrics,
    build_calibration_set,
    generalization,
    pool_confidences,
    relative_accuracy,
    routing_curve,
)
from uqroute.figures.layout import method_color, method_order
from uqroute.uq.registry import METHOD_NAMES
from uqroute.uq.registry import METHODS as REGISTERED

SLMS = ("smollm2-135m", "tiny-slm-2")
LLMS = ("gemma3-270m",)
DATASETS = ("gsm8k", "piqa", "boolq")
METHODS = ("perplexity", "verbal_2s", "ood_probe")
# How well each method's confidence separates right from wrong answers (0 = not at all).
SEPARATION = {"perplexity": 1.5, "verbal_2s": 0.2, "ood_probe": 2.5}


def synthetic_uq(rng) -> dict:
    """(slm, dataset, method) -> uq table; one SLM correctness per (slm, dataset), shared by methods."""
    tables = {}
    for slm in SLMS:
        for dataset in DATASETS:
            n = 150
            correct = rng.random(n) < rng.uniform(0.3, 0.7)
            ids = [f"{dataset}-{i}" for i in range(n)]
            for method in METHODS:
                logit = SEPARATION[method] * (correct - 0.5) * 2 + rng.normal(0, 1, n)
                conf = 1 / (1 + np.exp(-logit))
                if method == "verbal_2s":  # verbalized confidences come in steps of 10 %
                    conf = np.round(conf * 10) / 10
                tables[slm, dataset, method] = pd.DataFrame({
                    "id": ids, "confidence": conf, "prediction": "A", "correct": correct, "valid": True,
                })
    return tables


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(11)
    uq = synthetic_uq(rng)
    llm_correct = {(llm, d): rng.random(150) < 0.8 for llm in LLMS for d in DATASETS}
    alignment, curves, rel, gen, pooled = [], [], [], [], []
    for (slm, dataset, method), table in uq.items():
        alignment.append({"slm": slm, "dataset": dataset, "method": method, **alignment_metrics(table)})
        pooled.append(table.assign(slm=slm, dataset=dataset, method=method))
        for llm in LLMS:
            keys = {"slm": slm, "llm": llm, "dataset": dataset, "method": method}
            llm_ok = llm_correct[llm, dataset]
            curves.append(routing_curve(table["confidence"], table["correct"], llm_ok).assign(**keys))
            rel.append(relative_accuracy(table["confidence"], table["correct"], llm_ok).assign(**keys))
            others = {d: uq[slm, d, method] for d in DATASETS}
            calibration = build_calibration_set(pool_confidences(others, exclude=[dataset]), n_bins=10, fraction=0.3)
            gen.append(generalization(calibration, table, llm_ok).assign(**keys))
    return {
        "alignment": pd.DataFrame(alignment), "curves": pd.concat(curves, ignore_index=True),
        "relative": pd.concat(rel, ignore_index=True), "generalization": pd.concat(gen, ignore_index=True),
        "pooled": pd.concat(pooled, ignore_index=True),
    }


def recorded_figures(monkeypatch, module) -> list:
    """The figures ``module`` draws from now on, kept to be looked at."""
    drawn = []

    class Recorded(module.Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            drawn.append(self)

    monkeypatch.setattr(module, "Figure", Recorded)
    return drawn


def assert_written(paths, tmp_path):
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    for path in paths:
        assert path.stat().st_size > 5000, path
    assert paths[0].read_bytes()[:5] == b"%PDF-"
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.rglob("*.tmp")), "a temp file was left behind"


def test_auroc_heatmaps(tables, tmp_path):
    assert_written(figures.plot_auroc_heatmaps(tables["alignment"], tmp_path / "fig" / "auroc"), tmp_path)


def test_auroc_heatmaps_have_the_papers_panels(tables, tmp_path, monkeypatch):
    """Paper Figs 1 and 6-9: one heatmap per dataset, SLMs as rows and UQ methods as columns."""
    from uqroute.datasets.registry import dataset_label
    from uqroute.figures import alignment
    from uqroute.uq.registry import method_label

    drawn = recorded_figures(monkeypatch, alignment)
    figures.plot_auroc_heatmaps(tables["alignment"], tmp_path / "auroc")
    panels = [ax for ax in drawn[0].axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == [dataset_label(d) for d in ("gsm8k", "boolq", "piqa")]
    for ax in panels:
        assert [t.get_text() for t in ax.get_yticklabels()] == list(SLMS) and ax.get_ylabel() == "SLM"
        assert [t.get_text() for t in ax.get_xticklabels()] == [method_label(m) for m in
                                                                 ("perplexity", "verbal_2s", "ood_probe")]


def test_routing_curves(tables, tmp_path):
    curves = tables["curves"][tables["curves"]["dataset"].isin(["gsm8k", "piqa"])]
    assert_written(figures.plot_routing_curves(curves, tmp_path / "routing"), tmp_path)


def test_relative_accuracy(tables, tmp_path):
    assert_written(figures.plot_relative_accuracy(tables["relative"], tmp_path / "relative"), tmp_path)


def test_confidence_distributions(tables, tmp_path):
    assert_written(figures.plot_confidence_distributions(tables["pooled"], tmp_path / "distributions"), tmp_path)


def test_confidence_distributions_of_a_paper_figure_have_its_panels_in_its_order(tables, tmp_path, monkeypatch):
    """Paper Fig. 4 has two panels, (a) then (b), each an (SLM, method): not the SLM x method product."""
    from uqroute.figures import layout
    from uqroute.jobs.figures import paper_figure
    from uqroute.paper_figures import PAPER_FIGURES, PaperFigure
    from uqroute.uq.registry import method_label

    drawn = []

    class Recorded(layout.Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            drawn.append(self)

    monkeypatch.setattr(layout, "Figure", Recorded)
    panels = (("tiny-slm-2", "ood_probe"), ("smollm2-135m", "perplexity"))  # the paper's shape on this grid
    monkeypatch.setitem(PAPER_FIGURES, 4, PaperFigure("confidence_distributions", "test", pairs=panels))
    # The job reads the figure's uq files into one table tagged by path; here the table is given.
    monkeypatch.setattr("uqroute.figure_families.read_tagged", lambda paths, kind: tables["pooled"])
    paper_figure(number=4, inputs={"uq": []}, png=str(tmp_path / "fig4.png"))
    shown = [ax for ax in drawn[0].axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in shown] == [f"{slm} · {method_label(method)}" for slm, method in panels]
    assert (tmp_path / "fig4.pdf").stat().st_size > 1000


def test_generalization(tables, tmp_path):
    gen = tables["generalization"]
    gen = gen[gen["method"].isin(["perplexity", "ood_probe"]) & gen["dataset"].isin(["gsm8k", "boolq"])]
    curves = tables["curves"]
    curves = curves[curves["method"].isin(["perplexity", "ood_probe"]) & curves["dataset"].isin(["gsm8k", "boolq"])]
    assert_written(figures.plot_generalization(gen, curves, tmp_path / "generalization"), tmp_path)
    # without routing curves the ground truth comes from the table's own column
    assert_written(figures.plot_generalization(gen, None, tmp_path / "generalization_own"), tmp_path)


def test_ratio_fidelity(tables, tmp_path):
    assert_written(figures.plot_ratio_fidelity(tables["generalization"], tmp_path / "fidelity"), tmp_path)


def share_control_tables(tables) -> pd.DataFrame:
    """Share-control tables of the synthetic cells of the first SLM (few streams: a drawing test)."""
    from uqroute.analysis.controller import ReplaySettings, replay_table

    pooled = tables["pooled"]
    rows = []
    for (slm, dataset, method), cell in pooled[pooled["slm"] == SLMS[0]].groupby(["slm", "dataset", "method"]):
        others = {d: rows_ for d, rows_ in pooled[(pooled["slm"] == slm) & (pooled["method"] == method)]
                  .groupby("dataset")}
        calibration = build_calibration_set(pool_confidences(others, exclude=[dataset]), n_bins=10, fraction=0.3)
        llm_ok = np.random.default_rng(len(rows)).random(len(cell)) < 0.8
        table = replay_table(calibration, cell.reset_index(drop=True), llm_ok, np.linspace(0, 1, 6),
                             cell=(slm, dataset), replay_settings=ReplaySettings(orders=4, checkpoints=(50, 100)))
        rows.append(table.assign(slm=slm, llm=LLMS[0], dataset=dataset, method=method))
    return pd.concat(rows, ignore_index=True)


def test_share_control(tables, tmp_path, drawn):
    table = share_control_tables(tables)
    assert_written(figures.plot_share_control(table, tmp_path / "share", methods=[*METHODS, "verbal_1s"]), tmp_path)
    texts = panel_texts(drawn[-1])
    assert "No calibration thresholds" in texts["Verbalization-1s: routed share off target"]
    error = next(ax for ax in drawn[-1].axes if ax.get_title() == "Perplexity: routed share off target")
    assert [t.get_text() for t in error.get_xticklabels()] == ["50", "100", "end"]


def test_empty_table_is_an_error_naming_the_figure(tmp_path):
    with pytest.raises(ValueError, match="AUROC heatmaps"):
        figures.plot_auroc_heatmaps(pd.DataFrame(columns=["slm", "dataset", "method", "auroc"]), tmp_path / "x")
    assert not list(tmp_path.iterdir())


@pytest.fixture
def drawn(monkeypatch):
    """Keeps every figure passed to ``save_figure``, to inspect what the panels say."""
    kept = []
    save = figures.save_figure

    def keep(fig, out_stem):
        kept.append(fig)
        return save(fig, out_stem)

    # Each family module calls save_figure under its own name.
    for family in (figures.alignment, figures.routing, figures.distributions, figures.generalization):
        monkeypatch.setattr(family, "save_figure", keep)
    return kept


def panel_texts(fig) -> dict[str, str]:
    """Visible panel title -> all free text drawn in that panel."""
    return {ax.get_title(): " ".join(t.get_text() for t in ax.texts) for ax in fig.axes if ax.get_visible()}


def test_single_panel_figure_is_readable(tables, tmp_path, drawn):
    # one SLM, one (LLM, dataset): the panel must keep its size beside the legend and the title fit
    curves = tables["curves"]
    one = curves[(curves["slm"] == SLMS[0]) & (curves["dataset"] == "boolq")]
    figures.plot_routing_curves(one, tmp_path / "one")
    fig = drawn[-1]
    [ax] = [a for a in fig.axes if a.get_visible()]
    renderer = FigureCanvasAgg(fig).get_renderer()
    box = ax.get_window_extent(renderer)
    assert box.width / fig.dpi >= 2.4 and box.height / fig.dpi >= 1.8, (box.width / fig.dpi, box.height / fig.dpi)
    title = fig.get_suptitle()
    assert fig._suptitle.get_window_extent(renderer).width <= fig.bbox.width
    assert "BoolQ" in title and "gemma3-270m" in title
    # random routing drawn above every method line
    random = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(random) == 1
    assert random[0].get_zorder() > max(l.get_zorder() for l in ax.get_lines() if l.get_linestyle() == "-")


def test_each_registered_method_has_its_own_declared_colour_and_place():
    colours = [method_color(name, i) for i, name in enumerate(REGISTERED)]
    assert all(spec.color for spec in REGISTERED.values())
    assert len(set(map(str, colours))) == len(colours)
    # the paper's eight in its order, then the project's (P(IK)), then names the registry does not know
    expected = [*METHOD_NAMES, "ood_p_ik", "zz_unknown"]
    assert method_order(["zz_unknown", "ood_p_ik", *reversed(METHOD_NAMES)]) == expected
    assert method_color("zz_unknown", 0) != method_color("zz_unknown", 1)


def test_many_panels_wrap_into_rows(tables, tmp_path, drawn):
    # a single row of eight method panels wraps into two rows of four
    pooled = tables["pooled"]
    one = pooled[pooled["slm"] == SLMS[0]]
    many = pd.concat([one.assign(method=m) for m in METHOD_NAMES], ignore_index=True)
    figures.plot_confidence_distributions(many, tmp_path / "wrapped")
    visible = [a for a in drawn[-1].axes if a.get_visible()]
    assert len(visible) == 8
    assert len({round(a.get_position().y0, 3) for a in visible}) == 2


def test_method_without_valid_confidence_gets_a_note(tables, tmp_path, drawn):
    # verbal_1s with no valid confidence at all: an empty calibration set, so no generalization
    # rows, but its routing curve and its uq rows exist (as in a real run of the tiny models)
    pooled = tables["pooled"]
    slm = pooled[pooled["slm"] == SLMS[0]]
    dead = slm[slm["method"] == "perplexity"].assign(method="verbal_1s", confidence=np.nan, valid=False)
    assert_written(figures.plot_confidence_distributions(pd.concat([slm, dead]), tmp_path / "dist"), tmp_path)
    texts = panel_texts(drawn[-1])
    assert "No valid confidence" in texts["Verbalization-1s"] and "0 of 450" in texts["Verbalization-1s"]
    assert "No valid confidence" not in texts["Perplexity"]

    gen, curves = tables["generalization"], tables["curves"]
    cell = (gen["slm"] == SLMS[0]) & (gen["dataset"] == "boolq") & (gen["method"] == "perplexity")
    gen = gen[cell]
    curves = curves[(curves["slm"] == SLMS[0]) & (curves["dataset"] == "boolq") & (curves["method"] == "perplexity")]
    curves = pd.concat([curves, curves.assign(method="verbal_1s")], ignore_index=True)
    assert_written(figures.plot_generalization(gen, curves, tmp_path / "gen"), tmp_path)
    texts = panel_texts(drawn[-1])
    assert "No calibration thresholds" in texts[f"{SLMS[0]} · Verbalization-1s"]
    assert "No calibration thresholds" not in texts[f"{SLMS[0]} · Perplexity"]
    # every method empty: still a figure, from the routing curves alone
    assert_written(figures.plot_generalization(gen.iloc[:0], curves, tmp_path / "gen_empty"), tmp_path)
    assert all("No calibration thresholds" in t for t in panel_texts(drawn[-1]).values())

    assert_written(figures.plot_ratio_fidelity(gen, tmp_path / "fidelity", methods=["perplexity", "verbal_1s"]),
                   tmp_path)
    assert "No calibration thresholds" in panel_texts(drawn[-1])["Verbalization-1s"]

    alignment = tables["alignment"]
    alignment = pd.concat([alignment.assign(n_valid=150), alignment.iloc[:1].assign(
        method="verbal_1s", auroc=np.nan, n_valid=0)], ignore_index=True)
    assert_written(figures.plot_auroc_heatmaps(alignment, tmp_path / "auroc"), tmp_path)
    assert any("no valid" in t.get_text() for ax in drawn[-1].axes for t in ax.texts)


def test_methods_without_any_valid_confidence_are_named_not_drawn(tables, tmp_path, drawn):
    curves = tables["curves"]
    one = curves[(curves["slm"] == SLMS[0]) & (curves["dataset"] == "boolq")]
    lines_of = {}
    for name, plot, table in (("routing", figures.plot_routing_curves, one),
                              ("relative", figures.plot_relative_accuracy,
                               tables["relative"][(tables["relative"]["slm"] == SLMS[0])
                                                  & (tables["relative"]["dataset"] == "boolq")])):
        for skipped in (frozenset(), {(SLMS[0], "boolq", "verbal_2s")}):
            plot(table, tmp_path / f"{name}-{len(skipped)}", no_confidence=skipped)
            [ax] = [a for a in drawn[-1].axes if a.get_visible()]
            lines_of[name, len(skipped)] = len(ax.get_lines())
            texts = " ".join(t.get_text() for t in ax.texts)
            assert ("no valid confidence: Verbalization-2s" in texts) == bool(skipped)
        assert lines_of[name, 1] == lines_of[name, 0] - 1


def test_auroc_heatmap_cells_carry_their_interval_counts_and_marks(tmp_path, monkeypatch):
    """Each cell says its AUROC, interval and right/scored answers; a cell whose interval covers 0.5 has a dashed
    frame, an underpowered one italic text: checked cell by cell against the alignment table behind them."""
    from matplotlib.patches import Rectangle

    from uqroute.analysis.alignment import alignment_tables
    from uqroute.analysis.bootstrap import BootstrapSettings
    from uqroute.datasets.registry import dataset_label
    from uqroute.figures import alignment
    from uqroute.uq.registry import method_label

    rng = np.random.default_rng(3)
    cells = []
    for dataset, n in (("piqa", 400), ("boolq", 16)):  # a large cell and one too small to say much
        correct = rng.random(n) < 0.5
        for method, separation in (("perplexity", 1.5), ("verbal_2s", 0.0)):  # informative and not at all
            confidence = 1 / (1 + np.exp(-(separation * (2 * correct - 1) + rng.normal(0, 1, n))))
            cells.append(("smollm2-135m", dataset, method, pd.DataFrame({
                "id": [f"{dataset}-{i}" for i in range(n)], "confidence": confidence, "prediction": "A",
                "correct": correct, "valid": True})))
    table = alignment_tables(cells, bootstrap=BootstrapSettings(resamples=300))[0]
    drawn = recorded_figures(monkeypatch, alignment)
    figures.plot_auroc_heatmaps(table, tmp_path / "auroc")
    ax = next(ax for ax in drawn[0].axes if ax.get_visible() and ax.get_title())
    rows = [t.get_text() for t in ax.get_yticklabels()]
    columns = [t.get_text() for t in ax.get_xticklabels()]
    framed = {(int(p.get_x()), int(p.get_y())) for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()}
    texts = {(int(t.get_position()[0]), int(t.get_position()[1])): t for t in ax.texts}
    assert table["underpowered"].any() and not table["underpowered"].all()
    covering = 0
    for cell in table.itertuples():
        j, i = columns.index(method_label(cell.method)), rows.index(dataset_label(cell.dataset))
        text = texts[j, i]
        assert text.get_text().split("\n") == [f"{cell.auroc:.2f}", f"[{cell.auroc_low:.2f}, {cell.auroc_high:.2f}]",
                                               f"{cell.n_valid_correct}/{cell.n_valid}"]
        assert (text.get_fontstyle() == "italic") == cell.underpowered
        covers = cell.auroc_low <= 0.5 <= cell.auroc_high
        assert ((j, i) in framed) == covers
        covering += covers
    assert 0 < covering < len(table)  # both kinds of cell are drawn

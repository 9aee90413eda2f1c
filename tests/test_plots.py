"""plots: every figure from hand-made frames; values drawn checked against direct computations."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from paperlib import figstyle, plots  # noqa: E402
from paperlib.errors import PaperlibError  # noqa: E402
from paperlib.strategies import SIGNALS  # noqa: E402

L = 5  # layers of the hand-made model: steps 1..4


def make_curves(dataset: str | None = None) -> pd.DataFrame:
    rows = []
    orders = {"Weight-Entropy": [0, 1, 2, 3], "Random-Forest": [4, 3, 2, 1], "Oracle": [2, 1, 0, 4]}
    for name, order in orders.items():
        kept = list(range(L))
        for step, layer in enumerate(order, 1):
            kept.remove(layer)
            rows.append(
                (
                    name,
                    0,
                    step,
                    layer,
                    ",".join(map(str, kept)),
                    0.9 - 0.1 * step,
                    0.8 - 0.1 * step,
                    100 - step,
                    400 - 4 * step,
                )
            )
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(L)[: L - 1]
        kept = list(range(L))
        for step, layer in enumerate(order, 1):
            kept.remove(int(layer))
            rows.append(
                (
                    "Random",
                    seed,
                    step,
                    int(layer),
                    ",".join(map(str, kept)),
                    0.5 + 0.01 * seed,
                    0.4 + 0.02 * seed * step,
                    100 - step,
                    400 - 4 * step,
                )
            )
    df = pd.DataFrame(
        rows, columns=["strategy", "seed", "step", "removed", "kept", "val_acc", "test_acc", "n_params", "bytes"]
    )
    if dataset is not None:
        df.insert(0, "dataset", dataset)
    return df


def make_signals() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for strategy in ("Weight-Entropy", "Activation-Mean"):
        for step in (1, 2):
            for layer in range(L - step + 1):
                values = rng.normal(size=len(SIGNALS))
                if step == 1:  # M_0's signals: identical for every strategy, known values
                    values = np.arange(len(SIGNALS), dtype=float) * (layer + 1) ** 2
                rows.append(
                    {"strategy": strategy, "seed": 0, "step": step, "layer": layer, **dict(zip(SIGNALS, values))}
                )
    return pd.DataFrame(rows)


def labelled_lines(ax):
    return [
        line
        for line in ax.get_lines()
        if not line.get_label().startswith("_") and not line.get_label().startswith("original")
    ]


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = plots.save_figure(fig, tmp_path / "figures", "demo")
    assert [p.name for p in paths] == ["demo.png", "demo.pdf"]
    image = mpimg.imread(paths[0])
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert paths[1].read_bytes()[:4] == b"%PDF"
    assert not [p for p in (tmp_path / "figures").iterdir() if p.name.startswith(".")]  # no temporary left
    plt.close(fig)


def test_pruning_curves_one_line_per_strategy_and_random_band():
    curves = make_curves()
    fig = plots.pruning_curves(curves, original_acc=0.85)
    ax = fig.axes[0]
    lines = labelled_lines(ax)
    assert len(lines) == curves["strategy"].nunique() == 4
    # Weight-Entropy, Random-Forest and Oracle coincide: the first in display order keeps its name, the others
    # are labelled "(= Weight-Entropy)"
    first = next(l for l in lines if l.get_label() == "Weight-Entropy")
    assert sum("(= Weight-Entropy)" in l.get_label() for l in lines) == 2
    np.testing.assert_allclose(first.get_ydata(), [0.7, 0.6, 0.5, 0.4])
    # Random: mean over the 3 seeds per step, computed by hand
    rnd = next(l for l in lines if l.get_label().startswith("Random ("))
    expected = [np.mean([0.4 + 0.02 * seed * step for seed in range(3)]) for step in range(1, L)]
    np.testing.assert_allclose(rnd.get_ydata(), expected)
    band = plots.random_band(curves)
    sd = [np.std([0.4 + 0.02 * seed * step for seed in range(3)], ddof=1) for step in range(1, L)]
    np.testing.assert_allclose(band["std"], sd)
    assert len(ax.collections) == 1  # the fill_between band
    dashed = [l for l in ax.get_lines() if l.get_label().startswith("original")]
    assert len(dashed) == 1 and dashed[0].get_linestyle() == "--" and dashed[0].get_ydata()[0] == 0.85
    plt.close(fig)


def test_pruning_order_table_and_grid():
    curves = make_curves()
    table = plots.pruning_order(curves)
    assert table.loc["Weight-Entropy"].tolist() == [0, 1, 2, 3]
    assert table.loc["Random-Forest"].tolist() == [4, 3, 2, 1]
    random0 = np.random.default_rng(0).permutation(L)[: L - 1]
    assert table.loc["Random"].tolist() == random0.tolist()  # first seed
    assert table.index[0] == "Weight-Entropy"  # strategies.display_order: the signals first, then fusion
    fig = plots.pruning_order_grid(curves)
    assert len(fig.axes[0].texts) == table.size
    plt.close(fig)


def test_signal_heatmap_is_z_scored_first_step():
    signals = make_signals()
    fig = plots.signal_heatmap(signals)
    drawn = np.asarray(fig.axes[0].collections[0].get_array()).reshape(L, len(SIGNALS))
    raw = np.array([[j * (layer + 1) ** 2 for j in range(len(SIGNALS))] for layer in range(L)], dtype=float)
    sd = raw.std(0)
    expected = np.where(sd > 0, (raw - raw.mean(0)) / np.where(sd > 0, sd, 1), 0.0)  # column 0 constant -> 0
    np.testing.assert_allclose(drawn, expected)
    plt.close(fig)


def test_signal_correlation_sees_monotone_and_reversed_signals():
    rng = np.random.default_rng(1)
    rows = []
    for step in (1, 2, 3):
        for layer in range(6):
            base = rng.normal()
            values = {s: rng.normal() for s in SIGNALS}
            values[SIGNALS[0]] = base
            values[SIGNALS[1]] = np.exp(base)  # same ranking
            values[SIGNALS[2]] = -3 * base + 10  # reversed ranking
            rows.append({"strategy": "Weight-Entropy", "seed": 0, "step": step, "layer": layer, **values})
    fig = plots.signal_correlation(pd.DataFrame(rows))
    corr = np.asarray(fig.axes[0].collections[0].get_array()).reshape(len(SIGNALS), len(SIGNALS))
    assert corr[0, 1] == pytest.approx(1.0)
    assert corr[0, 2] == pytest.approx(-1.0)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    plt.close(fig)


def test_figure1_grid_one_panel_per_dataset(tmp_path):
    curves = pd.concat([make_curves("alpha"), make_curves("beta"), make_curves("gamma"), make_curves("delta")])
    fig = plots.figure1_grid(curves, {"alpha": 0.9, "beta": 0.8}, ncols=3)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["alpha", "beta", "gamma", "delta"]
    assert all(len(labelled_lines(ax)) == 4 for ax in visible)
    assert len(fig.legends) == 1
    paths = plots.save_figure(fig, tmp_path, "figure1")
    assert all(p.stat().st_size > 1000 for p in paths)
    plt.close(fig)


def test_fusion_weights_bars_match_the_frame():
    weights = pd.DataFrame(
        {
            "signal": list(SIGNALS),
            "lr_coefficient": np.linspace(-1, 1, len(SIGNALS)),
            "rf_importance": np.full(len(SIGNALS), 1 / len(SIGNALS)),
        }
    )
    fig = plots.fusion_weights_plot(weights)
    lr_ax, rf_ax = fig.axes[:2]
    lr = {t.get_text(): p.get_width() for t, p in zip(lr_ax.get_yticklabels(), lr_ax.patches)}
    assert lr[SIGNALS[0]] == pytest.approx(-1) and lr[SIGNALS[-1]] == pytest.approx(1)
    assert sum(p.get_width() for p in rf_ax.patches) == pytest.approx(1.0)
    plt.close(fig)


def test_distillation_plot_one_line_per_mode_side_by_side_and_identical_modes_named():
    rows = [
        {
            "dataset": "d",
            "strategy": "Random-Forest",
            "depth": k,
            "mode": mode,
            "test_acc": acc + 0.01 * k,
            "best_depth": k == 2,
        }
        for k in (1, 2, 3)
        for mode, acc in (("kd", 0.8), ("ce", 0.8), ("none", 0.5))
    ]
    fig = plots.distillation_plot(pd.DataFrame(rows), original_acc=0.82)
    ax = fig.axes[0]
    lines = {l.get_label(): l for l in ax.get_lines() if l.get_marker() not in ("None", "", None)}
    assert len(lines) == 3
    kd = next(l for name, l in lines.items() if name.startswith("KD"))
    ce = next(l for name, l in lines.items() if name.startswith("\u03b1 = 0"))
    np.testing.assert_allclose(kd.get_ydata(), [0.81, 0.82, 0.83])
    np.testing.assert_allclose(ce.get_ydata(), kd.get_ydata())  # same accuracy ...
    assert np.all(ce.get_xdata() > kd.get_xdata())  # ... drawn beside it, not under it
    assert "identical to KD" in ce.get_label() and "identical" not in kd.get_label()
    assert ce.get_markerfacecolor() == "none"  # hollow control markers around filled KD
    k_star = [l for l in ax.get_lines() if l.get_label().startswith("k*")]
    assert k_star[0].get_xdata()[0] == 2
    plt.close(fig)


def test_distillation_plot_marks_k_star_from_the_parquet_flags():
    # distill.parquet flags k* with a bool per row; here k* = 3 of the distilled depths 2, 3, 5
    rows = [
        {"depth": k, "mode": mode, "test_acc": 0.5, "best_depth": k == 3} for k in (2, 3, 5) for mode in ("kd", "ce")
    ]
    fig = plots.distillation_plot(pd.DataFrame(rows))
    marks = [l for l in fig.axes[0].get_lines() if l.get_label().startswith("k*")]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [3, 3]
    plt.close(fig)


def test_distillation_plot_draws_the_classical_reference_floor():
    rows = [{"depth": k, "mode": mode, "test_acc": 0.5} for k in (1, 2) for mode in ("kd", "ce")]
    fig = plots.distillation_plot(pd.DataFrame(rows), original_acc=0.9, floor_acc=0.7)
    floor = [l for l in fig.axes[0].get_lines() if l.get_label().startswith("TF-IDF")]
    assert len(floor) == 1 and list(floor[0].get_ydata()) == [0.7, 0.7]
    plt.close(fig)
    fig = plots.distillation_plot(pd.DataFrame(rows))
    assert not [l for l in fig.axes[0].get_lines() if l.get_label().startswith("TF-IDF")]
    plt.close(fig)


def test_coinciding_curves_are_offset_and_named_in_the_legend():
    curves = make_curves()  # Weight-Entropy, Random-Forest and Oracle share test accuracy 0.8 - 0.1 k
    fig = plots.pruning_curves(curves, original_acc=0.85)
    lines = {l.get_label(): l for l in labelled_lines(fig.axes[0])}
    we, rf, oracle = (  # in strategies.display_order: signal, fusion, baseline
        lines["Weight-Entropy"],
        lines["Random-Forest (= Weight-Entropy)"],
        lines["Oracle (= Weight-Entropy)"],
    )
    steps = np.arange(1, L)
    np.testing.assert_allclose(we.get_xdata(), steps)
    np.testing.assert_allclose(rf.get_xdata(), steps + figstyle.DODGE)  # each twin one offset further
    np.testing.assert_allclose(oracle.get_xdata(), steps + 2 * figstyle.DODGE)
    np.testing.assert_allclose(rf.get_ydata(), we.get_ydata())
    assert not any("(=" in name for name in lines if name.startswith("Random ("))  # Random differs: no note
    plt.close(fig)
    # many coinciding curves stay within MAX_DODGE of the first: no curve drifts towards the next step
    many = pd.concat(
        [curves] + [curves[curves["strategy"] == "Weight-Entropy"].assign(strategy=s) for s in SIGNALS[:9]]
    )
    fig = plots.pruning_curves(many)
    spread = max(l.get_xdata()[0] for l in labelled_lines(fig.axes[0])) - 1
    assert 0 < spread <= figstyle.MAX_DODGE + 1e-9
    plt.close(fig)


def test_legend_labels_use_plus_minus_and_minus_signs():
    fig = plots.pruning_curves(make_curves())
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("mean \u00b1 sd" in t for t in labels) and not any("+-" in t for t in labels)
    plt.close(fig)
    fig = plots.signal_heatmap(make_signals())
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("\u2212") for t in texts) and not any(t.startswith("-") for t in texts)
    plt.close(fig)


def test_show_figure_saves_and_stays_silent_outside_a_notebook(tmp_path, capsys):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    paths = plots.show_figure(fig, tmp_path, "shown")
    assert [p.name for p in paths] == ["shown.png", "shown.pdf"] and all(p.stat().st_size > 0 for p in paths)
    assert not plt.fignum_exists(fig.number)  # closed: the inline backend cannot show it twice
    assert capsys.readouterr().out == ""


def test_show_figure_without_a_folder_saves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert plots.show_figure(fig, None, "x") == []
    assert list(tmp_path.iterdir()) == []  # nothing written, not even beside the working directory
    assert not plt.fignum_exists(fig.number) and capsys.readouterr().out == ""


def _counts() -> pd.DataFrame:
    return pd.DataFrame(
        {"train": [310, 95, 402], "val": [41, 12, 50], "test": [77, 23, 99]}, index=["business", "sport", "tech"]
    )


def test_finetune_plot_bars_are_the_counts_and_the_curve_is_the_validation_accuracy():
    counts, val_acc = _counts(), [0.61, 0.74, 0.72]
    fig = plots.finetune_plot(counts, val_acc, best_epoch=2, reference_val=0.66)
    left, right = fig.axes[:2]
    # one bar per (class, split): its class from the tick under it, its split from its container's label
    ticks = dict(zip(np.round(left.get_xticks()).astype(int), [t.get_text() for t in left.get_xticklabels()]))
    drawn = {}
    for container in left.containers:
        for bar in container.patches:
            drawn[(ticks[int(round(bar.get_x() + bar.get_width() / 2))], container.get_label())] = bar.get_height()
    assert len(left.patches) == counts.size == 9
    assert drawn == {
        ("business", "train"): 310,
        ("sport", "train"): 95,
        ("tech", "train"): 402,
        ("business", "val"): 41,
        ("sport", "val"): 12,
        ("tech", "val"): 50,
        ("business", "test"): 77,
        ("sport", "test"): 23,
        ("tech", "test"): 99,
    }
    curve = [l for l in right.get_lines() if l.get_marker() == "o"]
    assert len(curve) == 1
    np.testing.assert_allclose(curve[0].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(curve[0].get_ydata(), [0.61, 0.74, 0.72])
    star = [l for l in right.get_lines() if l.get_marker() == "*"]
    assert len(star) == 1 and list(star[0].get_xdata()) == [2] and list(star[0].get_ydata()) == [0.74]
    flat = [l for l in right.get_lines() if list(l.get_ydata()) == [0.66, 0.66]]
    assert len(flat) == 1 and list(flat[0].get_xdata()) == [0, 1]  # axhline: across the whole axes
    plt.close(fig)
    fig = plots.finetune_plot(counts, val_acc)  # no kept epoch, no reference: the curve alone
    assert [l.get_marker() for l in fig.axes[1].get_lines()] == ["o"]
    plt.close(fig)


def test_finetune_plot_needs_counts_and_epochs():
    with pytest.raises(PaperlibError, match="class counts"):
        plots.finetune_plot(pd.DataFrame(), [0.5])
    with pytest.raises(PaperlibError, match="epoch"):
        plots.finetune_plot(_counts(), [])
    with pytest.raises(PaperlibError, match="best_epoch 4"):
        plots.finetune_plot(_counts(), [0.5, 0.6, 0.7], best_epoch=4)


def test_finetune_plot_accepts_a_split_named_like_a_column_label():
    counts = pd.DataFrame({"class": [3, 4], "test": [1, 2]}, index=["a", "b"])
    fig = plots.finetune_plot(counts, [0.5])
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [1, 2, 3, 4]
    plt.close(fig)


def test_pipeline_diagram_one_box_and_name_per_stage():
    from matplotlib.patches import FancyBboxPatch

    for stages in (plots.PIPELINE, (("01", "alpha", "first"), ("02", "beta", "second"), ("03", "gamma", "third"))):
        fig = plots.pipeline_diagram(stages)
        ax = fig.axes[0]
        assert len(ax.patches) == len(stages) and all(isinstance(p, FancyBboxPatch) for p in ax.patches)
        texts = [t.get_text() for t in ax.texts]
        for number, stage, what in stages:
            assert any(stage in t and number in t for t in texts), stage
            assert what in texts
        plt.close(fig)


def test_ats_bars_heights():
    ats = pd.DataFrame({"model": ["original", "RF k*", "KD k*"], "ats": [1.0, 2.5, 3.0]})
    fig = plots.ats_bars(ats)
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [1.0, 2.5, 3.0]
    plt.close(fig)


def test_missing_columns_and_empty_frames_raise():
    with pytest.raises(PaperlibError, match="lacks column"):
        plots.pruning_curves(pd.DataFrame({"strategy": ["a"]}))
    with pytest.raises(PaperlibError, match="empty"):
        plots.signal_heatmap(make_signals().iloc[:0])


def test_direction_check_plot_bars_are_differences_in_points():
    check = pd.DataFrame(
        {
            "rule mean": [0.8, 0.3, 0.5],
            "flipped mean": [0.4, 0.6, 0.5],
            "lo": [0.3, -0.4, -0.1],
            "hi": [0.5, -0.2, 0.1],
        },
        index=["Activation-Mean", "Redundancy-MI", "Weight-Entropy"],
    )
    fig = plots.direction_check_plot(check, low="lo", high="hi")
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches]
    np.testing.assert_allclose(widths, [40.0, -30.0, 0.0])  # 100 * (rule - flipped), top to bottom
    assert [t.get_text() for t in ax.get_yticklabels()] == list(check.index)
    assert ax.patches[0].get_facecolor() != ax.patches[1].get_facecolor()  # SPEC wins / flip wins differ
    assert len(ax.collections) == 1  # the interval error bars
    plt.close(fig)

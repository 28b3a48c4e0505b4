"""Report sections of the issue-13 measures, rendered from the compare tables and the OIP metrics.

Every table here is read from ``compare/tables/*.csv`` (or ``metrics/oip``): the report shows what
the stages wrote. The claims table joins the compare stage's claims (a, a′, b, e) with the ones
that need the OIP stage (c, d), each with its seed-level verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from cnnscope.io import read_table
from cnnscope.report.findings import ClaimInputs, claims_frame
from cnnscope.report.patterns import pattern_section


class _Report(Protocol):
    folder: Path

    def add(self, *lines: str) -> None: ...

    def table(self, frame: pd.DataFrame) -> None: ...

    def figure(self, source: Path, name: str, caption: str) -> None: ...


def _read(tables: Path, name: str) -> pd.DataFrame | None:
    """A compare table, or None (missing, or no columns: e.g. no probe class with two images for FCPs)."""
    return read_table(tables / f"{name}.csv")


def _section(report: _Report, tables: Path, name: str, heading: str, text: str) -> pd.DataFrame | None:
    """Table ``name`` with its heading and text added to ``report``; None (and nothing added)
    when the compare stage wrote no rows for it."""
    table = _read(tables, name)
    if table is None or table.empty:
        return None
    report.add(heading, text)
    return table


def _pm(values: pd.Series) -> str:
    mean = values.mean()
    if pd.isna(mean):
        return "—"
    return f"{mean:.3f}" + (f" ± {values.std(ddof=1):.3f}" if values.count() > 1 else "")


def layer_by_variant(table: pd.DataFrame, value: str, variants: Sequence[str], cell: Any = _pm) -> pd.DataFrame:
    """Rows: layer (in table order); columns: variants; cells from ``cell`` over the seeds."""
    layers = list(dict.fromkeys(table["layer"]))
    pivot = table.groupby(["layer", "variant"], sort=False)[value].agg(cell).unstack("variant").reindex(layers)
    return pivot[[v for v in variants if v in pivot]].reset_index()


def _probe_cell(rows: pd.DataFrame) -> str:
    acc, se = rows["accuracy"].mean(), rows["std_error"].mean()
    spread = f", sd over seeds {rows['accuracy'].std(ddof=1):.3f}" if len(rows) > 1 else ""
    return f"{acc:.3f} (se {se:.3f}{spread})"


def measures_sections(
    report: _Report,
    compare_dir: Path,
    variants: Sequence[str],
    seeds: Sequence[int],
    claims: ClaimInputs,
) -> None:
    """The scale-free statistics, divergences and information gain, CKA, map matching, spatial
    probes, class patterns, pattern classification and the claims table (from ``claims``)."""
    tables = compare_dir / "tables"
    sf = _section(
        report,
        tables,
        "scale_free",
        "### Scale-free layer statistics",
        "Entropy after dividing each (network, layer) by its own robust scale (99th percentile of the non-zero "
        "|x|), on bins shared over the *normalised* values; Hoyer sparsity and kurtosis per image, averaged. "
        "Multiplying a layer by a constant leaves all three unchanged (the raw shared-bin entropy above does "
        "not). Mean ± std over seeds; `softmax` has no rows (it is a distribution: see predictive entropy).",
    )
    if sf is not None:
        for value, label in (("entropy_norm_bits", "Normalised entropy (bits)"), ("hoyer", "Hoyer sparsity")):
            report.add(f"**{label}**:")
            report.table(layer_by_variant(sf, value, variants))
    _divergences(report, tables, variants, claims.contrasts)
    _cka(report, compare_dir, tables)
    _matching(report, tables)
    probe = _read(tables, "spatial_probe")
    if probe is not None and len(probe):
        chance = probe["chance"].iloc[0]
        report.add(
            "### Spatial linear probes",
            f"Logistic regression on each map average-pooled to a {int(probe['grid'].max())}×"
            f"{int(probe['grid'].max())} grid (layout kept), trained on {int(probe['train_images'].iloc[0])} and "
            f"scored on {int(probe['test_images'].iloc[0])} evaluation images; chance level (majority class) "
            f"{chance:.3f}. Cells: accuracy (binomial standard error, sd over seeds); the null model's column is the "
            "untrained baseline a trained layer must beat.",
        )
        cells = probe.groupby(["layer", "variant"], sort=False)[["accuracy", "std_error"]].apply(_probe_cell)
        layers = list(dict.fromkeys(probe["layer"]))
        table = cells.unstack("variant").reindex(layers)
        report.table(table[[v for v in variants if v in table]].reset_index())
    _class_patterns(report, tables, variants)
    _claims(report, tables, claims)
    _activation_scale(report, tables, variants)


def _divergences(report: _Report, tables: Path, variants: Sequence[str], contrasts: Sequence[Sequence[str]]) -> None:
    stats = _read(tables, "layer_stats")
    if stats is not None and len(stats):
        ev = stats[(stats["group"] == "eval") & (stats["layer"] != "softmax")]
        report.add(
            "### Information gain and divergence from the input",
            "`H(input) − H(layer)` (bits) and `JS(layer, input)` on each one's own shared bins, evaluation sample, "
            "mean ± std over seeds. Both depend on the binning (raw scale), unlike the scale-free rows above.",
        )
        report.add("**Information gain (bits)**:")
        report.table(layer_by_variant(ev, "info_gain_bits", variants))
    div = _read(tables, "divergences")
    if div is not None and len(div):
        for variant, reference in contrasts:
            rows = div[(div["variant"] == variant) & (div["reference"] == reference) & (div["group"] == "eval")]
            rows = rows[rows["layer"] != "softmax"]
            if rows.empty:
                continue
            summary = rows.groupby("layer", sort=False)[["kl_bits", "js_bits"]].agg(_pm).reset_index()
            report.add(f"**Divergence of {variant} from {reference}** (same seed, smoothed shared-bin histograms):")
            report.table(summary.rename(columns={"kl_bits": f"KL({variant}‖{reference})", "js_bits": "JS"}))


def _cka(report: _Report, compare_dir: Path, tables: Path) -> None:
    overview = _read(tables, "cka_overview")
    if overview is None or overview.empty:
        return
    report.add(
        "### Representation similarity (debiased linear CKA)",
        "Minibatch debiased CKA (Kornblith et al. 2019; unbiased HSIC, Nguyen et al. 2021) per layer. Read a "
        "between-variant value against the seed-to-seed baseline of one variant: two variants differ only if "
        "they are further apart than two seeds of the same one. `vs input`: similarity to the pixels.",
    )
    heatmap = compare_dir / "figures" / "cka_heatmap.png"
    if heatmap.is_file():
        report.figure(heatmap, "compare/cka_heatmap.png", "Debiased CKA per layer (rows) and comparison (columns).")
    table = overview.pivot_table(index="layer", columns="comparison", values="cka", sort=False)
    report.table(table.reindex(list(dict.fromkeys(overview["layer"]))).reset_index())


def _matching(report: _Report, tables: Path) -> None:
    text = (
        "Per feature map layer and pair of networks: the Pearson correlation of every map with every map over "
        "images × positions, a one-to-one Hungarian matching, and the matched vs same-index correlations (the "
        "variants share their initialisation per seed). Means over live maps and seeds; the per-map assignments "
        "are in the compare stage's `matching.csv` (not shipped: its size grows with maps × pairs); the "
        "per-pair summary is [`tables/matching_summary.csv`](tables/matching_summary.csv)."
    )
    summary = _section(report, tables, "matching_overview", "### Map matching across networks", text)
    if summary is not None:
        report.table(summary.drop(columns=["kind"]))


def _class_patterns(report: _Report, tables: Path, variants: Sequence[str]) -> None:
    fcp = _read(tables, "fcp_contrast")
    if fcp is not None and len(fcp):
        report.add(
            "### Class patterns with a contrast and a chance level",
            "Nodes of the deepest map active in every probe image of the class and in none of the other probes "
            "(the article's count), against the same count for random same-class and random mixed draws of "
            "evaluation images (mean and 5–95 % range). A class pattern shows as same-class ≫ mixed.",
        )
        cols = ["variant", "seed", "class", "contrast_count", "same_class_mean", "same_class_p05", "same_class_p95",
                "mixed_mean", "mixed_p05", "mixed_p95", "percentile_in_same_class", "percentile_in_mixed"]  # fmt: skip
        report.table(fcp[cols])
    overlap = _read(tables, "overlap")
    if overlap is not None and len(overlap):
        report.add(
            "**Shared active nodes within vs between classes** (mean Jaccard of active sets over image pairs, "
            "deepest map; interval: image bootstrap, image-level only):"
        )
        report.table(overlap.drop(columns=["layer"]))
    classify = _read(tables, "pattern_classification")
    if classify is not None and len(classify):
        pattern_section(report, classify, _read(tables, "pattern_confusion"), variants, _pm)


def _claims(report: _Report, tables: Path, inputs: ClaimInputs) -> None:
    table = claims_frame(tables, inputs)
    confidence = inputs.confidence
    if table.empty:
        return
    report.add(
        "### The seed articles' claims, one table",
        f"Each claim on paired per-seed differences (variants share the initialisation per seed): mean, paired "
        f"effect size d_z (mean / sd of the differences), {confidence:.0%} t-interval over seeds, the smallest "
        "effect size of interest (SESOI, `compare.sesoi`, reasons in `conf/compare/default.yaml`), the exact "
        "sign-flip p (its smallest possible value with n seeds beside it: 0.25 for 3 seeds, so it cannot reach "
        "0.05 below 6 seeds), the same p Holm-adjusted over the table's tested rows, and the verdict — *holds* "
        "when the interval excludes 0 in the claimed direction, *equivalent* when it lies inside ±SESOI (two "
        "one-sided tests), *contradicted* only when it lies beyond the SESOI against the claim, *inconclusive* "
        "otherwise, *too few seeds* below 3, *degenerate null* when the untrained control is silent on data in "
        "that layer (no baseline; see *Activation scale* below), *not converged* for a claim (d) row when, in any "
        f"seed, fewer than `compare.min_converged` ({inputs.min_converged:.0%}) of a network's live maps ended "
        "their OIP ascent converged (the row's statement names the fractions): the OIPs are still largely their "
        "start noise, so the row measures the ascent's budget, not the maps — raise `oip.steps` until they "
        "converge. Neither of the last two is in the Holm family. Rows with a *control* "
        "test the claim against the untrained network (paired by seed: the same starting point) or the binarised "
        "input pixels: a claim that holds for its control as well does not need training. The image bootstrap is "
        "image-level only.",
    )
    shown = table.assign(
        seed_interval=_intervals(table["seed_ci_low"], table["seed_ci_high"]),
        image_interval=_intervals(table["image_ci_low"], table["image_ci_high"]),
        sign_flip=[
            f"{p:.3g} (min {m:.3g}; Holm {h:.3g})"
            for p, m, h in zip(table["sign_flip_p"], table["sign_flip_min_p"], table["holm_p"], strict=True)
        ],
    )
    cols = ["claim", "statement", "measure", "layer", "control", "n_seeds", "mean_difference", "effect_dz",
            "seed_interval", "sesoi", "sign_flip", "verdict", "image_interval"]  # fmt: skip
    report.table(shown[cols])


#: The compare table of each layer's activation scale (shipped in the report's ``tables/``).
ACTIVATION_SCALE = "activation_scale"


def _scale_cell(rows: pd.DataFrame) -> str:
    """RMS over seeds (mean ± sd), and in how many seeds the layer is silent on data."""
    cell = _pm(rows["rms"])
    silent = int(rows["silent"].astype(str).str.lower().eq("true").sum())
    return cell + (f" · **silent** in {silent}/{len(rows)}" if silent else "")


def _activation_scale(report: _Report, tables: Path, variants: Sequence[str]) -> None:
    """Each layer's activation scale per variant, and where a layer is silent on data: whether the
    untrained control is a null (issue 25, item 4)."""
    scale = _read(tables, ACTIVATION_SCALE)
    if scale is None or scale.empty:
        return
    report.add(
        "### Activation scale: is the untrained control a null?",
        "Root mean square of each layer's output over the evaluation sample (mean ± sd over seeds; per seed, with "
        f"the share of non-zero values and the spread over images: [`tables/{ACTIVATION_SCALE}.csv`]"
        f"(tables/{ACTIVATION_SCALE}.csv)). An untrained network is a null only if its layers still carry the "
        "image: its column should keep its scale from the first layer to the deepest (`model.init`, reasons in "
        "`conf/base/model.yaml`), not shrink towards its biases. A layer is *silent on data* when fewer than "
        "0.1 % of its values are non-zero or its nodes hardly vary between images (spread < 10⁻³ of the RMS): it "
        "passes a constant, and a trained − untrained row of the claims table on such a layer reads *degenerate "
        "null* and stays out of the verdicts.",
    )
    cells = scale.groupby(["layer", "variant"], sort=False)[["rms", "silent"]].apply(_scale_cell)
    table = cells.unstack("variant").reindex(list(dict.fromkeys(scale["layer"])))
    report.table(table[[v for v in variants if v in table]].reset_index())


def _intervals(low: pd.Series, high: pd.Series) -> list[str]:
    return ["—" if pd.isna(lo) else f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(low, high, strict=True)]

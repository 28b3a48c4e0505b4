"""Build ``reports/<study>/README.md`` (and its figures) from what the stages wrote.

The report opens with its findings (generated from the claims and accuracies) and a table of
contents, then the setup, the model table and one section per stage. It copies figures byte for
byte and renders tables from metrics files; it holds no timestamps or machine paths, so deleting
the folder and re-running the stage gives identical bytes. Each section names the stage and the
params that produced it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from cnnscope.config import Params
from cnnscope.io import atomic_dir, atomic_write, write_json
from cnnscope.layout import MANIFEST, metrics_dir, read_run_metrics, run_dir
from cnnscope.report import collect, evidence, findings, measures
from cnnscope.report import trajectory as report_trajectory
from cnnscope.report.atlas import atlas_section
from cnnscope.report.index import HEADLINE_FILE
from cnnscope.report.probes import probe_certainty_section
from cnnscope.report.selectivity import selectivity_section
from cnnscope.report.setup import model_section, setup_section
from cnnscope.viz import save_figure
from cnnscope.viz.confusion import confusion_panels
from cnnscope.viz.curves import training_curves

TRAIN_COLUMNS = ["test_acc", "test_loss", "best_val_acc", "epochs"]
#: Numbers of the OIP metrics that identify rather than measure (a map index, a count of maps).
#: The OIP summary's columns (``metrics/oip/*.json`` keys); the per-wavelength keys get their own table.
OIP_COLUMNS = (
    "dead_fraction",
    "converged_fraction",
    "median_robustness",
    "same_map_similarity",
    "cross_map_similarity",
    "shared_start_similarity",
    "median_best_activation",
    "median_mean_image_activation",
    "median_gain",
)


class Report:
    """Markdown lines plus the figures they reference, written together."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        self.lines.append("")

    def table(self, frame: pd.DataFrame) -> None:
        self.add(frame.to_markdown(index=False, floatfmt=".4g"))

    def headings(self) -> list[tuple[int, str]]:
        """``(level, text)`` of every ``##``/``###`` heading so far, in order."""
        found = []
        for line in self.lines:
            level = len(line) - len(line.lstrip("#"))
            if level in (2, 3) and line[level:].startswith(" "):
                found.append((level, line[level + 1 :].strip()))
        return found

    def figure(self, source: Path, name: str, caption: str) -> None:
        """A stage's figure file, copied to ``figures/<name>`` and shown with ``caption``."""
        target = self.folder / "figures" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.add(f"![{caption}](figures/{name})", f"*{caption}*")

    def drawn(self, fig: Any, name: str, caption: str) -> None:
        """A figure drawn here, saved as ``figures/<name>`` and shown with ``caption``."""
        save_figure(fig, self.folder / "figures" / name)
        self.add(f"![{caption}](figures/{name})", f"*{caption}*")


def build_report(params: Params, out_dir: Path, root: Path = Path(".")) -> Path:
    """Write ``out_dir/README.md``, ``out_dir/figures/`` and ``out_dir/headline.json`` atomically;
    returns the README path."""
    with atomic_dir(out_dir) as tmp:
        body = Report(tmp)
        manifest = collect.read_json(root / params.data.out_dir / MANIFEST)
        setup_section(body, params, manifest, root)
        model_section(body, params, root)
        _training(body, params, root)
        _compare(body, params, root)
        _oip(body, params, root)
        atlas_section(body, params, root, out_dir)
        report_trajectory.trajectory_section(body, params, root, 1 / len(manifest["classes"]))
        selectivity_section(body, params, root)
        head = Report(tmp)
        record = _findings(head, body, params, root, manifest)
        _ship_evidence(tmp / "tables", params, root)
        _contents(head, body)
        write_json(tmp / HEADLINE_FILE, record)
        with atomic_write(tmp / "README.md") as fh:
            fh.write("\n".join(head.lines + body.lines).rstrip() + "\n")
    return out_dir / "README.md"


def regenerate_command(study: str, root: Path) -> str:
    """The command that regenerates a study: a preset's name is its ``conf/experiment`` file."""
    if (root / "conf" / "experiment" / f"{study}.yaml").is_file():
        return f"dvc exp run -S experiment={study}"
    return "dvc repro"


def _findings(head: Report, body: Report, params: Params, root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Title, the headline findings (accuracy, then one sentence per seed claim); returns the headline."""
    study = params.study
    command = regenerate_command(study.name, root)
    head.add(
        f"# Study `{study.name}`: what the feature maps extract",
        "> Generated by the `report` stage from the other stages' outputs; do not edit by hand. Regenerate with "
        f"`{command}` (how long that took, and on which machine: `benchmarks/README.md`, section Studies).",
    )
    runs = collect.per_run_metrics(root, "train", study.variants, study.seeds)
    acc = runs.groupby("variant", sort=False)["test_acc"]
    means, stds = acc.mean().reindex(study.variants), acc.std(ddof=1).reindex(study.variants)
    claims = findings.claims_frame(root / params.compare.out_dir / "tables", _claim_inputs(params, root))
    headings = {text for _, text in body.headings()}
    lines = [findings.accuracy_sentence(means, stds, 1 / len(manifest["classes"]), len(study.seeds))]
    lines += [findings.claim_sentence(row, params.compare.confidence, headings) for _, row in claims.iterrows()]
    how = (
        ""
        if claims.empty
        else " Each verdict comes from paired differences between training seeds (the variants share the "
        "initialisation per seed): *holds* when the interval excludes zero in the claimed direction, "
        "*equivalent* when it lies inside ± the claim's smallest effect size of interest, *contradicted* only "
        "when it lies beyond that size against the claim. Rows marked *control* test the claim against the "
        "untrained network or the binarised pixels: a conclusion about training needs one of them."
    )
    head.add("## Findings", f"What this study's numbers say, generated from them.{how}", "\n".join(lines))
    data = f"{manifest['source']}, {manifest['sizes']['train']:,} training images"
    chance = 1 / len(manifest["classes"])
    return findings.headline(
        study.name, command, means, claims, len(study.seeds), data, params.compare.confidence, stds, chance
    )


def _ship_evidence(out: Path, params: Params, root: Path) -> None:
    """``tables/``: the per-seed tables behind every verdict and every cited table, the claims as
    the report shows them and the recipe that recomputes them (:mod:`cnnscope.report.evidence`)."""
    study = params.study
    inputs = _claim_inputs(params, root)
    oip_runs, nulls, matched = inputs.oip_metrics, list(inputs.null_models), inputs.extra
    trajectories, trajectory_layer = report_trajectory.matched_evidence(params, root)
    claims = findings.claims_frame(root / params.compare.out_dir / "tables", inputs)
    index = collect.read_json(root / params.compare.out_dir / "index.json")
    maps = list(index.get("feature_maps", []))
    compared = sorted({str(v) for v in claims["variant"]} | {str(r) for r in claims["reference"]} - {""})
    recipe = {
        "variants": [v for v in study.variants if v in compared or v in nulls],
        "contrasts": [list(c) for c in study.contrasts],
        "null_models": nulls,
        "confidence": params.compare.confidence,
        "sesoi": dict(params.compare.sesoi),
        "min_converged": params.compare.min_converged,
        "first_map": maps[0] if maps else None,
        "deepest_map": maps[-1] if maps else None,
        "trajectory_layer": trajectory_layer if matched is not None and len(matched) else None,
    }
    train = collect.per_run_metrics(root, "train", study.variants, study.seeds)
    shipped = trajectories if matched is not None and len(matched) else None
    evidence.ship_tables(out, root / params.compare.out_dir / "tables", claims, oip_runs, train, recipe, shipped)


def _claim_inputs(params: Params, root: Path) -> findings.ClaimInputs:
    """What the claims table is built from besides the compare tables: the OIP runs, the study's
    contrasts, ``compare.confidence``, ``compare.sesoi`` and ``compare.min_converged``, the untrained
    variants (``train: false``, the controls of the within-network claims) and the trajectory
    stage's matched-step claim."""
    study = params.study
    return findings.ClaimInputs(
        oip_metrics=read_run_metrics("oip", study.variants, study.oip_seeds, root),
        contrasts=study.contrasts,
        confidence=params.compare.confidence,
        sesoi=params.compare.sesoi,
        min_converged=params.compare.min_converged,
        null_models=[v for v in study.variants if not study.variant_specs[v].train],
        extra=report_trajectory.matched_claims(params, root),
    )


def _contents(head: Report, body: Report) -> None:
    """A table of contents of every section and subsection, linked."""
    items = [f"{'  ' * (level - 2)}- [{text}](#{findings.slug(text)})" for level, text in body.headings()]
    head.add("## Contents", "\n".join(items))


def _training(report: Report, params: Params, root: Path) -> None:
    study = params.study
    runs = collect.per_run_metrics(root, "train", study.variants, study.seeds)
    report.add(
        "## 1. Training",
        f"Stage `train@<variant>-<seed>` (params `model`, `trainer`, `study`). Mean ± std over "
        f"{len(study.seeds)} seed(s); test accuracy on the held-out test split at the best-validation checkpoint.",
    )
    report.table(collect.mean_std(runs, [c for c in TRAIN_COLUMNS if c in runs], study.variants))
    history = collect.histories(root, study.variants, study.seeds)
    trained = [v for v in study.variants if study.variant_specs[v].train]
    curves = report.folder / "figures/training_curves.png"
    curves.parent.mkdir(parents=True, exist_ok=True)
    save_figure(training_curves(history, trained, ("train_loss", "val_loss", "val_acc")), curves)
    caption = "Training curves per variant: mean over seeds, band from min to max (`dvc plots show` draws them too)."
    report.add(f"![{caption}](figures/training_curves.png)", f"*{caption}*")
    classes, rates = collect.confusion_rates(root / params.trainer.models_dir, study.variants, study.seeds)
    title = f"Test confusion, row-normalised, mean over {len(study.seeds)} seed(s)"
    save_figure(confusion_panels(rates, classes, title), report.folder / "figures/train/confusion.png")
    caption = (
        f"Test confusion matrix of every variant, each row (true class) normalised to 1 and averaged over seeds "
        f"{study.seeds}; cells in percent."
    )
    report.add(f"![{caption}](figures/train/confusion.png)", f"*{caption}*")


#: Order and headings of the compare figures in the report, by the ``kind`` compare gives them.
FIGURE_SECTIONS = [
    ("summary", "Layer profile"),
    ("feature_maps", "Feature maps of the probe images (the frog article's Fig. 2–5)"),
    ("histograms", "Activation histograms on shared bins, input pixels first (Fig. 6/7)"),
    ("softmax", "Softmax certainty per probe (Fig. 8)"),
    ("kernels", "First-layer kernels: what training changed"),
    ("fcp", "Class patterns (FCPs) on the deepest map"),
    ("edge_filters", "The hand-made filters of the tutorials"),
]


def _compare(report: Report, params: Params, root: Path) -> None:
    folder = root / params.compare.out_dir
    tables = folder / "tables"
    index = collect.read_json(folder / "index.json")
    report.add(
        "## 2. What the layers do to an image",
        "Stage `compare` (params `compare`) on the activations of every named layer (stage `extract`) for the "
        "probe images and the evaluation sample. Definitions: `src/cnnscope/analysis/` docstrings. "
        "Tables: [`tables/`](tables/), shipped with this report — every per-seed table behind a verdict and "
        "every table cited here (`claims.csv`, `verdicts.json` and the compare tables; `oip_runs.csv` and "
        "`train_runs.csv` from the OIP and training metrics).",
    )
    summary = pd.read_csv(tables / "seed_summary.csv")
    for quantity, label in LAYER_QUANTITIES.items():
        report.add(f"**{label}** per layer over the evaluation sample (mean ± std over seeds):")
        report.table(_layer_table(summary, quantity, params.study.variants))
    if (tables / "certainty.csv").is_file():  # only when the softmax was extracted
        probe_certainty_section(report, pd.read_csv(tables / "certainty.csv"), params.study.variants)
    study = params.study
    measures.measures_sections(report, folder, study.variants, study.seeds, _claim_inputs(params, root))
    figures = index["figures"]
    for kind, heading in FIGURE_SECTIONS:
        entries = [e for e in figures if e.get("kind") == kind]
        if entries:
            report.add(f"### {heading}")
        for entry in entries:
            if "path" not in entry:  # a sentence in place of a figure with nothing to show
                report.add(entry["text"])
                continue
            report.figure(folder / entry["path"], f"compare/{Path(entry['path']).name}", entry["caption"])


def _per_wavelength(runs: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Rows: noise wavelength; columns: variants; cells ``silent s · best b`` from the per-wavelength
    keys of the OIP metrics (``silent_start_fraction_wl<λ>``, ``best_at_wl<λ>_fraction``)."""
    prefix = "silent_start_fraction_wl"
    wavelengths = sorted(int(c.removeprefix(prefix)) for c in runs if c.startswith(prefix))
    means = runs.groupby("variant", sort=False).mean(numeric_only=True)
    table = pd.DataFrame({"λ (px)": wavelengths})
    for v in [v for v in variants if v in means.index]:
        row = means.loc[v]
        best = [row.get(f"best_at_wl{w}_fraction", float("nan")) for w in wavelengths]
        table[v] = [f"silent {row[f'{prefix}{w}']:.2f} · best {b:.2f}" for w, b in zip(wavelengths, best, strict=True)]
    return table


LAYER_QUANTITIES = {
    "entropy_bits": "Shannon entropy (bits) on bins shared by all variants — raw: it measures scale too (see the "
    "scale-free statistics below)",
    "sparsity": "Sparsity (fraction of exact zeros, scale-free)",
    "probe_accuracy": "Linear-probe accuracy on channel means (held-out; on early layers this mostly reads "
    "brightness — see the spatial probes below)",
}


def _layer_table(summary: pd.DataFrame, quantity: str, variants: list[str]) -> pd.DataFrame:
    """Rows: layer; columns: variants; cells ``mean ± std`` of ``quantity``."""
    rows = summary[summary["quantity"] == quantity].copy()
    rows["cell"] = [
        f"{m:.3f}" + (f" ± {sd:.3f}" if pd.notna(sd) else "") for m, sd in zip(rows["mean"], rows["std"], strict=True)
    ]
    layers = list(dict.fromkeys(rows["layer"]))
    table = rows.pivot(index="layer", columns="variant", values="cell").reindex(layers)
    return table[[v for v in variants if v in table]].reset_index()


def _oip(report: Report, params: Params, root: Path) -> None:
    study = params.study
    runs, mapless = collect.with_maps(collect.per_run_metrics(root, "oip", study.variants, study.oip_seeds))
    seeds = f"seeds {study.oip_seeds}" if study.oip_seeds != study.seeds else "seeds"
    report.add(
        "## 3. Input patterns each map reacts to (OIPs)",
        "Stage `oip@<variant>-<seed>` (params `oip`): inputs found by gradient ascent from noise at several "
        f"wavelengths. Summary per variant, mean ± std over {seeds} (`study.oip_seeds`); *robustness*: how much "
        "the restarts' OIPs of one map agree at its best wavelength (median over maps); *same_map_similarity*: that "
        "agreement averaged over wavelengths and maps, against *cross_map_similarity*, two different maps' OIPs "
        "from two different starts (the null: the pairs differ from the same-map ones in the map only); "
        "*shared_start_similarity*: two different maps' OIPs from the *same* start, high while the ascent keeps its "
        "starting noise (a check on `oip.steps`, not a null); "
        "*converged_fraction*: the share of all maps whose ascent converged (claim "
        "(d) is read only where at least `compare.min_converged` of the live maps did, in every seed); columns are "
        f"keys of `{metrics_dir('oip')}/*.json`:",
    )
    report.table(collect.mean_std(runs, [c for c in OIP_COLUMNS if c in runs.columns], study.variants))
    if not runs.empty:
        report.add(
            "Per noise wavelength λ (pixels): the share of maps silent at the start for every restart, and the "
            "share whose best OIP started at λ (means over seeds):"
        )
        report.table(_per_wavelength(runs, study.variants))
    if mapless:
        report.add(f"Without OIPs: {', '.join(f'`{v}`' for v in mapless)} (no convolution, so no feature maps).")
    seed = study.oip_seeds[0]
    for variant in [v for v in study.variants if v not in mapless]:
        folder = run_dir(root / params.oip.out_dir, variant, seed)
        report.add(f"### `{variant}` (seed {seed})")
        for entry in collect.figure_index(folder / "index.json"):
            report.figure(folder / entry["path"], f"oip/{variant}_{entry['path']}", entry["caption"])

"""The report's "Training trajectories" section: more data, or more training? (issue 26)

Reads the ``trajectory`` stage's tables (:mod:`cnnscope.trajectory.collect`) and draws each
measure against gradient steps per variant (:mod:`cnnscope.viz.trajectory`), the tracked maps'
OIPs over training, and the matched-step comparison of claim (a), whose row also joins the claims
table (:func:`matched_claims`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cnnscope.analysis.claims import matched_step_claims
from cnnscope.config import Params
from cnnscope.layout import OIP_TABLE
from cnnscope.trajectory.collect import read_oips, read_trajectories
from cnnscope.viz.trajectory import accuracy_curve, measure_grid, oip_strip

#: The columns of the trajectory rows behind the matched-step claim (shipped in ``tables/``).
MATCHED_COLUMNS = ["variant", "seed", "step", "layer", "measure", "value"]


class _Report(Protocol):
    folder: Path

    def add(self, *lines: str) -> None: ...

    def table(self, frame: pd.DataFrame) -> None: ...

    def drawn(self, fig: Any, name: str, caption: str) -> None: ...


def _layers(table: pd.DataFrame) -> list[str]:
    """The map layers in the order the stage wrote them (shallow to deep)."""
    rows = table[table["layer"].astype(str) != ""]
    return sorted(dict.fromkeys(rows["layer"].astype(str)), key=lambda name: (len(name), name))


def matched_evidence(params: Params, root: Path) -> tuple[pd.DataFrame, str | None]:
    """What the matched-step claim reads: the deepest map layer's per-seed Hoyer rows of every
    trajectory (``variant, seed, step, layer, measure, value``) and that layer (None without
    trajectories). The report ships these rows so the claim can be recomputed from ``tables/``."""
    study = params.study
    table = read_trajectories(root / params.trajectory.out_dir, study.variants, study.seeds)
    layers = _layers(table) if not table.empty else []
    if not layers:
        return pd.DataFrame(columns=MATCHED_COLUMNS), None
    rows = table[(table["measure"] == "hoyer") & (table["layer"].astype(str) == layers[-1])]
    return rows[MATCHED_COLUMNS].reset_index(drop=True), layers[-1]


def matched_claims(params: Params, root: Path) -> pd.DataFrame:
    """The matched-step rows of claim (a) for the study's contrasts (empty without trajectories)."""
    rows, layer = matched_evidence(params, root)
    return matched_step_claims(rows, params.study.contrasts, layer, params.compare.confidence, params.compare.sesoi)


def _final_table(table: pd.DataFrame, variants: list[str], deepest: str | None) -> pd.DataFrame:
    """Per variant: its last step, test accuracy and deepest-map Hoyer there (mean over seeds)."""
    rows = []
    for v in variants:
        runs = table[table["variant"] == v]
        if runs.empty:
            continue
        last = runs.groupby("seed")["step"].transform("max") == runs["step"]
        end = runs[last]
        row = {"variant": v, "steps": int(end["step"].max()), "seeds": int(end["seed"].nunique())}
        row["test_acc"] = float(end[end["measure"] == "test_acc"]["value"].mean())
        if deepest is not None:
            deep = end[(end["measure"] == "hoyer") & (end["layer"] == deepest)]
            row[f"{deepest} hoyer"] = float(deep["value"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def trajectory_section(report: _Report, params: Params, root: Path, chance: float) -> None:
    study = params.study
    folder = root / params.trajectory.out_dir
    table = read_trajectories(folder, study.variants, study.seeds)
    report.add(
        "## Training trajectories: more data, or more training?",
        "Stage `trajectory@<variant>-<seed>` (params `trajectory`, `trainer.checkpoint_steps`): every map layer "
        "measured at each checkpoint kept along training — Hoyer sparsity and normalised entropy, debiased CKA to "
        "the initial and to the final network, a spatial-probe accuracy, test accuracy — on "
        f"{params.trajectory.eval_samples} test images in one seeded order. A step-matched control "
        "(`match_steps_of`) trains on the subset for as many gradient steps as its reference; comparing it with "
        "the reference separates *more data* from *more steps*. Lines: mean over seeds; band: min to max.",
    )
    if table.empty:
        report.add("No trajectories were found (run the `trajectory` stage).")
        return
    layers = _layers(table)
    report.table(_final_table(table, list(study.variants), layers[-1] if layers else None))
    report.drawn(
        accuracy_curve(table, study.variants, chance), "trajectory/accuracy.png", "Test accuracy over training."
    )
    if layers:
        caption = "Each measure of each map layer against gradient steps (log axis), per variant with the seed band."
        report.drawn(measure_grid(table, study.variants, layers), "trajectory/measures.png", caption)
    matched = matched_claims(params, root)
    for _, row in matched.iterrows():
        n = int(row["n_seeds"])
        interval = f"interval [{row['seed_ci_low']:+.3f}, {row['seed_ci_high']:+.3f}]" if n >= 2 else "no interval"
        report.add(
            f"At equal gradient steps ({row['measure']}): {row['mean_difference']:+.3f} over {n} seed(s), "
            f"{interval} — **{row['verdict']}** (also a row of the claims table)."
        )
    _strips(report, params, root, folder)


def _strips(report: _Report, params: Params, root: Path, folder: Path) -> None:
    """An "OIP over training" strip per variant (first seed): rows are maps, columns checkpoints."""
    seed = params.study.seeds[0]
    maps_table = read_trajectories(folder, params.study.variants, [seed], OIP_TABLE)
    for variant in params.study.variants:
        record = read_oips(folder, variant, seed)
        if record is None or "images" not in record or len(record["steps"]) < 2:  # type: ignore[arg-type]
            continue
        steps, maps = list(record["steps"]), list(record["maps"])  # type: ignore[call-overload]
        rows = maps_table[maps_table["variant"] == variant]
        classes = np.array(
            [[str(rows[(rows["step"] == s) & (rows["map"] == m)]["top_class"].iloc[0]) for m in maps] for s in steps]
        )
        images = np.asarray(record["images"], dtype=np.float32)
        title = f"{variant} seed {seed}: OIPs of {record['layer']} over training (title: top image's class)"
        caption = (
            f"OIP over training, `{variant}` seed {seed}: the {len(maps)} most active maps of `{record['layer']}` "
            "at the end, each row one map from the same noise at every checkpoint (columns: gradient step)."
        )
        report.drawn(oip_strip(images, steps, maps, classes, title), f"trajectory/oip_strip_{variant}.png", caption)

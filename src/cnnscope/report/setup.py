"""The report's Setup and Model sections: the data, every variant's training recipe and what it took.

A reviewer reads the setup before any number: which optimiser with which settings, which learning-rate
schedule, batch size, how many epochs and gradient steps each network actually trained, where early
stopping kept its weights, and whether a run was resumed (issue 25, item 6). The recipe comes from
each run's ``models/<v>/seed<k>/provenance.json`` (the configuration that run used, its variant's
overrides applied), what it took from ``metrics/train/<v>_seed<k>.json``; nothing is read from the
study's current params that a run could have overridden.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from cnnscope.config import Params, to_container
from cnnscope.layout import PROVENANCE, best_checkpoint, metrics_dir, metrics_path, run_dir
from cnnscope.models import load_model
from cnnscope.report.model_table import model_table


class _Report(Protocol):
    def add(self, *lines: str) -> None: ...

    def table(self, frame: pd.DataFrame) -> None: ...


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def optimiser(model: Mapping[str, Any]) -> str:
    """``SGD lr 0.05, momentum 0.9, weight decay 0.0005`` (Adam has no momentum setting)."""
    name = str(model.get("optimizer", "?"))
    parts = [f"lr {model.get('lr', '?'):g}"]
    if name == "sgd":
        parts.append(f"momentum {model.get('momentum', 0):g}")
    parts.append(f"weight decay {model.get('weight_decay', 0):g}")
    return f"{ {'sgd': 'SGD', 'adam': 'Adam'}.get(name, name) } {', '.join(parts)}".strip()


def schedule(model: Mapping[str, Any]) -> str:
    """The learning-rate schedule in words."""
    kind = str(model.get("lr_schedule", "none"))
    if kind == "step":
        return f"×{model.get('lr_gamma', '?'):g} every {model.get('lr_step_size', '?')} epochs"
    if kind == "cosine":
        return "cosine to 0 over the epoch budget"
    return "constant"


def gradient_steps(metrics: Mapping[str, Any], batch: int, max_steps: int | None) -> int:
    """The gradient steps a run took: its epochs × batches per epoch (the last batch may be short),
    capped by a step-matched control's budget; 0 for the untrained null model."""
    size = int(metrics.get("train_size", 0))
    if not size:
        return 0
    steps = int(metrics.get("epochs", 0)) * -(-size // batch)
    return min(steps, max_steps) if max_steps is not None else steps


def _per_seed(values: Sequence[Any]) -> str:
    """One value when every seed agrees, else the values in seed order."""
    shown = ["—" if v is None else str(v) for v in values]
    return shown[0] if len(set(shown)) == 1 else ", ".join(shown)


def _resumed(metrics: Mapping[str, Any]) -> str | None:
    """``yes`` / ``no`` from the run's metrics (``resumed``: it continued an interrupted run from its
    ``last.ckpt``); None when the metrics predate that key."""
    if "resumed" in metrics:
        return "yes" if metrics["resumed"] else "no"
    return None


def recipe_table(params: Params, root: Path) -> pd.DataFrame:
    """One row per variant: optimiser and its settings, schedule, batch, epochs trained, best
    epoch, gradient steps and resumption, per seed where the seeds differ."""
    study, rows = params.study, []
    for variant in study.variants:
        spec = study.variant_specs[variant]
        runs = []
        for seed in study.seeds:
            record = _json(run_dir(root / params.trainer.models_dir, variant, seed) / PROVENANCE)
            config = record.get("params", {})
            metrics = _json(metrics_path("train", variant, seed, root))
            runs.append((config, metrics))
        config = runs[0][0] or {**to_container(params), "model": {**to_container(params)["model"], **spec.model}}
        model, trainer = config.get("model", {}), config.get("trainer", {})
        batch = int(trainer.get("batch_size", params.trainer.batch_size))
        budget = _step_budget(params, variant, root)
        row = {"variant": variant}
        if not spec.train:
            row |= {"optimiser": "none (not trained)"} | dict.fromkeys(
                ["schedule", "batch", "epochs trained", "best epoch", "gradient steps", "resumed"], "—"
            )
            rows.append(row)
            continue
        row["optimiser"] = optimiser(model)
        row["schedule"] = schedule(model)
        row["batch"] = str(batch)
        epochs = _per_seed([m.get("epochs") for _, m in runs])
        if budget is None:
            row["epochs trained"] = (
                f"{epochs} of ≤ {trainer.get('max_epochs', '?')} (patience {trainer.get('patience', '?')})"
            )
        else:  # its epochs are shorter than the reference's: more of them, no early stopping
            row["epochs trained"] = f"{epochs} (no early stopping: a budget of {budget} steps)"
        best = [m.get("best_epoch") for _, m in runs]
        row["best epoch"] = "final weights" if budget is not None else _per_seed(best)
        row["gradient steps"] = _per_seed([gradient_steps(m, batch, budget) for _, m in runs])
        resumed = [_resumed(m) for _, m in runs]
        row["resumed"] = "not recorded" if all(r is None for r in resumed) else _per_seed(resumed)
        rows.append(row)
    return pd.DataFrame(rows)


def _step_budget(params: Params, variant: str, root: Path) -> int | None:
    """A step-matched control's budget: its reference's epochs × batches per epoch (from the
    reference's recorded training-set size), or None."""
    ref = params.study.variant_specs[variant].match_steps_of
    if ref is None:
        return None
    size = int(_json(metrics_path("train", ref, params.study.seeds[0], root)).get("train_size", 0))
    return params.trainer.max_epochs * -(-size // params.trainer.batch_size) if size else None


def model_summary(params: Params) -> str:
    """The Setup's model row: the architecture, its size and the initialisation every variant starts from."""
    m = params.model
    return (
        f"`{m.name.value}` (width {m.width}, hidden {m.hidden}); initialisation `{m.init.value}` (`model.init`), "
        "one draw per seed shared by every variant: the untrained control is the trained networks' start"
    )


def setup_section(report: _Report, params: Params, manifest: dict[str, Any], root: Path) -> None:
    study = params.study
    sizes = ", ".join(f"{k} {v:,}" for k, v in manifest["sizes"].items())
    subsets = ", ".join(f"{k} → {v:,}" for k, v in manifest["subset_sizes"].items())
    probes = ", ".join(f"`{p['name']}` (class {p['label']})" for p in manifest["probes"])
    setup = pd.DataFrame(
        [
            ("dataset", f"`{manifest['source']}`, images {'×'.join(map(str, manifest['image_shape']))}"),
            ("splits", sizes),
            ("nested training subsets", subsets),
            ("held-out probes", probes),
            ("dataset sha256", f"`{manifest['dataset_sha256'][:16]}…`"),
            ("model", model_summary(params)),
            ("variants × seeds", f"{', '.join(study.variants)} × seeds {study.seeds}"),
            ("training", f"≤ {params.trainer.max_epochs} epochs, batch {params.trainer.batch_size}"),
        ],
        columns=["", "setup (stage `prepare`, params `data`)"],
    )
    report.add("## Setup")
    report.table(setup)
    specs = pd.DataFrame(
        [
            {
                "variant": name,
                "training data": _training_data(s.train, s.train_subset, manifest),
                "differs from `model` in": _differs(s.model, s.match_steps_of),
            }
            for name, s in ((n, study.variant_specs[n]) for n in study.variants)
        ]
    )
    report.table(specs)
    report.add(
        f"How each variant was trained, from each run's `{PROVENANCE}` (the settings it used) and "
        f"`{metrics_dir('train')}/*.json` (what it took): epochs trained (early stopping on the validation loss "
        "may end a run before the budget), the epoch (from 0) whose weights were kept and tested, gradient steps taken "
        "(epochs × batches per epoch) and whether a run was resumed after an interruption. One value when every "
        "seed agrees, else one per seed in seed order."
    )
    report.table(recipe_table(params, root))


def _differs(model: Mapping[str, Any], match_steps_of: str | None) -> str:
    parts = [f"{k}={v}" for k, v in model.items()]
    if match_steps_of is not None:
        parts.append(f"trained for `{match_steps_of}`'s gradient steps (`match_steps_of`)")
    return ", ".join(parts) or "nothing"


def _training_data(train: bool, subset: float | None, manifest: dict[str, Any]) -> str:
    if not train:
        return "none (random initialisation)"
    if subset is None:
        return f"full training split ({manifest['sizes']['train']:,} images)"
    key = str(int(subset)) if subset > 1 else repr(float(subset))
    return f"nested subset {key} ({manifest['subset_sizes'][key]:,} images)"


def model_section(report: _Report, params: Params, root: Path) -> None:
    """Every named layer of each architecture in the study, each listed with every variant that uses it."""
    study = params.study
    report.add(
        "## Model",
        "Every named layer of the trained network (read from its checkpoint): output shape for one image, "
        "parameters, and the receptive field of one node (side of the input window it sees) and its stride "
        "(input pixels between neighbouring nodes), from the layer geometry (`cnnscope.models.receptive_field`).",
    )
    models = {
        v: load_model(best_checkpoint(root / params.trainer.models_dir, v, study.seeds[0])) for v in study.variants
    }
    for users in by_architecture({v: m.arch for v, m in models.items()}):
        table = model_table(models[users[0]])
        name = models[users[0]].arch["name"]
        report.add(f"**`{name}`** ({', '.join(users)}): {int(table['parameters'].sum()):,} parameters.")
        report.table(table)


def by_architecture(archs: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """The variants grouped by the architecture their checkpoints hold, in study order: every
    variant in exactly one group (a variant that changes only the optimiser shares its group)."""
    groups: list[tuple[Mapping[str, Any], list[str]]] = []
    for variant, arch in archs.items():
        same = next((users for known, users in groups if known == arch), None)
        if same is None:
            groups.append((arch, [variant]))
        else:
            same.append(variant)
    return [users for _, users in groups]

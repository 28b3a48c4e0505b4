"""Issue 25, items 6 and 7: the report's Setup discloses how each variant was trained, the model
table lists every variant, and part VI holds the pattern classifier's confusion against both heads."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnnscope.analysis.pattern_classifier import confusion_rows
from cnnscope.report.patterns import confusion_rates, pair_against_heads
from cnnscope.report.setup import _resumed, by_architecture, gradient_steps, optimiser, schedule

SGD = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005, "lr_schedule": "step",
       "lr_step_size": 3, "lr_gamma": 0.5}  # fmt: skip


def test_the_optimiser_and_its_schedule_are_named_with_their_settings() -> None:
    assert optimiser(SGD) == "SGD lr 0.05, momentum 0.9, weight decay 0.0005"
    assert optimiser({**SGD, "optimizer": "adam", "lr": 0.001, "weight_decay": 0}) == "Adam lr 0.001, weight decay 0"
    assert schedule(SGD) == "×0.5 every 3 epochs"
    assert schedule({"lr_schedule": "none"}) == "constant"


def test_gradient_steps_count_every_batch_of_every_epoch_and_stop_at_a_step_budget() -> None:
    assert gradient_steps({"epochs": 3, "train_size": 1000}, 128, None) == 3 * 8  # the last batch is short
    assert gradient_steps({"epochs": 12, "train_size": 200}, 128, 20) == 20  # a step-matched control
    assert gradient_steps({"epochs": 0, "train_size": 0}, 128, None) == 0  # the untrained null model


def test_every_variant_is_listed_under_its_architecture() -> None:
    cnn, mlp = {"name": "mnist_cnn", "width": 1.0}, {"name": "mlp", "width": 1.0}
    archs = {"benchmark": cnn, "dummy": dict(cnn), "sgd": dict(cnn), "untrained": dict(cnn), "mlp": mlp}
    assert by_architecture(archs) == [["benchmark", "dummy", "sgd", "untrained"], ["mlp"]]
    assert by_architecture({"wide": {**cnn, "width": 2.0}, "benchmark": cnn}) == [["wide"], ["benchmark"]]


def _classified() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two seeds of a CNN (pattern and head) and an MLP head, on six held-out images of classes 4 and 9."""
    labels = np.array([0, 0, 0, 1, 1, 1])  # classes "4", "9"
    guesses = {
        ("cnn", "binary pattern"): [0, 0, 1, 1, 1, 1],  # one 4 called a 9
        ("cnn", "network head"): [0, 0, 0, 1, 1, 1],
        ("mlp", "network head"): [1, 0, 1, 0, 1, 1],  # three swaps
    }
    confusion, scores = [], []
    for seed in (0, 1):
        for (variant, classifier), guess in guesses.items():
            ids = {"variant": variant, "seed": seed, "classifier": classifier}
            confusion += confusion_rows(np.array(guess), labels, ["4", "9"], **ids)
            swapped = float(np.mean(np.array(guess) != labels))
            scores.append({**ids, "accuracy": 1 - swapped, "pair_confusion": swapped, "pair": "4↔9"})
    scores.append({"variant": "binarised pixels", "seed": -1, "classifier": "binary pattern", "accuracy": 0.5,
                   "pair_confusion": 0.5, "pair": "4↔9"})  # fmt: skip
    return pd.DataFrame(scores), pd.DataFrame(confusion)


def test_the_pattern_is_set_against_its_own_head_and_the_pixel_head() -> None:
    scores, _ = _classified()
    table = pair_against_heads(scores, lambda v: f"{v.mean():.3f}").set_index("network")
    assert list(table.index) == ["cnn"]  # the pixel baseline and the head-only MLP are columns, not rows
    assert table.loc["cnn", "binary pattern"] == "0.167" and table.loc["cnn", "own head"] == "0.000"
    assert table.loc["cnn", "mlp head"] == "0.500"
    assert table.loc["cnn", "pattern − own head (paired)"] == "0.167"


def test_the_full_confusion_matrix_reads_back_row_normalised() -> None:
    _, confusion = _classified()
    assert len(confusion) == 3 * 2 * 4  # every (true, predicted) cell, zeros included
    read = pd.read_csv(io.StringIO(confusion.to_csv(index=False)))  # class names come back as numbers
    found = confusion_rates(read, "cnn", "binary pattern")
    assert found is not None
    classes, rates = found
    assert classes == ["4", "9"]
    assert rates == pytest.approx(np.array([[2 / 3, 1 / 3], [0, 1]]))
    assert confusion_rates(read, "mlp", "binary pattern") is None


def test_a_resumed_run_is_disclosed_and_an_unrecorded_one_is_not_called_clean() -> None:
    assert _resumed({"resumed": 1}) == "yes" and _resumed({"resumed": 0}) == "no"
    assert _resumed({"epochs": 3}) is None  # metrics written before runs recorded it: "not recorded"


def test_the_recipe_table_discloses_what_each_variant_took(tmp_path: Path) -> None:
    from cnnscope.compose import compose_params
    from cnnscope.config import validate
    from cnnscope.layout import PROVENANCE, metrics_path, run_dir
    from cnnscope.report.setup import recipe_table

    overrides = ["study.variants=[benchmark,dummy_steps,sgd,untrained]", "study.contrasts=[[benchmark,dummy_steps]]"]
    raw = compose_params([*overrides, "study.seeds=[0,1]"])
    raw["trainer"] |= {"max_epochs": 3, "batch_size": 100, "patience": 2}
    params = validate(raw)
    runs: dict[str, tuple[int, list[int], list[int | None], list[int]]] = {  # size, per seed: epochs, best, resumed
        "benchmark": (1000, [3, 2], [2, 0], [0, 1]),
        "dummy_steps": (200, [15, 15], [None, None], [0, 0]),
        "sgd": (1000, [3, 3], [1, 1], [0, 0]),
    }
    for variant, (size, epochs, best, resumed) in runs.items():
        model = {**raw["model"], **params.study.variant_specs[variant].model}
        for seed in (0, 1):
            folder = run_dir(tmp_path / params.trainer.models_dir, variant, seed)
            folder.mkdir(parents=True)
            (folder / PROVENANCE).write_text(json.dumps({"params": {"model": model, "trainer": raw["trainer"]}}))
            path = metrics_path("train", variant, seed, tmp_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"epochs": epochs[seed], "train_size": size, "resumed": resumed[seed]}
            path.write_text(json.dumps(record | ({} if best[seed] is None else {"best_epoch": best[seed]})))
    table = recipe_table(params, tmp_path).set_index("variant")
    assert list(table.index) == ["benchmark", "dummy_steps", "sgd", "untrained"]  # every variant
    assert table.loc["benchmark", "epochs trained"] == "3, 2 of ≤ 3 (patience 2)"
    assert table.loc["benchmark", "best epoch"] == "2, 0" and table.loc["benchmark", "gradient steps"] == "30, 20"
    assert table.loc["benchmark", "resumed"] == "no, yes"
    assert table.loc["dummy_steps", "gradient steps"] == "30"  # the reference's budget, 3 epochs × 10 batches
    assert table.loc["dummy_steps", "best epoch"] == "final weights"
    assert table.loc["dummy_steps", "epochs trained"] == "15 (no early stopping: a budget of 30 steps)"
    assert table.loc["sgd", "optimiser"].startswith("SGD lr") and "momentum" in table.loc["sgd", "optimiser"]
    assert table.loc["untrained", "optimiser"] == "none (not trained)"


def test_the_model_row_names_the_initialisation_every_variant_starts_from() -> None:
    from cnnscope.compose import compose_params
    from cnnscope.config import validate
    from cnnscope.report.setup import model_summary

    assert "initialisation `kaiming` (`model.init`)" in model_summary(validate(compose_params([])))
    old = validate(compose_params(["model.init=torch_default"]))
    assert model_summary(old).startswith("`mnist_cnn` (width 1.0, hidden 64); initialisation `torch_default`")

"""Issue 26: weights along training, the step-matched control, the trajectory stage, its figures,
the matched-step claim and the class selectivity of the maps."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import yaml

from cnnscope.compose import compose_params
from cnnscope.config import ConfigError, load_params, to_container
from cnnscope.io import MANIFEST_FILE, file_sha256
from cnnscope.models import load_model
from cnnscope.models.steps import checkpoint_schedule, decade_steps, saved_steps, step_file
from conftest import REPO_ROOT, synthetic_prepared
from pipeline import run_stage_main

# ---------------------------------------------------------------- which steps are kept


def test_a_count_gives_log_spaced_steps_from_zero_to_the_last_plus_the_shared_decades() -> None:
    steps = checkpoint_schedule(10, 116)
    assert steps[0] == 0 and steps[-1] == 116 and steps == sorted(set(steps)) and len(steps) >= 10
    assert {1, 2, 5, 10, 20, 50, 100} <= set(steps)
    assert sum(1 for s in steps if s < 29) >= 5  # several inside the first epoch (29 steps on the default data)
    gaps = [b / a for a, b in itertools.pairwise(steps[1:])]
    assert max(gaps) < 3  # log-spaced: no jump of more than a factor 3
    assert checkpoint_schedule(10, 4) == [0, 1, 2, 3, 4]  # a short run keeps every step
    assert checkpoint_schedule([0, 5, 50], 116) == [0, 5, 50, 116]  # a list, plus the last
    assert decade_steps(24) == [1, 2, 5, 10, 20] and set(decade_steps(24)) <= set(checkpoint_schedule(10, 24))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.checkpoint_steps=[]", "non-empty list"),
        ("trainer.checkpoint_steps=[0,50,10]", "must be sorted"),
        ("trainer.checkpoint_steps=[0,10,50]", "beyond the run of variant dummy: it takes at most 24"),
        ("trainer.checkpoint_steps=[0,10,200]", "beyond the run of variant benchmark: it takes at most 116"),
        ("trainer.checkpoint_steps=1", "must be ≥ 2"),
        ("study.variant_specs.dummy_steps.train_subset=null", "trains on the full split"),
        ("study.variant_specs.dummy_steps.train_subset=1.0", "trains on the full split"),
        ("study.variant_specs.dummy_steps.match_steps_of=untrained", "must name another trained variant"),
        ("study.variant_specs.dummy_steps.match_steps_of=dummy_steps", "must name another trained variant"),
    ],
)
def test_bad_checkpoint_steps_or_step_matching_fail_at_composition(override: str, message: str) -> None:
    extra = ["data.subsets=[0.2,1.0]"] if "train_subset=1.0" in override else []
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        compose_params([override, *extra])


def test_default_study_and_presets_declare_the_step_matched_control_and_both_contrasts() -> None:
    for overrides, seeds in (([], 3), (["experiment=cifar10_frog"], 5), (["experiment=mnist_oip"], 5)):
        study = compose_params(overrides)["study"]
        assert study["variant_specs"]["dummy_steps"]["match_steps_of"] == "benchmark"
        assert "dummy_steps" in study["variants"] and len(study["seeds"]) == seeds
        assert ["benchmark", "dummy"] in study["contrasts"] and ["benchmark", "dummy_steps"] in study["contrasts"]
        dummy = study["variant_specs"]["dummy"]["train_subset"]
        assert study["variant_specs"]["dummy_steps"]["train_subset"] == dummy
    for preset in ("edge_filters", "edge_filters_cifar10"):
        assert len(compose_params([f"experiment={preset}"])["study"]["seeds"]) >= 5


# ---------------------------------------------------------------- training: the step-matched control


@pytest.fixture
def stage_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Prepared synthetic data (120 training images, the nested 0.2 subset 24) and a 2-epoch study
    in batches of 32: benchmark takes 2 × 4 = 8 steps, dummy 2 × 1 = 2."""
    dataset = synthetic_prepared().save(tmp_path / "data" / "prepared")
    manifest = {"dataset_sha256": file_sha256(dataset), "source": "synthetic", "classes": [str(k) for k in range(10)]}
    (dataset.parent / MANIFEST_FILE).write_text(json.dumps(manifest))
    raw = to_container(load_params(REPO_ROOT / "params.yaml"))
    raw["trainer"].update(max_epochs=2, batch_size=32, accelerator="cpu", devices="1", patience=1)
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw["study"].update(variants=["benchmark", "dummy", "dummy_steps", "untrained"], seeds=[0], oip_seeds=[0])
    raw["study"]["contrasts"] = [["benchmark", "dummy"], ["benchmark", "dummy_steps"]]
    raw["trajectory"].update(eval_samples=30, batch_size=10, probe_samples=20, maps=3, oip_steps=2)
    raw["model"]["width"] = 0.25
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train(variant: str, seed: int = 0) -> Path:
    assert run_stage_main("train", ["--no-progress", "--variant", variant, "--seed", str(seed)]) == 0
    return Path("models") / variant / f"seed{seed}"


@pytest.mark.slow
def test_step_matched_control_takes_the_reference_steps_on_its_subset_and_keeps_the_final_weights(
    stage_dir: Path,
) -> None:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["trainer"]["batch_size"] = 9  # benchmark: 2 epochs × 14 batches; dummy: 3 batches, so 28 ends mid-epoch
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    matched, dummy = _train("dummy_steps"), _train("dummy")
    steps = [s for s, _ in saved_steps(matched)]
    assert steps == checkpoint_schedule(10, 28) and steps[-1] == 28
    assert [s for s, _ in saved_steps(dummy)][-1] == 6  # 2 epochs × 3 batches: what dummy gets
    final, best = load_model(step_file(matched, 28)), load_model(matched / "best.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), best.state_dict().values(), strict=True))
    first = load_model(step_file(matched, 0))
    initial = load_model(matched / "initial.ckpt")
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), initial.state_dict().values(), strict=True)
    )
    assert not torch.equal(first.state_dict()["conv1.weight"], final.state_dict()["conv1.weight"])
    sizes = [p.stat().st_size for _, p in saved_steps(matched)]
    assert max(sizes) < (matched / "last.ckpt").stat().st_size  # weights only: smaller than Lightning's state
    assert [s for s, _ in saved_steps(_train("untrained"))] == [0]


# ---------------------------------------------------------------- the trajectory's measures


def _direct_hoyer(x: torch.Tensor) -> float:
    flat = x.flatten(1).double()
    n = flat.shape[1]
    h = (n**0.5 - flat.abs().sum(1) / flat.norm(dim=1)) / (n**0.5 - 1)
    return float(h[torch.isfinite(h)].mean())


def test_measure_pass_agrees_with_direct_formulas_and_is_one_against_itself() -> None:
    from cnnscope.activations.capture import capture
    from cnnscope.analysis.information import entropy
    from cnnscope.analysis.scalefree import robust_scale
    from cnnscope.trajectory.measures import PassSettings, measure_pass
    from cnnscope.trajectory.run import eval_images
    from conftest import random_model

    data = synthetic_prepared()
    models = {s: random_model(data, seed=s, width=0.25, hidden=8).eval() for s in (0, 3, 9)}
    images, labels = eval_images(data, 30, seed=0)
    assert len(set(labels[:10].tolist())) >= 5  # seeded order: the first minibatch is not one or two classes
    settings = PassSettings(batch_size=10, probe_samples=20, bins=16, entropy_range=4.0)
    rows, best = measure_pass(models, models[0], models[9], images, labels, ["relu1", "relu2"], [0, 2], settings)
    value = {(r["step"], r["layer"], r["measure"]): r["value"] for r in rows}
    assert value[0, "relu1", "cka_to_initial"] == pytest.approx(1.0)
    assert value[9, "relu2", "cka_to_final"] == pytest.approx(1.0)
    assert value[3, "relu1", "cka_to_initial"] < 0.999
    x = capture(models[3], models[3].standardize(images.float() / 255), ["relu1", "relu2"])
    assert value[3, "relu1", "hoyer"] == pytest.approx(_direct_hoyer(x["relu1"]), rel=1e-6)
    scale = robust_scale(x["relu2"][:10].flatten(1).numpy())  # the first batch sets the scale
    idx = ((x["relu2"].flatten().double() / scale + 4) * 2).floor().clamp(0, 15).long()
    direct = float(entropy(torch.bincount(idx, minlength=16).numpy()))
    assert value[3, "relu2", "entropy_norm_bits"] == pytest.approx(direct)
    assert 0 <= value[3, "relu2", "spatial_probe_acc"] <= 1
    peak = x["relu2"][:, [0, 2]].flatten(2).amax(2)
    assert best[3][1].tolist() == labels[peak.argmax(0)].tolist()
    again, _ = measure_pass(models, models[0], models[9], images, labels, ["relu1", "relu2"], [0, 2],
                            PassSettings(batch_size=15, probe_samples=20, bins=16, entropy_range=4.0))  # fmt: skip
    other = {(r["step"], r["layer"], r["measure"]): r["value"] for r in again}
    assert other[3, "relu1", "hoyer"] == pytest.approx(value[3, "relu1", "hoyer"])  # per image: batch-free


# ---------------------------------------------------------------- the trajectory stage


@pytest.mark.slow
def test_trajectory_stage_follows_every_checkpoint_and_ends_at_the_trained_network(stage_dir: Path) -> None:
    import pandas as pd

    for variant in ("dummy_steps", "untrained"):
        run = _train(variant)
        assert run_stage_main("trajectory", ["--variant", variant, "--seed", "0"]) == 0
        out = Path("trajectory") / variant / "seed0"
        table = pd.read_csv(out / "trajectory.csv")
        steps = [s for s, _ in saved_steps(run)]
        assert sorted(table["step"].unique()) == steps
        layers = {layer for layer in table["layer"].dropna().unique() if layer}
        assert layers == {"relu1", "relu2", "relu3"}
        measures = set(table["measure"])
        assert measures == {"hoyer", "entropy_norm_bits", "cka_to_initial", "cka_to_final", "spatial_probe_acc"} | {
            "test_acc"
        }
        final = table[table["step"] == steps[-1]]
        metrics = json.loads((Path("metrics/train") / f"{variant}_seed0.json").read_text())
        acc = float(final.loc[final["measure"] == "test_acc", "value"].iloc[0])
        assert acc == pytest.approx(metrics["test_acc"], abs=1e-5)
        cka = final[final["measure"] == "cka_to_final"]["value"]
        assert cka.to_numpy() == pytest.approx(1.0, abs=1e-5)
        maps = pd.read_csv(out / "maps.csv")
        assert len(maps) == 3 * len(steps) and set(maps["top_class"].astype(str)) <= {str(k) for k in range(10)}
        tensors = torch.load(out / "oips.pt", weights_only=True)
        assert tensors["images"].shape[:2] == (len(steps), 3) and tensors["steps"] == steps
    first = table  # the untrained network: one point, its own start and end
    assert first["step"].unique().tolist() == [0]


@pytest.mark.slow
def test_trajectory_stage_refuses_a_run_without_weights_along_training(
    stage_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _train("dummy")
    for _, path in saved_steps(run):
        path.unlink()
    assert run_stage_main("trajectory", ["--variant", "dummy", "--seed", "0"]) == 2
    assert "holds no weights along training" in capsys.readouterr().err
    assert not (Path("trajectory") / "dummy").exists()

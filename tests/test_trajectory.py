"""Issue 26: weights along training, the step-matched control, the trajectory stage, its figures,
the matched-step claim and the class selectivity of the maps."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import yaml

from cnnscope.compose import compose_params
from cnnscope.config import ConfigError
from cnnscope.layout import BEST_CKPT, EXEMPLARS, INITIAL_CKPT, LAST_CKPT, OIP_TABLE, OIP_TENSORS
from cnnscope.models import load_model
from cnnscope.models.steps import checkpoint_schedule, decade_steps, saved_steps, step_file
from cnnscope.report.assemble import Report
from conftest import conf_section, exemplar_knobs, synthetic_prepared, synthetic_study, write_params
from pipeline import run_stage_as_dvc

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
    raw = synthetic_study(
        tmp_path,
        {"max_epochs": 2, "patience": 1},
        {"variants": ["benchmark", "dummy", "dummy_steps", "untrained"], "seeds": [0], "oip_seeds": [0]},
    )
    raw["study"]["contrasts"] = [["benchmark", "dummy"], ["benchmark", "dummy_steps"]]
    raw["trajectory"].update(eval_samples=30, batch_size=10, probe_samples=20, maps=3, oip_steps=2)
    write_params(tmp_path, raw)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train(variant: str, seed: int = 0) -> Path:
    assert run_stage_as_dvc("train", ["--no-progress", "--variant", variant, "--seed", str(seed)]) == 0
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
    final, best = load_model(step_file(matched, 28)), load_model(matched / BEST_CKPT)
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), best.state_dict().values(), strict=True))
    first = load_model(step_file(matched, 0))
    initial = load_model(matched / INITIAL_CKPT)
    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), initial.state_dict().values(), strict=True)
    )
    assert not torch.equal(first.state_dict()["conv1.weight"], final.state_dict()["conv1.weight"])
    sizes = [p.stat().st_size for _, p in saved_steps(matched)]
    assert max(sizes) < (matched / LAST_CKPT).stat().st_size  # weights only: smaller than Lightning's state
    assert [s for s, _ in saved_steps(_train("untrained"))] == [0]


# ---------------------------------------------------------------- the trajectory's measures


def _direct_hoyer(x: torch.Tensor) -> float:
    flat = x.flatten(1).double()
    n = flat.shape[1]
    h = (n**0.5 - flat.abs().sum(1) / flat.norm(dim=1)) / (n**0.5 - 1)
    return float(h[torch.isfinite(h)].mean())


@pytest.mark.parametrize(("name", "channels", "size"), [("mnist_cnn", 1, 28), ("cifar_cnn", 3, 32)])
def test_chunked_outputs_in_reused_buffers_are_those_of_one_forward_pass(name: str, channels: int, size: int) -> None:
    """The pass runs a minibatch in chunks into buffers shared by every network: each network's maps
    are exactly those of one forward pass over the whole minibatch, whichever network filled the
    buffers before (a smaller last batch included), at the stages' one thread (``runtime.threads``; at
    two, a convolution's sums split by batch size). The logits of a chunk of a few images may differ
    in the last bit (another BLAS path for a thin matrix); they only feed an argmax."""
    from cnnscope.activations.capture import capture
    from cnnscope.trajectory.measures import FORWARD_CHUNK, _outputs
    from conftest import random_model

    data = synthetic_prepared(channels=channels, size=size)
    images = data.images[: 2 * FORWARD_CHUNK + 7]
    buffers: dict[str, torch.Tensor] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed, count in ((0, len(images)), (1, len(images)), (2, FORWARD_CHUNK + 3)):
            model = random_model(data, name, seed=seed).eval()
            layers = [*model.conv_layers, model.layer_names[-1]]
            got = _outputs(model, images[:count], layers, buffers)
            whole = capture(model, model.standardize(images[:count].float() / 255), layers)
            assert all(torch.equal(got[k], whole[k]) for k in model.conv_layers), seed
            logits = model.layer_names[-1]
            assert torch.allclose(got[logits], whole[logits], rtol=0, atol=1e-5)
            assert torch.equal(got[logits].argmax(1), whole[logits].argmax(1))
    finally:
        torch.set_num_threads(threads)
    assert buffers["relu1"].data_ptr() == got["relu1"].data_ptr()  # filled in place, not reallocated


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


def test_trajectory_tables_are_written_as_pandas_wrote_them() -> None:
    """The stage writes its CSVs without pandas (its memory); the bytes are what ``to_csv`` gave."""
    import io

    import pandas as pd

    from cnnscope.trajectory.run import write_csv

    rows = [
        {"step": 0, "layer": "relu1", "measure": "hoyer", "value": 0.123456789},
        {"step": 12, "layer": "", "measure": "test_acc", "value": 1.0},
        {"step": 3, "layer": "a,b", "measure": 'say "x"', "value": float("nan")},
        {"step": 4, "layer": "relu2", "measure": "m", "value": -0.0},
        {"step": 5, "layer": "relu3", "measure": "m", "value": 1.5e-12},
        {"step": 6, "layer": "relu3", "measure": "m", "value": float("-inf")},
        {"step": 7, "layer": "relu3", "measure": "m", "value": 123456789.0},
    ]
    columns = ["step", "layer", "measure", "value"]
    ours = io.StringIO()
    write_csv(ours, rows, columns)
    theirs = pd.DataFrame(rows, columns=columns).to_csv(index=False, float_format="%.6g")
    assert ours.getvalue() == theirs


# ---------------------------------------------------------------- the trajectory stage


@pytest.mark.slow
def test_trajectory_stage_follows_every_checkpoint_and_ends_at_the_trained_network(stage_dir: Path) -> None:
    import pandas as pd

    from cnnscope.trajectory.run import eval_images

    for variant in ("dummy_steps", "untrained"):
        run = _train(variant)
        assert run_stage_as_dvc("trajectory", ["--variant", variant, "--seed", "0"]) == 0
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
        images, labels = eval_images(synthetic_prepared(), 30, seed=0)
        best = load_model(run / BEST_CKPT)  # the step-matched control's best is its final network
        direct = float((best(best.standardize(images.float() / 255)).argmax(1) == labels).float().mean())
        acc = float(final.loc[final["measure"] == "test_acc", "value"].iloc[0])
        assert acc == pytest.approx(direct, abs=1e-5)
        cka = final[final["measure"] == "cka_to_final"]["value"]
        assert cka.to_numpy() == pytest.approx(1.0, abs=1e-5)
        maps = pd.read_csv(out / OIP_TABLE)
        assert len(maps) == 3 * len(steps) and set(maps["top_class"].astype(str)) <= {str(k) for k in range(10)}
        tensors = torch.load(out / OIP_TENSORS, weights_only=True)
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
    assert run_stage_as_dvc("trajectory", ["--variant", "dummy", "--seed", "0"]) == 2
    assert "holds no weights along training" in capsys.readouterr().err
    assert not (Path("trajectory") / "dummy").exists()


# ---------------------------------------------------------------- the matched-step claim and the report section


def _fake_trajectories(root: Path, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """benchmark (116 steps) and dummy (24 steps) trajectories whose relu3 Hoyer differs by +0.1 at
    step 20 (the largest step both hold) and by −0.2 at every other step."""
    import pandas as pd

    runs = {"benchmark": [0, 1, 2, 5, 10, 20, 50, 100, 116], "dummy": [0, 1, 2, 5, 10, 20, 24]}
    for variant, steps in runs.items():
        for seed in seeds:
            rows = []
            for step in steps:
                base = 0.3 + 0.01 * seed + 0.001 * step
                value = base + (0.1 if step == 20 else -0.2) * (variant == "benchmark")
                for layer in ("relu1", "relu3"):
                    rows += [
                        {"step": step, "layer": layer, "measure": "hoyer", "value": value},
                        {"step": step, "layer": layer, "measure": "cka_to_initial", "value": 1 / (1 + step)},
                    ]
                rows.append({"step": step, "layer": "", "measure": "test_acc", "value": step / 120})
            out = root / "trajectory" / variant / f"seed{seed}"
            out.mkdir(parents=True)
            pd.DataFrame(rows).to_csv(out / "trajectory.csv", index=False)
            maps = [0, 3]
            pd.DataFrame(
                [
                    {"step": s, "map": m, "top_value": 1.0, "top_class": "4", "oip_objective": 1.0}
                    for s in steps
                    for m in maps
                ]
            ).to_csv(out / OIP_TABLE, index=False)
            torch.save(
                {"steps": steps, "layer": "relu3", "maps": maps, "images": torch.rand(len(steps), 2, 1, 8, 8).half()},
                out / OIP_TENSORS,
            )


def test_matched_step_claim_compares_the_largest_step_both_runs_hold(tmp_path: Path) -> None:
    from cnnscope.analysis.claim_family import COLUMNS
    from cnnscope.analysis.claims import matched_step_claims
    from cnnscope.trajectory.collect import read_trajectories

    _fake_trajectories(tmp_path)
    table = read_trajectories(tmp_path / "trajectory", ["benchmark", "dummy"], [0, 1, 2])
    compare = conf_section("compare")
    claims = matched_step_claims(table, [["benchmark", "dummy"]], "relu3", compare["confidence"], compare["sesoi"])
    assert list(claims.columns) == COLUMNS and len(claims) == 1
    row = claims.iloc[0]
    assert row["claim"] == "a" and "step 20" in row["measure"] and row["layer"] == "relu3"
    assert row["mean_difference"] == pytest.approx(0.1) and row["n_seeds"] == 3 and row["verdict"] == "holds"
    same_length = table[table["variant"] == "benchmark"].assign(variant="other")
    both = matched_step_claims(
        pd_concat(table, same_length), [["benchmark", "other"]], "relu3", compare["confidence"], compare["sesoi"]
    )
    assert both.empty  # runs of equal length: the ordinary claim (a) already compares them


def pd_concat(*frames: object) -> object:
    import pandas as pd

    return pd.concat(frames, ignore_index=True)  # type: ignore[arg-type]


def test_report_trajectory_section_draws_figures_and_joins_the_claims_table(tmp_path: Path) -> None:
    from dataclasses import replace

    from cnnscope.config import validate
    from cnnscope.report import findings
    from cnnscope.report.trajectory import matched_claims, trajectory_section

    _fake_trajectories(tmp_path)
    raw = compose_params(["study.variants=[benchmark,dummy]", "study.contrasts=[[benchmark,dummy]]"])
    params = validate(raw)
    report = Report(tmp_path / "report")
    trajectory_section(report, params, tmp_path, chance=0.1)
    text = "\n".join(report.lines)
    assert "at step 20" in text and "**holds**" in text
    for name in ("accuracy.png", "measures.png", "oip_strip_benchmark.png", "oip_strip_dummy.png"):
        assert (tmp_path / "report" / "figures" / "trajectory" / name).stat().st_size > 1000
    compare, matched = params.compare, matched_claims(params, tmp_path)
    inputs = findings.ClaimInputs(
        {}, params.study.contrasts, compare.confidence, compare.sesoi, compare.min_converged, [], matched
    )
    claims = findings.claims_frame(tmp_path / "none", inputs)
    assert len(claims) == 1 and "step 20" in claims["measure"].iloc[0]
    empty = Report(tmp_path / "empty")
    trajectory_section(empty, replace(params, trajectory=replace(params.trajectory, out_dir="nowhere")), tmp_path, 0.1)
    assert any("No trajectories" in line for line in empty.lines)


def test_trajectory_figures_use_a_log_step_axis() -> None:
    import numpy as np
    import pandas as pd

    from cnnscope.viz.trajectory import measure_grid, oip_strip

    table = pd.DataFrame(
        [
            {"variant": "a", "seed": s, "step": t, "layer": "relu1", "measure": "hoyer", "value": t + s}
            for s in (0, 1)
            for t in (0, 1, 10)
        ]
    )
    fig = measure_grid(table, ["a"], ["relu1"])
    ax = fig.axes[0]
    assert ax.get_xscale() == "symlog"
    assert list(ax.lines[0].get_ydata()) == [0.5, 1.5, 10.5]  # the mean over seeds
    for channels in (1, 3):  # grey and colour OIPs
        images = np.arange(3 * 2 * channels * 16, dtype=float).reshape(3, 2, channels, 4, 4)
        strip = oip_strip(images, [0, 1, 10], [5, 7], np.array([["cat", "dog"]] * 3), "t")
        texts = [t.get_text() for t in strip.axes[0].texts]
        assert texts.count("cat") == 3 and texts.count("dog") == 3  # each tile titled with its top class
        assert {"map 5", "map 7", "0", "10"} <= set(texts)  # rows named by map, columns by step
        shown = strip.axes[0].images[0].get_array()
        tiles = shown[shown[..., 3] == 1.0][:, :3]  # the opaque pixels: the 6 tiles, each scaled to [0, 1]
        assert tiles.shape == (6 * 16, 3) and tiles.min() == 0.0 and tiles.max() == 1.0


# ---------------------------------------------------------------- class selectivity of the maps


def test_class_selectivity_is_one_for_one_class_and_zero_for_all_different() -> None:
    import numpy as np

    from cnnscope.analysis.selectivity import map_selectivity

    labels = np.array([[3] * 9, list(range(9)), [1, 1, 1, 1, 1, 2, 2, 3, 4], [0] * 9])
    values = np.array([[1.0] * 9, [1.0] * 9, [1.0] * 9, [0.0] * 9])  # the last map is silent on data
    table = map_selectivity(labels, values, num_classes=10)
    assert table["selectivity"].iloc[0] == pytest.approx(1.0) and table["selectivity"].iloc[1] == pytest.approx(0.0)
    p = np.array([5, 2, 1, 1]) / 9
    assert table["selectivity"].iloc[2] == pytest.approx(1 + (p * np.log2(p)).sum() / np.log2(9))
    assert table["dominant"].tolist()[:3] == [3, 0, 1] and table["dominant_share"].iloc[2] == pytest.approx(5 / 9)
    assert np.isnan(table["selectivity"].iloc[3]) and bool(table["silent"].iloc[3])


def test_selectivity_contrasts_and_paragraph_say_which_variant_is_more_selective() -> None:
    import pandas as pd

    from cnnscope.analysis.selectivity import layer_contrasts, layer_summary, paragraph

    rows = []
    for variant, sel in (("benchmark", 0.8), ("dummy", 0.5), ("untrained", 0.2)):
        for seed in (0, 1, 2):
            for m in range(4):
                s = sel + 0.01 * seed + 0.02 * m
                rows.append({"variant": variant, "seed": seed, "layer": "relu3", "map": m, "selectivity": s,
                             "dominant": m % 2, "dominant_share": s, "silent": False})  # fmt: skip
    maps = pd.DataFrame(rows)
    summary = layer_summary(maps)
    assert summary[summary["variant"] == "benchmark"]["mostly_one_class"].tolist() == [1.0, 1.0, 1.0]
    contrasts = layer_contrasts(summary, [["benchmark", "dummy"]], "untrained", conf_section("compare")["confidence"])
    verdicts = dict(zip(contrasts["reference"], contrasts["verdict"], strict=True))
    assert verdicts == {"dummy": "holds", "untrained": "holds"}
    assert contrasts.set_index("reference").loc["dummy", "mean_difference"] == pytest.approx(0.3)
    text = paragraph("relu3", summary, contrasts, ["zero", "one"], maps)
    assert text.startswith("`relu3` — benchmark: 100% of live maps respond mostly to one class")
    assert "dummy: 0% of live maps" not in text and "benchmark − dummy: +0.300" in text and "zero (6)" in text


def test_report_selectivity_section_reads_the_exemplars_of_every_network(tmp_path: Path) -> None:
    from cnnscope.activations.exemplars import find_exemplars, save_exemplars, split_images
    from cnnscope.config import validate
    from cnnscope.report.selectivity import map_table, selectivity_section
    from conftest import random_model

    data = synthetic_prepared()
    data.save(tmp_path / "data" / "prepared")
    images, ids = split_images(data, "test")
    for i, variant in enumerate(("benchmark", "dummy", "untrained")):
        for seed in (0, 1, 2):
            model = random_model(data, seed=10 * i + seed, width=0.25, hidden=8)
            found = find_exemplars(
                model, images, ids, ["pool2", "relu3"], **exemplar_knobs(k=9, n_median=1, median_sample=20)
            )
            out = tmp_path / "exemplars" / variant / f"seed{seed}"
            out.mkdir(parents=True)
            save_exemplars(found, out / EXEMPLARS)
    raw = compose_params(["study.variants=[benchmark,dummy,untrained]", "study.contrasts=[[benchmark,dummy]]"])
    params = validate(raw)
    maps = map_table(params, tmp_path, data)
    one = maps[(maps["variant"] == "dummy") & (maps["seed"] == 1) & (maps["layer"] == "relu3")]
    assert len(maps) == 3 * 3 * (16 + 32) and len(one) == 32
    last = find_exemplars(random_model(data, seed=22, width=0.25, hidden=8), images, ids, ["relu3"],
                          **exemplar_knobs(k=9, n_median=1, median_sample=20))["relu3"]  # fmt: skip
    labels = data.labels[last.image_ids[0]]
    row = maps[(maps["variant"] == "untrained") & (maps["seed"] == 2) & (maps["layer"] == "relu3")].iloc[0]
    assert row["dominant"] == int(torch.bincount(labels, minlength=10).argmax())
    report = Report(tmp_path)
    selectivity_section(report, params, tmp_path)
    text = "\n".join(report.lines)
    assert "`relu3` — benchmark:" in text and "benchmark − dummy:" in text and "benchmark − untrained:" in text

"""OIP generation: the method finds known patterns, flags dead maps, batches exactly, and the
stage writes complete, deterministic outputs (or one clear error)."""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from cnnscope.config import load_params
from cnnscope.layout import OIP_TABLE, OIP_TENSORS, best_checkpoint
from cnnscope.models import LayeredCNN, save_checkpoint
from cnnscope.oip import (
    OIPError,
    OIPResult,
    OIPSettings,
    cross_map_similarity,
    generate,
    generate_node_oips,
    generate_oips,
    map_table,
    robustness,
    shared_start_similarity,
    summary,
)
from cnnscope.oip.ascent import ascend, frozen
from cnnscope.oip.generate import ascent_net
from cnnscope.oip.objectives import MapMean
from cnnscope.oip.param import initial_noise, wavelength_noise
from cnnscope.oip.transforms import fourier_damping, gaussian_blur, suppression
from conftest import random_model, synthetic_prepared
from pipeline import run_stage_as_dvc

REPO = Path(__file__).resolve().parents[1]
#: The configured ascent (noise, suppression: conf/oip/default.yaml), made small.
CONFIGURED = OIPSettings.from_config(load_params(REPO / "params.yaml").oip)
FAST = replace(CONFIGURED, steps=8, step_size=0.1, restarts=(0, 1), wavelengths=(1, 4))


def planted_net(kernel: torch.Tensor, bias: float = 0.0) -> LayeredCNN:
    """A one-layer network: map 0 is the planted ``kernel`` (+ ``bias``), map 1 can never activate
    (zero weights, negative bias), map 2 is random.

    A bias larger than any ``<kernel, image>`` of a standardised image keeps map 0's ReLU open from
    every start, so each restart sees the kernel's gradient (with zero bias, starts whose response is
    negative are dead — which the multi-restart design exists for)."""
    conv = nn.Conv2d(1, 3, kernel.shape[-1], bias=True)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.bias[0] = bias
        conv.weight[0, 0] = kernel
        conv.bias[1] = -1.0
        conv.weight[2].normal_(generator=torch.Generator().manual_seed(0))
    layers: OrderedDict[str, nn.Module] = OrderedDict(conv1=conv, relu1=nn.ReLU())
    return LayeredCNN(layers, in_channels=1, image_size=12, mean=[0.5], std=[0.25])


def diagonal_kernel(size: int = 12) -> torch.Tensor:
    """A bright diagonal bar on a dark background (zero mean), as big as the image."""
    kernel = -torch.ones(size, size)
    for i in range(size):
        kernel[i, max(0, i - 1) : i + 2] = 2.0
    return kernel - kernel.mean()


def test_oip_of_planted_kernel_reproduces_its_pattern() -> None:
    kernel = diagonal_kernel()
    bias = float(kernel.norm()) * 12 + 1  # ‖x‖ = 12 for a standardised 12×12 image
    result = generate_oips(
        planted_net(kernel, bias),
        "relu1",
        [0],
        replace(FAST, restarts=(0, 1, 2), wavelengths=(1, 3), steps=60, step_size=0.1, blur_sigma=0.0),
        (),
    )
    flat = result.images[0].flatten(2)  # (K, W, H*W)
    corr = torch.stack([torch.corrcoef(torch.stack([img, kernel.flatten()]))[0, 1] for img in flat.flatten(0, 1)])
    assert corr.min() > 0.9, corr
    table = map_table(result)
    assert table.loc[0, "robustness"] > 0.8
    assert not table.loc[0, "dead"]
    assert table.loc[0, "best_activation"] > table.loc[0, "start_activation"]


def test_map_that_never_activates_is_flagged_dead_with_finite_numbers() -> None:
    result = generate_oips(planted_net(diagonal_kernel()), "relu1", [0, 1, 2], FAST, ())
    table = map_table(result)
    assert table["dead"].tolist() == [False, True, False]
    assert not bool(result.grad_seen[1].any())
    numbers = table.select_dtypes("number")
    assert torch.isfinite(torch.tensor(numbers.to_numpy(dtype=float))).all()
    assert torch.isfinite(result.images).all() and torch.isfinite(result.history).all()
    assert not table.loc[1, "converged"]
    stats = summary(table)
    assert stats["dead_fraction"] == pytest.approx(1 / 3)
    assert all(v == v for v in stats.values())  # no NaN


def test_silent_start_and_cross_map_null() -> None:
    """Claim (c): a map silent at the start for every restart of a wavelength is counted per
    wavelength; claim (d): OIPs of one map are compared with those of different maps."""
    result = generate_oips(planted_net(diagonal_kernel()), "relu1", [0, 1, 2], FAST, ())
    table = map_table(result)
    start = result.history[0]
    for j, w in enumerate(result.wavelengths):
        assert table[f"silent_start_wl{w}"].tolist() == (start[:, :, j] <= 0).all(dim=1).tolist()
        assert table[f"start_activation_wl{w}"].tolist() == start[:, :, j].max(dim=1).values.tolist()
    assert table.loc[1, "silent_start_wl1"]  # the dead map never fires
    live = ~torch.tensor(table["dead"].to_numpy(dtype=bool))
    images = result.images[live].flatten(-3)  # (2, K, W, D)
    restarts, wavelengths = images.shape[1], images.shape[2]
    shared = torch.stack(
        [torch.corrcoef(images[:, k, w])[0, 1] for k in range(restarts) for w in range(wavelengths)]
    ).mean()
    crossed = torch.stack(
        [
            torch.corrcoef(torch.stack([images[0, k, w], images[1, j, w]]))[0, 1]
            for k in range(restarts)
            for j in range(restarts)
            if j != k
            for w in range(wavelengths)
        ]
    ).mean()
    assert cross_map_similarity(result.images, live) == pytest.approx(float(crossed), abs=1e-5)
    assert shared_start_similarity(result.images, live) == pytest.approx(float(shared), abs=1e-5)
    stats = summary(table, cross_map_similarity(result.images, live), shared_start_similarity(result.images, live))
    assert stats["silent_start_fraction_wl1"] == pytest.approx(float(table["silent_start_wl1"].mean()))
    assert stats["cross_map_similarity"] == pytest.approx(float(crossed), abs=1e-5)
    assert stats["shared_start_similarity"] == pytest.approx(float(shared), abs=1e-5)


def test_cross_map_null_pairs_different_starts() -> None:
    """The null of claim (d) differs from the same-map pairs in the map only: OIPs that are nothing
    but their start noise (every map the same image per restart) show a high shared-start
    similarity, yet the same-map and cross-map similarities stay equal (both pair different
    starts), so the claim's margin is ~0, not negative; OIPs that depend on the map only give a
    same-map similarity of 1 against a low cross-map one. Shapes (M, K, W, C, H, W) with K ≠ W."""
    gen = torch.Generator().manual_seed(0)
    maps, restarts, wavelengths = 5, 3, 2
    live = torch.ones(maps, dtype=torch.bool)
    noise = torch.randn(1, restarts, wavelengths, 1, 8, 8, generator=gen).expand(maps, -1, -1, -1, -1, -1)
    same = robustness(noise).mean()
    assert shared_start_similarity(noise, live) == pytest.approx(1.0, abs=1e-5)
    assert cross_map_similarity(noise, live) == pytest.approx(float(same), abs=1e-5)
    pattern = torch.randn(maps, 1, 1, 1, 8, 8, generator=gen).expand(-1, restarts, wavelengths, -1, -1, -1)
    assert float(robustness(pattern).mean()) == pytest.approx(1.0, abs=1e-5)
    flat = pattern.flatten(-3)[:, 0, 0]
    between = torch.corrcoef(flat)[~torch.eye(maps, dtype=torch.bool)].mean()
    assert cross_map_similarity(pattern, live) == pytest.approx(float(between), abs=1e-5)
    assert cross_map_similarity(noise[:1], live[:1]) == 0.0  # one live map: no pair, finite


def test_all_dead_layer_gives_finite_summary() -> None:
    net = planted_net(diagonal_kernel())
    stats = summary(map_table(generate_oips(net, "relu1", [1], FAST, ())))
    assert stats["dead_fraction"] == 1.0 and stats["median_robustness"] == 0.0


def test_batched_equals_one_map_at_a_time() -> None:
    model = random_model(synthetic_prepared(n_per_class=2))
    batch = generate_oips(model, "relu3", [3, 17, 40], FAST, snapshots=[0, 8])
    for i, m in enumerate(batch.maps):
        single = generate_oips(model, "relu3", [m], FAST, snapshots=[0, 8])
        torch.testing.assert_close(single.images[0], batch.images[i], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(single.history[:, 0], batch.history[:, i], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    ("settings", "exact"),
    [
        (FAST, True),
        (replace(FAST, jitter=2, scale=0.1, rotate=10.0, anneal=True), True),  # per-step draws shared by the passes
        (replace(FAST, parameterization="fourier", init_scale=0.5), False),  # FFTs of a batch: rounding
        (replace(FAST, suppress="fourier", fourier_damping=0.2), False),
    ],
    ids=["pixel", "transforms", "fourier", "fourier-damping"],
)
def test_ascent_in_cpu_passes_gives_the_one_batch_numbers(
    settings: OIPSettings, exact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU batch split into cache-sized passes: the same images, objectives, snapshots and dead
    flags as the whole batch in one pass, maps and nodes alike — bit for bit with the pixel recipe;
    to float rounding where the ascent takes FFTs (pocketfft vectorises across a batch)."""

    def same(a: torch.Tensor, b: torch.Tensor) -> None:
        if exact or not a.is_floating_point():
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    model = random_model(synthetic_prepared(n_per_class=2))
    whole = generate_oips(model, "relu2", [0, 3, 7, 9, 12], settings, snapshots=[0, 4, 8])
    nodes_whole = generate_node_oips(model, 3, "relu3", settings)
    per_image = 32 * 26 * 26 * 4  # conv1 of mnist_cnn: the largest activation of the ascent
    monkeypatch.setattr(generate, "CPU_PASS_BYTES", 3 * per_image)  # 20 candidates → 7 passes
    net = ascent_net(model, "relu2")
    start = torch.zeros(20, 1, 28, 28)
    passes = generate.pass_rows(net, start)
    assert [(p.start, p.stop) for p in passes] == [(0, 3), (3, 6), (6, 9), (9, 11), (11, 14), (14, 17), (17, 20)]
    split = generate_oips(model, "relu2", [0, 3, 7, 9, 12], settings, snapshots=[0, 4, 8])
    nodes_split = generate_node_oips(model, 3, "relu3", settings)
    for name in ("images", "history", "grad_seen", "mean_image_activation", "baseline_activation"):
        same(getattr(split, name), getattr(whole, name))
    for step in (0, 4, 8):
        same(split.snapshots[step], whole.snapshots[step])
    for name in ("images", "activation", "wavelength", "dead"):
        same(getattr(nodes_split, name), getattr(nodes_whole, name))
    assert generate.pass_rows(net, start.to("meta")) == [slice(0, 20)]  # off the CPU: one pass


@pytest.mark.parametrize("layer", ["pool1", "relu3"])
def test_pool_before_relu_changes_no_number_of_the_ascent(layer: str) -> None:
    """The reordered ascent net is a speed-up only: same objective values, same images."""
    model = random_model(synthetic_prepared(n_per_class=2))
    start = initial_noise([0, 1], [1, 4], 1, 28).flatten(0, 1).repeat(3, 1, 1, 1)
    objective = MapMean(torch.tensor([0, 5, 9]).repeat_interleave(4))
    blur = suppression("blur", 0.5, FAST.fourier_damping)
    plain, reordered = model.truncated(layer), ascent_net(model, layer)
    assert list(dict(reordered.named_children())) != list(dict(plain.named_children()))
    with frozen(plain):
        expected = ascend(plain, start, objective, 6, 0.1, blur, None, (), None, False)
    with frozen(reordered):
        got = ascend(reordered, start, objective, 6, 0.1, blur, None, (), None, False)
    assert expected.grad_seen.any()
    torch.testing.assert_close(got.history, expected.history, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got.images, expected.images, atol=1e-5, rtol=1e-5)


def test_ascent_raises_objective_and_leaves_model_unchanged() -> None:
    model = random_model(synthetic_prepared(n_per_class=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    result = generate_oips(model, None, [0, 1, 2, 3], FAST, snapshots=[0, 4, 8])
    assert result.layer == "relu3"  # default: the deepest conv map
    live = result.grad_seen.any(dim=(1, 2))
    assert (result.final.amax(dim=(1, 2)) >= result.history[0].amax(dim=(1, 2)))[live].all()
    assert sorted(result.snapshots) == [0, 4, 8]
    torch.testing.assert_close(result.snapshots[8], result.images)
    std = result.images.flatten(-2).std(dim=-1)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-4, rtol=0)  # re-standardised
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in model.parameters()] == flags


def test_same_seed_same_numbers() -> None:
    model = random_model(synthetic_prepared(n_per_class=2))
    a = generate_oips(model, None, [5, 6], replace(FAST, jitter=2), ())
    b = generate_oips(model, None, [5, 6], replace(FAST, jitter=2), ())
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)


def test_per_node_mode_covers_every_node_and_prefers_its_location() -> None:
    kernel = torch.zeros(3, 3)
    kernel[1, 1] = 1.0  # map 0 copies the pixel under each node
    net = planted_net(kernel, bias=13.0)  # |pixel| ≤ 12 after standardisation: always active
    nodes = generate_node_oips(
        net, 0, "relu1", replace(FAST, restarts=(0,), wavelengths=(1,), steps=30, step_size=0.2, blur_sigma=0)
    )
    assert nodes.images.shape[:2] == (10, 10) and not nodes.dead.any()
    peaks = nodes.images[..., 0, :, :].flatten(2).argmax(dim=-1)  # brightest pixel of each node's OIP
    ys, xs = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    assert torch.equal(peaks, (ys + 1) * 12 + xs + 1)


def test_noise_wavelength_controls_smoothness() -> None:
    gen = torch.Generator().manual_seed(0)
    for kind in ("grid", "fourier"):
        rough = wavelength_noise(16, 1, 28, 1, gen, kind)
        smooth = wavelength_noise(16, 1, 28, 8, gen, kind)
        for img in (rough, smooth):
            torch.testing.assert_close(img.mean(dim=(-2, -1)), torch.zeros(16, 1), atol=1e-5, rtol=0)

        def neighbour_corr(x: torch.Tensor) -> float:
            return float(torch.corrcoef(torch.stack([x[..., :-1].flatten(), x[..., 1:].flatten()]))[0, 1])

        assert neighbour_corr(smooth) > 0.8 > 0.3 > neighbour_corr(rough)
    a = initial_noise([0, 1], [1, 4], 1, 28)
    b = initial_noise([1], [4], 1, 28)
    assert torch.equal(a[1, 1], b[0, 0])  # an image depends only on its (restart, wavelength)


def test_suppression_damps_high_frequencies() -> None:
    checker = (torch.arange(16).view(1, -1) + torch.arange(16).view(-1, 1)) % 2 * 2.0 - 1.0
    images = checker.expand(2, 1, 16, 16)
    for transform in (gaussian_blur(1.0), fourier_damping(0.5)):
        assert transform(images).abs().max() < 0.6


def test_robustness_is_one_for_identical_and_finite_for_flat_images() -> None:
    img = torch.randn(1, 1, 4, 4)  # one wavelength
    assert robustness(torch.stack([img, img, img])).item() == pytest.approx(1.0)
    assert robustness(torch.stack([img, -img])).item() == pytest.approx(-1.0)
    assert robustness(torch.zeros(2, 1, 1, 4, 4)).item() == 0.0
    with pytest.raises(ValueError, match="at least 2 restarts"):
        robustness(img.unsqueeze(0))


def _restart_correlations(images: torch.Tensor) -> torch.Tensor:
    """``(M, W)``: the mean Pearson correlation over pairs of restarts of ``images`` ``(M, K, W, C, H, W)``,
    straight from ``torch.corrcoef`` (the definition in docs/measures.md)."""
    m, k, w = images.shape[:3]
    off_diagonal = ~torch.eye(k, dtype=torch.bool)
    return torch.tensor([[float(torch.corrcoef(images[i, :, j].flatten(1))[off_diagonal].mean()) for j in range(w)]
                         for i in range(m)])  # fmt: skip


def _agreeing_restarts(k: int = 3, w: int = 2) -> torch.Tensor:
    """``(1, K, W, 1, 6, 6)``: at every wavelength the K restarts reach one pattern (at different
    contrasts), and each wavelength has its own pattern, so restarts agree and wavelengths do not."""
    gen = torch.Generator().manual_seed(0)
    per_wavelength = torch.randn(1, 1, w, 1, 6, 6, generator=gen)
    contrast = torch.arange(1.0, k + 1).view(1, k, 1, 1, 1, 1)
    return per_wavelength * contrast


def test_robustness_compares_restarts_at_each_wavelength() -> None:
    """3 restarts × 2 wavelengths: a swapped axis would give 3 numbers per map, each the
    (low) agreement between wavelengths."""
    images = _agreeing_restarts(k=3, w=2)
    torch.testing.assert_close(robustness(images), torch.ones(1, 2))
    noisy = images + torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(robustness(noisy), _restart_correlations(noisy))


def test_map_table_robustness_is_agreement_of_restarts_at_the_best_wavelength() -> None:
    """2 maps × 3 restarts × 2 wavelengths: map 0 is best at wavelength 0, map 1 at wavelength 1;
    the table's robustness is the restarts' agreement there, and its mean over wavelengths is what
    the summary compares with the cross-map null."""
    gen = torch.Generator().manual_seed(2)
    k, w = 3, 2
    images = torch.cat([_agreeing_restarts(k, w), torch.randn(1, k, w, 1, 6, 6, generator=gen)])
    final = torch.zeros(2, k, w)
    final[0, 1, 0] = final[1, 2, 1] = 5.0
    result = OIPResult(
        layer="relu1",
        maps=[0, 1],
        restarts=[10, 11, 12],
        wavelengths=[1, 3],
        start=torch.zeros(k, w, 1, 6, 6),
        images=images,
        history=torch.stack([torch.ones(2, k, w), final]),
        snapshots={},
        grad_seen=torch.ones(2, k, w, dtype=torch.bool),
        mean_image_activation=torch.zeros(2),
        baseline_activation=torch.zeros(2),
    )
    table = map_table(result)
    expected = _restart_correlations(images)
    assert table["best_restart"].tolist() == [11, 12] and table["best_wavelength"].tolist() == [1, 3]
    assert table.loc[0, "robustness"] == pytest.approx(1.0, abs=1e-5)
    assert table["robustness"].tolist() == pytest.approx([float(expected[0, 0]), float(expected[1, 1])], abs=1e-5)
    assert table["robustness_all_wavelengths"].tolist() == pytest.approx(expected.mean(dim=1).tolist(), abs=1e-5)
    assert summary(table)["same_map_similarity"] == pytest.approx(float(expected.mean()), abs=1e-5)


@pytest.mark.parametrize(
    ("request_", "settings", "needle"),
    [
        ({"layer": "conv9"}, {}, "valid layers are: conv1, relu1"),
        ({"maps": [128]}, {}, "valid maps are 0..127"),
        ({}, {"wavelengths": (29,)}, "1..28 pixels"),
        ({}, {"steps": 0}, "at least 1 step"),
        ({}, {"restarts": (0,)}, "at least 2"),
        ({"snapshots": [50]}, {}, "valid steps are 0..8"),
    ],
)
def test_bad_requests_name_what_is_valid(request_: dict[str, object], settings: dict[str, object], needle: str) -> None:
    model = random_model(synthetic_prepared(n_per_class=2))
    with pytest.raises(OIPError, match=needle.replace("(", r"\(")):
        request = {"layer": None, "maps": None, "snapshots": ()} | request_
        generate_oips(model, **request, settings=replace(FAST, **settings))  # type: ignore[arg-type]


# --- the stage ------------------------------------------------------------------------------------


def _stage_repo(tmp_path: Path, oip: dict[str, object]) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["oip"].update(oip)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    model = random_model(synthetic_prepared(n_per_class=2))
    save_checkpoint(model, best_checkpoint(tmp_path / "models", "benchmark", 0))
    return tmp_path


def _run_stage(cwd: Path, *args: str) -> int:
    return run_stage_as_dvc("oip", list(args), cwd)


@pytest.mark.slow
def test_stage_writes_figures_tables_metrics_deterministically(tmp_path: Path) -> None:
    repo = _stage_repo(tmp_path, {"maps": [0, 1, 2, 3, 4, 5], "steps": 6, "snapshots": [0, 3, 6]})
    assert _run_stage(repo, "--variant", "benchmark", "--seed", "0") == 0
    out = repo / "oip" / "benchmark" / "seed0"
    index = json.loads((out / "index.json").read_text())
    for entry in index["figures"]:
        assert (out / entry["path"]).stat().st_size > 0 and entry["caption"]
    assert {e["path"] for e in index["figures"]} == {"oip_grid.png", "evolution.png", "wavelengths.png", "nodes.png"}
    metrics = json.loads((repo / "metrics" / "oip" / "benchmark_seed0.json").read_text())
    assert metrics["maps"] == 6 and 0 <= metrics["dead_fraction"] <= 1
    assert "per_map" not in metrics  # per-map numbers live in maps.csv, not in `dvc metrics show`
    assert sorted(pd.read_csv(out / OIP_TABLE)["map"]) == [0, 1, 2, 3, 4, 5]
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert _run_stage(repo, "--variant", "benchmark", "--seed", "0") == 0
    second = {p.name: p.read_bytes() for p in out.iterdir()}
    assert first.keys() == second.keys()
    for name in first:
        if name != OIP_TENSORS:  # torch.save may embed a random serialization id: compare its tensors
            assert first[name] == second[name], name
    a, b = (torch.load(io.BytesIO(run[OIP_TENSORS]), weights_only=True) for run in (first, second))
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["history"], b["history"])


@pytest.mark.parametrize(
    ("oip", "needle"),
    [
        ({"layer": "nope"}, "valid layers are"),
        ({"maps": [0, 999]}, "use indices 0..127"),
        ({"wavelengths": [64]}, "1..28 pixels"),
        ({"steps": 0}, "oip.steps=0 is out of range"),
    ],
)
def test_stage_bad_input_one_message_no_output(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    oip: dict[str, object],
    needle: str,
) -> None:
    repo = _stage_repo(tmp_path, oip)
    assert _run_stage(repo, "--variant", "benchmark", "--seed", "0") != 0
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (repo / "oip").exists() and not (repo / "metrics").exists()


@pytest.mark.slow
def test_stage_on_a_dense_layer_has_no_node_grid(tmp_path: Path) -> None:
    repo = _stage_repo(tmp_path, {"layer": "relu_fc1", "maps": [0, 1, 2], "steps": 3, "snapshots": [0, 3]})
    assert _run_stage(repo, "--variant", "benchmark", "--seed", "0") == 0
    index = json.loads((repo / "oip" / "benchmark" / "seed0" / "index.json").read_text())
    assert {e["path"] for e in index["figures"]} == {"oip_grid.png", "evolution.png", "wavelengths.png"}

"""OIP parameterisations for colour images: the spectrum's 1/f scaling, the data's decorrelated
colour space, transformation robustness, determinism, a planted colour pattern recovered, and the
config keys that select them."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from cnnscope.config import ConfigError, load_params, validate
from cnnscope.models import LayeredCNN, save_checkpoint
from cnnscope.oip import OIPError, OIPSettings, generate_oips, map_table
from cnnscope.oip.color import ValidImage, colour_covariance, sqrt_psd
from cnnscope.oip.spectral import FourierImage, spectrum_scale
from cnnscope.oip.transforms import RandomAffine
from conftest import random_model, synthetic_prepared
from pipeline import run_stage_as_dvc

REPO = Path(__file__).resolve().parents[1]

#: The configured ascent (conf/oip/default.yaml) switched to the spectral parameterisation, made small.
CONFIGURED = OIPSettings.from_config(load_params(REPO / "params.yaml").oip)
FOURIER = replace(CONFIGURED, steps=8, step_size=0.1, restarts=(0, 1), wavelengths=(1, 4), parameterization="fourier")


def correlated_images(n: int = 40, size: int = 6, seed: int = 0) -> torch.Tensor:
    """uint8 colour images whose channels share a common component (like natural images)."""
    gen = torch.Generator().manual_seed(seed)
    common = torch.rand(n, 1, size, size, generator=gen)
    own = torch.rand(n, 3, size, size, generator=gen)
    mix = torch.tensor([0.8, 0.6, 0.3]).view(1, 3, 1, 1)
    return ((mix * common + (1 - mix) * own) * 255).round().to(torch.uint8)


def test_spectrum_scale_is_one_over_frequency_to_the_decay() -> None:
    size, decay = 16, 1.3
    scale = spectrum_scale(size, size, decay)
    assert scale.shape == (16, 9)
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :]
    freq = np.sqrt(fy**2 + fx**2)
    expected = 1.0 / np.maximum(freq, 1.0 / size) ** decay
    expected /= np.sqrt((expected**2).mean())
    np.testing.assert_allclose(scale.numpy(), expected, rtol=1e-5)
    # the amplitude ratio of two bins is the inverse ratio of their frequencies to the decay
    assert scale[0, 2] / scale[0, 4] == pytest.approx(2**decay, rel=1e-5)
    assert scale[0, 0] == pytest.approx(float(scale[0, 1]))  # DC clamped to the lowest frequency
    assert torch.allclose(spectrum_scale(8, 8, 0.0), torch.ones(8, 5))


def test_fourier_image_applies_the_scaling_and_round_trips() -> None:
    valid = ValidImage(torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.2, 0.2]))
    param = FourierImage(16, valid, decay=1.0)
    u = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    params = param.init(u)
    assert params.shape == (2, 3, 16, 9, 2)
    torch.testing.assert_close(param.colours(params), u, atol=1e-5, rtol=0)
    # what the image's spectrum is: the variables times the 1/f scale
    coefficients = torch.view_as_complex(params)
    torch.testing.assert_close(torch.fft.rfft2(param.colours(params), norm="ortho"), coefficients * param.scale)
    # white variables → an image whose amplitude falls as 1/f
    flat = torch.view_as_real(torch.ones(1, 1, 16, 9, dtype=torch.complex64)).contiguous()
    one = FourierImage(16, ValidImage(torch.tensor([0.5]), torch.tensor([0.2])), 1.0)  # natural images' 1/f
    amplitude = torch.fft.rfft2(one.colours(flat), norm="ortho").abs()[0, 0]
    assert amplitude[0, 1] / amplitude[0, 8] == pytest.approx(8.0, rel=1e-4)


def test_colour_covariance_matches_the_direct_formula_and_whitens() -> None:
    images = correlated_images()
    mean, cov = colour_covariance(images, chunk=7)  # chunks that do not divide N
    pixels = images.double().div(255).permute(1, 0, 2, 3).reshape(3, -1).numpy()
    np.testing.assert_allclose(mean.numpy(), pixels.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(cov.numpy(), np.cov(pixels), rtol=1e-4)
    root = sqrt_psd(cov)
    torch.testing.assert_close(root, root.T)
    torch.testing.assert_close(root @ root, cov, atol=1e-6, rtol=1e-4)
    whitened = np.linalg.solve(root.double().numpy(), pixels - pixels.mean(axis=1, keepdims=True))
    np.testing.assert_allclose(np.cov(whitened), np.eye(3), atol=1e-4)


def test_valid_image_is_bounded_and_has_the_data_statistics_to_first_order() -> None:
    mean, std = torch.tensor([0.5, 0.45, 0.4]), torch.tensor([0.25, 0.24, 0.26])
    _, cov = colour_covariance(correlated_images())
    root = sqrt_psd(cov)
    valid = ValidImage(mean, std, root)
    big = valid(100 * torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1)))
    pixels = big * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    assert pixels.min() >= 0 and pixels.max() <= 1
    u = 1e-3 * torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    linear = mean.view(1, 3, 1, 1) + torch.einsum("oc,bchw->bohw", root, u)
    pixels = valid(u) * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    torch.testing.assert_close(pixels, linear, atol=1e-6, rtol=0)
    with pytest.raises(OIPError, match="must be 3×3"):
        ValidImage(mean, std, torch.eye(2))


def test_random_affine_is_reproducible_and_identity_when_off() -> None:
    images = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert RandomAffine(0.0, 0.0)(images) is images
    a, b = RandomAffine(0.1, 10.0, seed=3), RandomAffine(0.1, 10.0, seed=3)
    first = a(images)
    assert torch.equal(first, b(images)) and not torch.equal(first, images)
    assert not torch.equal(a(images), first)  # a new draw every call
    with pytest.raises(OIPError, match=r"\[0, 1\)"):
        RandomAffine(scale=1.5, rotate=0.0)


def colour_planted_net(size: int = 10) -> tuple[LayeredCNN, torch.Tensor]:
    """One colour map whose kernel is a bright red diagonal bar over a dark blue one (green
    weighted half), as big as the image, with a bias that keeps its ReLU open from every start."""
    bar = -torch.ones(size, size)
    for i in range(size):
        bar[i, max(0, i - 1) : i + 2] = 2.0
    bar -= bar.mean()
    kernel = torch.stack([bar, 0.5 * bar, -bar])
    conv = nn.Conv2d(3, 1, size)
    with torch.no_grad():
        conv.weight[0] = kernel
        conv.bias.fill_(float(kernel.abs().sum()) * 10)
    layers: OrderedDict[str, nn.Module] = OrderedDict(conv1=conv, relu1=nn.ReLU())
    net = LayeredCNN(layers, in_channels=3, image_size=size, mean=[0.5, 0.45, 0.4], std=[0.25, 0.25, 0.25])
    return net, kernel


@pytest.mark.parametrize("decorrelate", [False, True])
def test_fourier_oip_of_planted_colour_kernel_reproduces_its_pattern(decorrelate: bool) -> None:
    net, kernel = colour_planted_net()
    root = sqrt_psd(colour_covariance(correlated_images(size=10))[1]) if decorrelate else None
    settings = replace(
        CONFIGURED,
        restarts=(0, 1, 2),
        wavelengths=(1, 3),
        steps=80,
        step_size=0.2,
        parameterization="fourier",
        colour_sqrt=None if root is None else tuple(tuple(r) for r in root.tolist()),
    )
    result = generate_oips(net, "relu1", [0], settings, ())
    # a linear objective over pixels in [0, 1] peaks at the box corner: 1 where the kernel is
    # positive, 0 where negative — standardised as the network sees it
    pixels = (kernel > 0).float()
    optimum = ((pixels - net.mean[0]) / net.std[0]).flatten()
    flat = result.images[0].flatten(2)  # (K, W, C*H*W)
    corr = torch.stack([torch.corrcoef(torch.stack([img, optimum]))[0, 1] for img in flat.flatten(0, 1)])
    assert corr.min() > 0.95, corr
    table = map_table(result)
    assert table.loc[0, "robustness"] > 0.8
    assert table.loc[0, "best_activation"] > table.loc[0, "start_activation"]


def test_fourier_run_is_deterministic_on_cpu_and_batched_like_one_map_at_a_time() -> None:
    torch.manual_seed(0)
    layers: OrderedDict[str, nn.Module] = OrderedDict(conv1=nn.Conv2d(3, 4, 3), relu1=nn.ReLU())
    net = LayeredCNN(layers, 3, 10, mean=[0.5, 0.45, 0.4], std=[0.25, 0.25, 0.25])
    root = sqrt_psd(colour_covariance(correlated_images(size=10))[1])
    settings = replace(FOURIER, colour_sqrt=tuple(tuple(r) for r in root.tolist()), jitter=1, scale=0.1, rotate=10.0)
    first = generate_oips(net, "relu1", None, settings, snapshots=[0, 8])
    second = generate_oips(net, "relu1", None, settings, snapshots=[0, 8])
    assert torch.equal(first.images, second.images) and torch.equal(first.history, second.history)
    single = generate_oips(net, "relu1", [2], settings, ())
    torch.testing.assert_close(single.images[0], first.images[2], atol=1e-5, rtol=0)
    assert torch.isfinite(first.history).all()


def test_annealed_ascent_settles_and_fixed_step_keeps_moving() -> None:
    torch.manual_seed(0)
    layers: OrderedDict[str, nn.Module] = OrderedDict(conv1=nn.Conv2d(3, 4, 3), relu1=nn.ReLU())
    net = LayeredCNN(layers, 3, 10, mean=[0.5, 0.45, 0.4], std=[0.25, 0.25, 0.25])
    steps = 20

    def last_over_first(anneal: bool) -> float:
        settings = replace(FOURIER, steps=steps, anneal=anneal, init_scale=0.1)
        snaps = generate_oips(net, "relu1", None, settings, snapshots=[0, 1, steps - 1, steps]).snapshots
        first = (snaps[1] - snaps[0]).abs().mean()
        return float((snaps[steps] - snaps[steps - 1]).abs().mean() / first)

    assert last_over_first(anneal=True) < 0.05
    assert last_over_first(anneal=False) > 0.1


def test_decorrelation_needs_the_fourier_parameterisation() -> None:
    with pytest.raises(OIPError, match="needs the fourier parameterization"):
        generate_oips(
            colour_planted_net()[0], "relu1", [0], replace(FOURIER, parameterization="pixel", colour_sqrt=((1.0,),)), ()
        )
    with pytest.raises(OIPError, match="choose one of: pixel, fourier"):
        generate_oips(colour_planted_net()[0], "relu1", [0], replace(FOURIER, parameterization="spectral"), ())


@pytest.mark.parametrize(
    ("oip", "needle"),
    [
        ({"parameterization": "fft"}, r"oip\.parameterization.*pixel.*fourier"),
        ({"decorrelate": True}, r"oip\.decorrelate=true needs oip\.parameterization=fourier"),
        ({"scale": 1.2}, r"oip\.scale=1\.2 must be in \[0, 1\)"),
        ({"rotate": -5}, r"oip\.rotate=-5.* must be 0\.\.180 degrees"),
        ({"parameterization": "fourier", "decay": -1}, r"oip\.decay=-1.* must be >= 0"),
        ({"parameterization": "fourier", "init_scale": 0}, r"oip\.init_scale=0.* must be > 0"),
    ],
)
def test_bad_parameterisation_config_names_the_key(oip: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        raw["oip"].update(oip)
        validate(raw)


# --- the stage ------------------------------------------------------------------------------------


def _colour_repo(tmp_path: Path, oip: dict[str, object], with_data: bool = True) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["oip"].update({"maps": [0, 1, 2], "steps": 4, "snapshots": [0, 4], **oip})
    params["model"]["name"] = "cifar_cnn"  # the colour network the checkpoint below holds
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    prepared = synthetic_prepared(n_per_class=2, channels=3, size=12)
    if with_data:
        prepared.save(tmp_path / params["data"]["out_dir"])
    model = random_model(prepared, name="cifar_cnn")
    save_checkpoint(model, tmp_path / params["trainer"]["models_dir"] / "benchmark" / "seed0" / "best.ckpt")
    return tmp_path


def _stage(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    return run_stage_as_dvc("oip", ["--variant", "benchmark", "--seed", "0"], cwd)


@pytest.mark.slow
def test_stage_runs_the_decorrelated_fourier_recipe_on_colour_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oip = {"parameterization": "fourier", "decorrelate": True, "scale": 0.1, "rotate": 5.0, "jitter": 1}
    repo = _colour_repo(tmp_path, oip)
    assert _stage(repo, monkeypatch) == 0
    out = repo / "oip" / "benchmark" / "seed0"
    index = json.loads((out / "index.json").read_text())
    assert index["provenance"]["params"]["parameterization"] == "fourier"
    tensors = torch.load(out / "oips.pt", weights_only=True)
    assert tensors["images"].shape[-3:] == (3, 12, 12) and torch.isfinite(tensors["images"]).all()


def test_stage_decorrelation_without_prepared_data_is_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _colour_repo(tmp_path, {"parameterization": "fourier", "decorrelate": True}, with_data=False)
    assert _stage(repo, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "run the prepare stage" in err and len(err.strip().splitlines()) == 1
    assert not (repo / "oip").exists() and not (repo / "metrics").exists()

"""The measures of issue 13, each against a direct formula or a case with a known answer."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
import torch
from scipy import stats

from cnnscope.analysis.cka import cka, gram, minibatch_cka, unbiased_hsic
from cnnscope.analysis.class_patterns import (
    ClassPatternError,
    active,
    chance_counts,
    contrast_count,
    overlap_within_between,
    pair_jaccard,
)
from cnnscope.analysis.histograms import image_histograms, shared_edges
from cnnscope.analysis.information import entropy
from cnnscope.analysis.linear_probe import probe_split
from cnnscope.analysis.matching import MatchingError, map_correlations, match_maps, matching_summary
from cnnscope.analysis.pattern_classifier import confusion_pair, pattern_predictions
from cnnscope.analysis.scalefree import hoyer_kurtosis, robust_scale, scale_free_stats
from cnnscope.analysis.spatial_probe import chance_level, grid_features, spatial_probe, standard_error
from cnnscope.analysis.verdicts import seed_verdict, sign_flip_p, t_interval
from conftest import conf_section, measure_settings

#: The settings these tests do not vary, as conf/ sets them.
COMPARE = conf_section("compare")

# --- scale-free statistics -------------------------------------------------------------------


def _relu_maps(seed: int, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_t(4, size=(n, 3, 5, 5)) + rng.normal(size=(n, 1, 1, 1)), 0).astype(np.float32)


def test_scale_free_measures_ignore_a_positive_factor_but_shared_bins_do_not() -> None:
    a, b = _relu_maps(0), _relu_maps(1)
    base = scale_free_stats({"a": a, "b": b}, 32, COMPARE["scale_quantile"])
    scaled = scale_free_stats({"a": a * 7.5, "b": b}, 32, COMPARE["scale_quantile"])
    for key in ("a", "b"):
        assert scaled[key].entropy_bits == pytest.approx(base[key].entropy_bits, abs=1e-9)
        np.testing.assert_allclose(scaled[key].image_entropy_bits, base[key].image_entropy_bits, atol=1e-9)
        np.testing.assert_allclose(scaled[key].hoyer, base[key].hoyer, rtol=1e-6)
        np.testing.assert_allclose(scaled[key].kurtosis, base[key].kurtosis, rtol=1e-6)
    assert scaled["a"].scale == pytest.approx(7.5 * base["a"].scale, rel=1e-6)

    def shared_entropy(x: np.ndarray, y: np.ndarray) -> float:
        """Entropy of ``y`` on bins shared with ``x`` (the raw measure)."""
        edges = shared_edges(min(x.min(), y.min()), max(x.max(), y.max()), 32)
        return float(entropy(image_histograms(y, edges).sum(axis=0)))

    # the raw measure of b moves when a grows, as b falls into fewer of the widened bins
    assert shared_entropy(a, b) - shared_entropy(a * 7.5, b) > 0.5


def test_hoyer_and_kurtosis_match_their_formulas() -> None:
    x = _relu_maps(2, n=6)
    hoyer, kurt = hoyer_kurtosis(x)
    for i, row in enumerate(x.reshape(6, -1).astype(np.float64)):
        n = row.size
        expected = (np.sqrt(n) - np.abs(row).sum() / np.linalg.norm(row)) / (np.sqrt(n) - 1)
        assert hoyer[i] == pytest.approx(expected)
        assert kurt[i] == pytest.approx(stats.kurtosis(row, fisher=False))
    one_hot = np.zeros((1, 50), np.float32)
    one_hot[0, 3] = 2.0
    h, _ = hoyer_kurtosis(one_hot)
    assert h[0] == pytest.approx(1.0)
    h, k = hoyer_kurtosis(np.zeros((1, 5), np.float32))
    assert np.isnan(h[0]) and np.isnan(k[0])


def test_robust_scale_is_the_quantile_of_the_non_zero_magnitudes() -> None:
    x = np.concatenate([np.zeros(500), np.arange(1, 101, dtype=float)])
    assert robust_scale(x, 0.5) == pytest.approx(50.5)
    assert robust_scale(np.zeros(10)) == 1.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8])
def test_robust_scale_is_the_same_whatever_precision_it_takes_magnitudes_in(dtype: type) -> None:
    """It widens to float64 after dropping the zeros (half the temporaries); the value is the one of
    widening first, bit for bit, over a stride-sampled array with negatives and zeros."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(3_000_000) * 50).clip(-128, 127).astype(dtype)
    x[rng.random(len(x)) < 0.4] = 0
    stride = max(1, len(x) // (1 << 20))
    widened = np.abs(x[::stride].astype(np.float64))
    assert robust_scale(x, 0.99) == float(np.quantile(widened[widened > 0], 0.99))


# --- CKA -------------------------------------------------------------------------------------


def _hsic_u_statistic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """Song et al.'s HSIC₁ as the U-statistic it is: the mean over all ordered 4-tuples of distinct
    images of ``k_ij l_ij + k_ij l_qr − 2 k_ij l_iq`` (O(n⁴))."""
    total, count = 0.0, 0
    for i, j, q, r in permutations(range(len(k)), 4):
        total += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
        count += 1
    return total / count


def test_unbiased_hsic_equals_the_u_statistic() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 3))
    x[:, 0] += 2 * y[:, 0]
    k, l = gram(x).numpy(), gram(y).numpy()  # noqa: E741
    assert unbiased_hsic(torch.from_numpy(k), torch.from_numpy(l)) == pytest.approx(_hsic_u_statistic(k, l))


def test_cka_invariances_and_identity() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 20))
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    assert cka(x, x) == pytest.approx(1.0)
    assert cka(x, x @ q) == pytest.approx(1.0)
    assert cka(x, 3.7 * x) == pytest.approx(1.0)
    assert cka(x, x @ np.diag(rng.uniform(0.1, 10, 20))) < 0.99  # not invariant to any linear map
    assert abs(cka(x, rng.normal(size=(60, 20)))) < 0.2  # independent: near 0 (debiased)


def test_minibatch_cka_averages_hsic_over_fixed_batches() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 6, 2, 2)).astype(np.float32)
    y = (x.reshape(50, -1) @ rng.normal(size=(24, 8)) + rng.normal(size=(50, 8))).astype(np.float32)
    # one batch holding every image: the plain debiased CKA
    assert minibatch_cka({"x": x, "y": y}, [("x", "y")], batch=64)["x", "y"] == pytest.approx(cka(x, y), rel=1e-6)
    # batches of 20, 20, 10: ratio of the summed HSICs of each batch
    grams = [(gram(x[s]), gram(y[s])) for s in (slice(0, 20), slice(20, 40), slice(40, 50))]
    kl = sum(unbiased_hsic(gx, gy) for gx, gy in grams)
    kk = sum(unbiased_hsic(gx, gx) for gx, _ in grams)
    ll = sum(unbiased_hsic(gy, gy) for _, gy in grams)
    out = minibatch_cka({"x": x, "y": y}, batch=20, order=np.arange(50))
    assert out["x", "y"] == pytest.approx(kl / np.sqrt(kk * ll))
    assert out["x", "x"] == pytest.approx(1.0) and set(out) == {("x", "x"), ("x", "y"), ("y", "y")}
    # by default the batches follow a seeded permutation of the images, not their stored order
    order = np.random.default_rng(0).permutation(50)
    shuffled = minibatch_cka({"x": x[order], "y": y[order]}, batch=20, order=np.arange(50))
    assert minibatch_cka({"x": x, "y": y}, batch=20)["x", "y"] == pytest.approx(shuffled["x", "y"])


def test_minibatch_cka_fits_ten_thousand_images() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10_000, 30)).astype(np.float32)
    out = minibatch_cka({"x": x, "xq": x[:, ::-1].copy()}, [("x", "xq")], batch=256)
    assert out["x", "xq"] == pytest.approx(1.0, abs=1e-6)  # a permutation of features is orthogonal


# --- map matching ----------------------------------------------------------------------------


def test_map_matching_finds_a_permutation_and_agrees_with_numpy() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(size=(30, 5, 4, 4)).astype(np.float32)
    perm = np.array([3, 0, 4, 1, 2])
    b = 2 * a[:, perm] + 0.1 * rng.normal(size=a.shape).astype(np.float32)
    b[:, 2] = 1.0  # a dead map
    corr, dead_a, dead_b = map_correlations(a, b, "conv")
    flat_a = a.transpose(0, 2, 3, 1).reshape(-1, 5)
    flat_b = b.transpose(0, 2, 3, 1).reshape(-1, 5)
    with np.errstate(invalid="ignore"):  # the dead map's correlations are NaN here, 0 in ours
        expected = np.corrcoef(flat_a.T, flat_b.T)[:5, 5:]
    expected[:, 2] = 0
    np.testing.assert_allclose(corr, expected, atol=1e-5)
    assert not dead_a.any() and dead_b.tolist() == [False, False, True, False, False]
    table = match_maps(corr, dead_a, dead_b)
    live = table[~table["dead_b"]]
    assert (perm[live["map_b"]] == live["map_a"]).all()  # map perm[j] of A went to j of B
    summary = matching_summary(table)
    assert summary["matched_corr"] > 0.99 and summary["live_maps"] == 4
    assert summary["same_index_corr"] < summary["matched_corr"]


def test_matching_rejects_a_layer_without_maps() -> None:
    with pytest.raises(MatchingError, match="no feature maps"):
        map_correlations(np.zeros((4, 10)), np.zeros((4, 10)), "fc1")


# --- seed verdicts ---------------------------------------------------------------------------


def test_t_interval_and_sign_flip_match_direct_formulas() -> None:
    d = np.array([0.3, 0.5, 0.1, 0.4])
    low, high = t_interval(d, 0.95)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert sign_flip_p(d) == pytest.approx(2 / 16)  # all positive: only the two extreme patterns
    assert sign_flip_p(np.array([1.0, -1.0, 0.5])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("d", "direction", "verdict"),
    [
        ([0.3, 0.5], 1, "too few seeds"),
        ([0.30, 0.32, 0.31, 0.29], 1, "holds"),
        ([0.30, 0.32, 0.31, 0.29], -1, "contradicted"),
        ([0.3, -0.2, 0.1], 1, "inconclusive"),
        ([-0.30, -0.32, -0.31], -1, "holds"),
    ],
)
def test_seed_verdicts(d: list[float], direction: int, verdict: str) -> None:
    out = seed_verdict(np.array(d), direction, COMPARE["confidence"], 0.0)  # no smallest effect of interest
    assert out["verdict"] == verdict and out["n_seeds"] == len(d)
    assert out["sign_flip_min_p"] == pytest.approx(2 / 2 ** len(d))


@pytest.mark.parametrize(
    ("d", "direction", "sesoi", "verdict"),
    [
        # (a′) on a ceiling: +0.0007 ± 0.0002 against a SESOI of 0.01 is negligible, not a contradiction
        ([0.0005, 0.0007, 0.0009], -1, 0.01, "equivalent"),
        ([0.0005, 0.0007, 0.0009], -1, 0.0, "contradicted"),  # without a SESOI it read as contradicted
        ([0.30, 0.32, 0.31, 0.29], 1, 0.05, "holds"),
        ([0.30, 0.32, 0.31, 0.29], -1, 0.05, "contradicted"),  # beyond −SESOI against the claim
        ([0.03, 0.04, 0.05], -1, 0.035, "inconclusive"),  # against the claim but not beyond the SESOI
        ([0.3, -0.2, 0.1], 1, 0.05, "inconclusive"),  # wide: neither equivalent nor a direction
        ([0.001, 0.002], 1, 0.05, "too few seeds"),
    ],
)
def test_verdicts_with_a_smallest_effect_size_of_interest(
    d: list[float], direction: int, sesoi: float, verdict: str
) -> None:
    out = seed_verdict(np.array(d), direction, 0.95, sesoi)
    assert out["verdict"] == verdict
    if verdict == "equivalent":  # TOST: both one-sided tests reject at (1 - 0.95) / 2
        assert out["tost_p"] < 0.025 and -sesoi < out["seed_ci_low"] and out["seed_ci_high"] < sesoi


def test_effect_size_tost_and_holm_match_direct_formulas() -> None:
    from cnnscope.analysis.verdicts import effect_size_dz, holm, tost_p

    d = np.array([0.2, 0.4, 0.3, 0.5])
    assert effect_size_dz(d) == pytest.approx(d.mean() / d.std(ddof=1))
    se = d.std(ddof=1) / 2
    expected = max(stats.t.sf((d.mean() + 1.0) / se, 3), stats.t.cdf((d.mean() - 1.0) / se, 3))
    assert tost_p(d, 1.0) == pytest.approx(expected)
    # Holm: sorted p's times m, m-1, ... made monotone, capped at 1; NaN left out of the family
    adjusted = holm(np.array([0.01, 0.04, np.nan, 0.03, 0.5]))
    assert adjusted[[0, 3, 1, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert np.isnan(adjusted[2])
    # with n seeds the smallest sign-flip p is 2/2^n: 0.25 for 3 seeds, so no Holm p of 3 seeds decides
    assert sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(0.25)


# --- spatial probes --------------------------------------------------------------------------


def test_spatial_probe_reads_position_that_channel_means_lose() -> None:
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], 100)
    maps = rng.uniform(size=(200, 2, 6, 6)).astype(np.float32) * 0.1
    left = labels == 0
    maps[left, :, :, :3] += 1.0  # class 0 bright on the left, class 1 on the right: same mean
    maps[~left, :, :, 3:] += 1.0
    train, test = probe_split(labels, 0.5)
    pooled = spatial_probe(maps, labels, train, test, grid=1)
    spatial = spatial_probe(maps, labels, train, test, grid=2)
    assert spatial["accuracy"] == 1.0 and pooled["accuracy"] < 0.75
    assert spatial["features"] == 8 and pooled["features"] == 2
    quadrants = maps[:3, 0].reshape(3, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(grid_features(maps[:3], 2)[:, :4].reshape(3, 2, 2), quadrants, rtol=1e-6)
    assert standard_error(0.75, 300) == pytest.approx(np.sqrt(0.75 * 0.25 / 300))
    assert chance_level(np.array([0, 0, 1, 0, 1]), np.array([0, 1, 2]), np.array([3, 4])) == 0.5


# --- class patterns --------------------------------------------------------------------------


def _class_maps(n_per_class: int = 12, classes: int = 5, seed: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Maps where each class switches on its own block of nodes, plus random noise nodes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    maps = (rng.uniform(size=(len(labels), 4, 5, 5)) > 0.7).astype(np.float32)
    flat = maps.reshape(len(labels), -1)
    for k in range(classes):
        flat[labels == k, k * 10 : k * 10 + 10] = 1.0
    return maps, labels


def test_contrast_count_and_chance_distributions() -> None:
    pat = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], bool)
    assert contrast_count(pat, np.array([[0, 1, 0, 0]], bool)) == 1  # node 0 only
    maps, labels = _class_maps()
    out = chance_counts(active(maps), labels, k=3, m=2, draws=300)
    assert out["same_class"].mean() > out["mixed"].mean() + 3  # the class block survives, noise does not
    again = chance_counts(active(maps), labels, k=3, m=2, draws=300)
    np.testing.assert_array_equal(out["same_class"], again["same_class"])


def test_chance_level_needs_two_images_per_class() -> None:
    maps, labels = _class_maps()
    labels = labels.copy()
    labels[0] = 9  # class 9 has one image
    with pytest.raises(ClassPatternError, match="fewer than two images"):
        chance_counts(active(maps), labels, 3, 2, COMPARE["fcp_draws"])


def test_within_between_overlap_matches_brute_force() -> None:
    maps, labels = _class_maps(n_per_class=6, classes=3)
    pat = active(maps)
    jac = pair_jaccard(pat)
    i, j = 2, 9
    inter, union = (pat[i] & pat[j]).sum(), (pat[i] | pat[j]).sum()
    assert jac[i, j] == pytest.approx(inter / union)
    out = overlap_within_between(pat, labels, 100, COMPARE["confidence"])
    same = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    assert out["within"] == pytest.approx(jac[same].mean())
    assert out["between"] == pytest.approx(jac[labels[:, None] != labels[None]].mean())
    assert 0 < out["image_ci_low"] < out["difference"] < out["image_ci_high"]


# --- classification by activation patterns ---------------------------------------------------


def test_nearest_class_mean_pattern_classifies_held_out_images() -> None:
    maps, labels = _class_maps(n_per_class=20)
    train, test = probe_split(labels, 0.5)
    predicted = pattern_predictions(maps, labels, train, test)
    assert np.mean(predicted == labels[test]) > 0.95
    assert confusion_pair(np.array([4, 9, 9, 4, 1]), np.array([4, 4, 9, 9, 4]), 4, 9) == pytest.approx(2 / 5)


# --- the study-level tables and the claims table ---------------------------------------------


def _sets(tmp_path, prepared, variants=("benchmark", "dummy"), seeds=(0, 1, 2), name="mnist_cnn"):  # type: ignore[no-untyped-def]
    from cnnscope.activations import ActivationSet, ImageGroup, extract_activations, resolve_layers
    from conftest import random_model

    test, probe = prepared.splits["test"], prepared.splits["probe"]
    groups = {
        "eval": ImageGroup(prepared.images[test], test, prepared.labels[test]),
        "probe": ImageGroup(prepared.images[probe], probe, prepared.labels[probe], prepared.probe_names),
    }
    sets = {}
    for i, v in enumerate(variants):
        for s in seeds:
            model = random_model(prepared, name, seed=10 * s + i, width=0.25, hidden=8).eval()
            out = tmp_path / v / f"seed{s}"
            float16 = conf_section("extract")["float16"]
            extract_activations(model, groups, resolve_layers(model, []), out, 32, float16, classes=prepared.classes)
            sets[v, s] = ActivationSet(out)
    return sets


def test_compute_measures_tables_and_claims(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from cnnscope.analysis.claims import ClaimError, claims_table
    from cnnscope.analysis.measure_summary import measure_study
    from cnnscope.analysis.measures import split_reference_heads
    from conftest import synthetic_prepared

    prepared = synthetic_prepared(n_per_class=30)
    sets = _sets(tmp_path, prepared)
    ref = next(iter(sets.values()))
    ids = ref.group("eval").sample_ids
    pixels = prepared.images[ids].reshape(len(ids), -1).float().numpy() / 255
    layers = [name for name in ref.layers if name not in ("flatten",)]
    settings = measure_settings(bins=16, cka_batch=32, fcp_draws=50, overlap_resamples=20)
    cert = pd.DataFrame(
        [{"variant": v, "seed": s, "sample": "eval", "entropy_bits": 1.0 + (v == "dummy") + 0.01 * s}
         for v, s in sets]
    )  # fmt: skip
    contrasts = [["benchmark", "dummy"]]
    with_mlp = {**sets, ("mlp", 0): _sets(tmp_path / "mlp", prepared, ("mlp",), (0,), "mlp")["mlp", 0]}
    compared, heads = split_reference_heads(with_mlp)
    assert list(heads) == [("mlp", 0)] and list(compared) == list(sets)
    res = measure_study(
        compared,
        pixels,
        layers,
        ref.feature_maps,
        prepared.classes,
        {"certainty": cert},
        contrasts,
        settings,
        50,
        heads,
    )
    t = res.tables
    mlp_rows = t["pattern_classification"][t["pattern_classification"]["variant"] == "mlp"]
    assert mlp_rows["classifier"].tolist() == ["network head"] and mlp_rows["pair"].tolist() == ["4↔9"]
    assert list(t["claims"]["claim"]) == ["a", "a", "a′", "b", "b", "e", "e", "VI"]
    # the pixel-space baselines of (e) and part VI are tested rows, beside the raw difference its d_z
    controls = t["claims"][t["claims"]["control"] == "binarised pixels"]
    assert list(controls["claim"]) == ["e", "VI"] and controls["n_seeds"].eq(3).all()
    assert t["claims"]["effect_dz"].notna().any() and t["claims"]["holm_p"].notna().any()
    pixels = t["pattern_classification"][t["pattern_classification"]["variant"] == "binarised pixels"]
    assert pixels["accuracy"].iloc[0] > 0.5  # bars at class-specific rows: the binarised pixels read them
    assert set(t["activation_scale"]["layer"]) == set(layers) - {"softmax"}
    assert not t["activation_scale"]["silent"].any()
    assert t["claims"]["image_ci_low"].iloc[:2].notna().all()  # image bootstrap beside the seed verdict
    overview = t["cka_overview"].set_index(["layer", "comparison"])
    assert overview.loc[("relu1", "benchmark seed vs seed"), "pairs"] == 3
    assert overview.loc[("relu1", "benchmark vs dummy"), "pairs"] == 3  # same-seed pairs only
    assert overview.loc[("relu1", "dummy vs input"), "pairs"] == 3
    assert set(t["scale_free"]["layer"]) == set(layers) - {"softmax"}
    assert len(t["scale_free"]) == 6 * (len(layers) - 1)
    # every pair of the six networks plus each to the pixels, per layer
    assert len(t["cka"]) == (15 + 6) * (len(layers) - 1)
    assert t["cka"]["cka"].between(-0.5, 1.0 + 1e-9).all()
    assert set(t["matching_summary"]["layer"]) == set(ref.feature_maps)
    assert (t["spatial_probe"]["std_error"] >= 0).all() and (t["spatial_probe"]["chance"] < 0.3).all()
    assert set(t["pattern_classification"]["classifier"]) == {"binary pattern", "network head"}
    # part VI's full confusion matrices: pattern and head of the six networks, the mlp's head (issue 25, item 7)
    confusion, k = t["pattern_confusion"], len(prepared.classes)
    assert len(confusion) == (2 * 6 + 1) * k * k
    scored = t["pattern_classification"].set_index(["variant", "seed", "classifier"])["accuracy"]
    for key, matrix in confusion.groupby(["variant", "seed", "classifier"]):
        diagonal = matrix.loc[matrix["true"] == matrix["predicted"], "images"].sum()
        assert diagonal / matrix["images"].sum() == pytest.approx(scored[key])  # its diagonal is the accuracy
    assert len(t["overlap"]) == 6 + 1  # every network and the binarised pixels
    # claims from these tables: seed-level verdicts over three seeds
    oip = {(v, s): {"maps": 8, "dead_maps": 0, "converged_fraction": 1.0, "layer": "relu3",
                    "same_map_similarity": 0.5 + 0.01 * s, "cross_map_similarity": 0.1,
                    "silent_start_fraction_wl1": 0.6, "silent_start_fraction_wl4": 0.1}
           for v, s in sets}  # fmt: skip
    verdicts = {"confidence": COMPARE["confidence"], "resamples": 50, "sesoi": COMPARE["sesoi"],
                "min_converged": COMPARE["min_converged"]}  # fmt: skip
    claims = claims_table(
        "benchmark", "dummy", ["benchmark", "dummy"], {**t, "certainty": cert}, "relu1", "relu3", oip, **verdicts
    )
    assert list(claims["claim"]) == ["a", "a", "a′", "b", "b", "c", "d", "e", "e", "VI"]
    # controls: trained − untrained for (c), (d), (e), VI when the study has an untrained network
    scale = t["activation_scale"].assign(silent=lambda f: (f["variant"] == "dummy") & (f["layer"] == "relu3"))
    with_null = claims_table(
        "benchmark", "dummy", ["benchmark", "dummy"], {**t, "certainty": cert, "activation_scale": scale}, "relu1",
        "relu3", oip, **verdicts, null="dummy",
    )  # fmt: skip
    untrained = with_null[with_null["control"] == "untrained"]
    assert list(untrained["claim"]) == ["c", "d", "e", "VI"]
    # a null silent on data in the claim's layer is no baseline: flagged, out of the verdicts
    assert set(untrained["verdict"]) == {"degenerate null"}
    by = claims.set_index(["claim", "measure"])
    b = claims[claims["claim"] == "b"].iloc[0]
    assert b["verdict"] == "holds" and b["n_seeds"] == 3 and b["mean_difference"] == pytest.approx(-1.0)
    assert claims[claims["claim"] == "c"]["verdict"].iloc[0] == "holds"
    assert by.index.is_unique
    with pytest.raises(ClaimError, match="no variant big"):
        claims_table("big", "dummy", ["benchmark", "dummy"], t, "relu1", "relu3", **verdicts)


def test_cka_heatmap_is_byte_stable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from cnnscope.viz.measures import render_measures

    overview = pd.DataFrame(
        [{"layer": L, "comparison": c, "cka": v} for L, c, v in
         [("relu1", "a vs b", 0.5), ("relu1", "a seed vs seed", 0.9), ("relu2", "a vs b", float("nan"))]]
    )  # fmt: skip
    entries = render_measures(overview, tmp_path / "one")
    render_measures(overview, tmp_path / "two")
    assert [e["kind"] for e in entries] == ["cka"]
    png = (tmp_path / "one" / entries[0]["path"]).read_bytes()
    assert png == (tmp_path / "two" / entries[0]["path"]).read_bytes() and png[:4] == b"\x89PNG"
    assert render_measures(overview.iloc[:0], tmp_path / "none") == []


def test_activation_scale_flags_a_layer_silent_on_data() -> None:
    from cnnscope.analysis.activation_scale import activation_scale

    rng = np.random.default_rng(4)
    live = np.maximum(rng.normal(size=(50, 4, 3, 3)), 0).astype(np.float32)
    scale = activation_scale(live)
    assert not scale["silent"] and scale["rms"] == pytest.approx(np.sqrt((live.astype(np.float64) ** 2).mean()))
    assert scale["active_fraction"] == pytest.approx((live > 0).mean())
    assert activation_scale(np.zeros_like(live))["silent"]  # a dead layer
    # a layer passing its bias: the same values for every image (what a deep untrained layer did on CIFAR)
    constant = np.broadcast_to(live[:1] + 0.3, live.shape) + rng.normal(size=live.shape).astype(np.float32) * 1e-6
    assert activation_scale(constant)["silent"]


def test_within_network_claims_are_tested_once_whatever_the_number_of_contrasts() -> None:
    """(e) and VI concern the first variant of a contrast alone: two contrasts with the same first
    variant must not test (and Holm-count) them twice."""
    import pandas as pd

    from cnnscope.analysis.claim_family import COLUMNS, join_contrasts

    def row(claim: str, reference: str) -> dict[str, object]:
        return dict.fromkeys(COLUMNS, 0) | {"claim": claim, "statement": claim, "measure": "m", "layer": "relu3",
                                             "variant": "benchmark", "reference": reference}  # fmt: skip

    dummy = pd.DataFrame([row("a", "dummy"), row("e", ""), row("VI", "untrained")])
    steps = pd.DataFrame([row("a", "dummy_steps"), row("e", ""), row("VI", "untrained")])
    joined = join_contrasts([dummy, steps])
    assert list(zip(joined["claim"], joined["reference"], strict=True)) == [
        ("a", "dummy"), ("e", ""), ("VI", "untrained"), ("a", "dummy_steps")
    ]  # fmt: skip


def _oip_summary(seed: int, converged: int, maps: int = 16, dead: int = 2, same: float = 0.12) -> dict[str, object]:
    """An OIP summary as :func:`cnnscope.oip.metrics.summary` writes it: ``converged`` of ``maps``
    maps ended their ascent converged (dead maps never do)."""
    return {"maps": maps, "dead_maps": dead, "dead_fraction": dead / maps, "converged_fraction": converged / maps,
            "layer": "relu3", "same_map_similarity": same + 0.01 * seed, "cross_map_similarity": 0.66 - 0.02 * seed,
            "silent_start_fraction_wl1": 0.3 + 0.05 * seed, "silent_start_fraction_wl4": 0.1}  # fmt: skip


def test_claim_d_on_unconverged_ascents_reads_not_converged_and_stays_out_of_the_holm_family() -> None:
    """The published default study's case: 30 ascent steps converged 19-30 % of the maps, the OIPs
    were still largely their start noise and (d) read *contradicted*; it must read *not converged*,
    keep its numbers and name the fractions, while (c) (measured at step 0) stays tested."""
    import pandas as pd

    from cnnscope.analysis.claim_family import COLUMNS, with_holm
    from cnnscope.analysis.claims import oip_claims
    from cnnscope.analysis.verdicts import NOT_CONVERGED, TESTED

    threshold = COMPARE["min_converged"]
    assert 3 / 14 < threshold <= 8 / 14  # the fixtures' live fractions lie on either side of conf/'s threshold
    oip = {("benchmark", s): _oip_summary(s, converged=3 + s % 2) for s in range(3)}  # 21 %, 29 %, 21 % of live maps
    oip |= {("untrained", s): _oip_summary(s, converged=12, same=0.02) for s in range(3)}  # 86 %
    rows = oip_claims("benchmark", oip, COMPARE["confidence"], COMPARE["sesoi"], "untrained", min_converged=threshold)
    table = with_holm(pd.DataFrame(rows, columns=COLUMNS)).set_index(["claim", "control"])
    d, control = table.loc[("d", "")], table.loc[("d", "untrained")]
    assert d["verdict"] == control["verdict"] == NOT_CONVERGED
    ungated = seed_verdict(np.array([0.12 - 0.66 + 0.03 * s for s in range(3)]), 1, COMPARE["confidence"], 0.05)
    assert ungated["verdict"] == "contradicted"  # what the row would have claimed
    assert d["mean_difference"] == pytest.approx(ungated["mean_difference"])  # the numbers are kept
    assert d["seed_ci_low"] == pytest.approx(ungated["seed_ci_low"]) and np.isfinite(d["effect_dz"])
    assert "21 %, 29 %, 21 % of benchmark's live maps in seeds 0, 1, 2" in d["statement"]
    assert f"compare.min_converged {100 * threshold:.0f} %" in d["statement"] and "oip.steps" in d["statement"]
    assert "and 86 %, 86 %, 86 % of untrained's" in control["statement"]
    # (c) does not depend on convergence; the gated rows are not in the Holm family, (c)'s are
    assert {table.loc[("c", ""), "verdict"], table.loc[("c", "untrained"), "verdict"]} <= set(TESTED)
    assert np.isfinite(table.loc[("c", ""), "holm_p"]) and np.isnan(d["holm_p"]) and np.isnan(control["holm_p"])
    # the control is gated when only the untrained network's ascents did not converge
    oip |= {("benchmark", s): _oip_summary(s, converged=12) for s in range(3)}
    oip |= {("untrained", s): _oip_summary(s, converged=2, same=0.02) for s in range(3)}
    rows = oip_claims("benchmark", oip, COMPARE["confidence"], COMPARE["sesoi"], "untrained", min_converged=threshold)
    verdicts = {(r["claim"], r["control"]): r["verdict"] for r in rows}
    assert verdicts["d", ""] in TESTED and verdicts["d", "untrained"] == NOT_CONVERGED


def test_claim_d_on_converged_ascents_keeps_its_verdict() -> None:
    """At or above the threshold the gate changes nothing: the same rows as without it. The share is
    of the *live* maps: 7 converged of 16 maps with 8 dead is 44 % of all maps but 88 % of the live."""
    import pandas as pd

    from cnnscope.analysis.claims import oip_claims
    from cnnscope.analysis.convergence import live_converged_fraction

    threshold = COMPARE["min_converged"]
    oip = {("benchmark", s): _oip_summary(s, converged=7, dead=8, same=0.9) for s in range(3)}
    oip |= {("untrained", s): _oip_summary(s, converged=7, dead=2, same=0.02) for s in range(3)}  # 7/14: at it
    assert oip["benchmark", 0]["converged_fraction"] < threshold <= live_converged_fraction(oip["benchmark", 0])
    gated = oip_claims("benchmark", oip, COMPARE["confidence"], COMPARE["sesoi"], "untrained", min_converged=threshold)
    plain = oip_claims("benchmark", oip, COMPARE["confidence"], COMPARE["sesoi"], "untrained", min_converged=0.0)
    assert pd.DataFrame(gated).equals(pd.DataFrame(plain))
    assert [r["verdict"] for r in gated if r["claim"] == "d"] == ["holds", "holds"]


def test_live_converged_fraction_reads_every_form_of_the_summary() -> None:
    from cnnscope.analysis.convergence import live_converged_fraction

    assert live_converged_fraction({"maps": 16, "dead_maps": 4, "converged_fraction": 6 / 16}) == 0.5
    assert live_converged_fraction({"dead_fraction": 0.25, "converged_fraction": 0.375}) == pytest.approx(0.5)
    # read back from the shipped CSV (6 digits): the same count of maps, so the same side of the threshold
    assert live_converged_fraction({"maps": 15.0, "dead_maps": 1.0, "converged_fraction": 0.466667}) == 0.5
    assert live_converged_fraction({"maps": 8, "dead_maps": 8, "converged_fraction": 0.0}) == 0.0  # no live map
    assert live_converged_fraction({"maps": 8, "dead_maps": 0}) == 0.0  # nothing shows an ascent converged

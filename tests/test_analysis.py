"""The comparison quantities: checked against SciPy, brute force and cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from cnnscope.analysis import entropy, js_divergence, kl_divergence, smoothed
from cnnscope.analysis.certainty import certainty
from cnnscope.analysis.histograms import image_histograms, image_moments, shared_edges
from cnnscope.analysis.linear_probe import probe_accuracy, probe_split
from cnnscope.analysis.patterns import class_similarity, common_active
from cnnscope.analysis.seeds import bootstrap_difference, seed_summary
from conftest import conf_section


@pytest.fixture
def histograms() -> np.ndarray:
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, size=(6, 32)).astype(float)
    counts[0, :5] = 0  # empty bins must contribute nothing
    counts[1, ::2] = 0
    return counts


def test_entropy_kl_js_agree_with_scipy(histograms: np.ndarray) -> None:
    for p in histograms:
        assert entropy(p) == pytest.approx(scipy_entropy(p, base=2), abs=1e-12)
    for p, q in zip(histograms, histograms[::-1], strict=True):
        ps, qs = smoothed(p), smoothed(q)
        assert kl_divergence(ps, qs) == pytest.approx(scipy_entropy(ps, qs, base=2), abs=1e-12)
        assert js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)
    # vectorised over rows, same answers
    np.testing.assert_allclose(entropy(histograms), [scipy_entropy(p, base=2) for p in histograms])


def test_divergence_edge_cases() -> None:
    p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert kl_divergence(p, q) == np.inf  # q misses p's mass: why compare smooths first
    assert js_divergence(p, q) == pytest.approx(1.0)
    assert js_divergence(p, p) == pytest.approx(0.0)
    assert entropy(np.ones(64)) == pytest.approx(6.0)


def test_image_histograms_match_numpy() -> None:
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(size=(300, 4, 5, 5)), 0).astype(np.float16)  # several chunks
    edges = shared_edges(float(x.min()), float(x.max()), 16)
    counts = image_histograms(x, edges)
    assert counts.shape == (300, 16)
    for i in (0, 137, 299):
        np.testing.assert_array_equal(counts[i], np.histogram(x[i].astype(np.float32), bins=edges)[0])
    m = image_moments(x)
    np.testing.assert_allclose(m.sparsity, (x.reshape(300, -1) == 0).mean(axis=1))
    np.testing.assert_allclose(m.std, x.reshape(300, -1).astype(np.float64).std(axis=1), rtol=1e-6)


def test_class_similarity_matches_brute_force() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 40)
    x = rng.normal(size=(40, 6)) + labels[:, None] * 2.0
    x[5] = 0  # a zero vector has no direction and is left out
    got = class_similarity(x, labels)
    keep = np.flatnonzero(np.linalg.norm(x, axis=1) > 0)
    u = x[keep] / np.linalg.norm(x[keep], axis=1, keepdims=True)
    cos, y = u @ u.T, labels[keep]
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    diff = y[:, None] != y[None]
    assert got["within"] == pytest.approx(cos[same].mean())
    assert got["between"] == pytest.approx(cos[diff].mean())
    assert got["separation"] > 0


def test_common_active_nodes() -> None:
    maps = np.zeros((3, 2, 2, 2))
    maps[:, 0, 0, 0] = 1.0  # active in all three
    maps[0, 1, 1, 1] = 2.0  # active in one
    out = common_active(maps)
    assert out["active_all"] == 1 and out["active_any"] == 2 and out["jaccard"] == 0.5
    assert out["mask"][0, 0, 0] and not out["mask"][1, 1, 1]


def test_certainty_of_known_distributions() -> None:
    probs = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    out = certainty(probs, np.array([0, 3]))
    np.testing.assert_allclose(out["entropy_bits"], [0.0, 2.0])
    assert out["predicted"].tolist() == [0, 0] and out["correct"].tolist() == [1.0, 0.0]


def test_bootstrap_ci_detects_a_shift_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(2, 200))
    confidence = conf_section("compare")["confidence"]
    shifted = bootstrap_difference(base + 0.5, base, 300, confidence)
    assert shifted["holds"] and shifted["ci_low"] < 0.5 < shifted["ci_high"]
    noise = bootstrap_difference(rng.normal(size=(2, 200)), rng.normal(size=(2, 200)), 300, confidence)
    assert not noise["holds"] and noise["ci_low"] < 0 < noise["ci_high"]
    assert bootstrap_difference(base, base + 1, 50, confidence) == bootstrap_difference(base, base + 1, 50, confidence)


def test_seed_summary_mean_and_std() -> None:
    import pandas as pd

    table = pd.DataFrame({"variant": ["a", "a", "b"], "seed": [0, 1, 0], "x": [1.0, 3.0, 5.0]})
    out = seed_summary(table, ["variant"], ["x"]).set_index("variant")
    assert out.loc["a", "mean"] == 2.0 and out.loc["a", "std"] == pytest.approx(np.sqrt(2))
    assert out.loc["b", "n_seeds"] == 1 and np.isnan(out.loc["b", "std"])


def test_linear_probe_separable_vs_random() -> None:
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(4), 50)
    train, test = probe_split(labels, 0.5)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 200
    separable = rng.normal(size=(200, 8)) + np.eye(4, 8)[labels] * 5
    assert probe_accuracy(separable, labels, train, test) > 0.95
    assert probe_accuracy(rng.normal(size=(200, 8)), labels, train, test) < 0.5

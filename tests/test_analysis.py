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


def test_probe_fit_is_scikit_learns_logistic_regression() -> None:
    """The probe is the estimator ``LogisticRegression()`` defines (multinomial, L2 with C = 1,
    intercepts free): its class probabilities equal scikit-learn's solved to a tight tolerance, and
    the gradient of the objective vanishes at the solution."""
    sklearn = pytest.importorskip("sklearn.linear_model")  # installed with mlxtend; not a dependency
    import torch

    from cnnscope.analysis.linear_probe import fit_logistic

    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 30)
    x = rng.normal(size=(120, 6)) + np.eye(4, 6)[labels] * 1.5  # overlapping classes: a finite optimum
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    weights, bias = fit_logistic(x, labels, 4)
    theirs = sklearn.LogisticRegression(tol=1e-10, max_iter=10_000).fit(x, labels)
    ours = torch.softmax(torch.from_numpy(x @ weights + bias), dim=1).numpy()
    np.testing.assert_allclose(ours, theirs.predict_proba(x), atol=1e-4)
    w = torch.from_numpy(weights).requires_grad_()
    b = torch.from_numpy(bias).requires_grad_()
    objective = torch.nn.functional.cross_entropy(torch.from_numpy(x) @ w + b, torch.from_numpy(labels))
    (objective + w.square().sum() / (2 * len(x))).backward()
    assert max(float(w.grad.abs().max()), float(b.grad.abs().max())) < 1e-4  # type: ignore[union-attr]


def test_probe_split_is_stratified_seeded_and_never_empties_a_side() -> None:
    labels = np.array([0] * 10 + [1] * 6 + [2] * 3 + [3] * 2)
    train, test = probe_split(labels, 0.5, seed=3)
    assert sorted([*train, *test]) == list(range(len(labels)))
    assert [int((labels[test] == c).sum()) for c in range(4)] == [5, 3, 2, 1]  # 1.5 rounds up
    assert all((labels[train] == c).any() for c in range(4))
    again = probe_split(labels, 0.5, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)
    assert not np.array_equal(probe_split(labels, 0.5, seed=4)[1], test)
    single = np.array([0, 0, 0, 1])  # a class of one image: no stratification, ceil(n / 2) tested
    assert len(probe_split(single, 0.5)[1]) == 2


def test_linear_probe_separable_vs_random() -> None:
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(4), 50)
    train, test = probe_split(labels, 0.5)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 200
    separable = rng.normal(size=(200, 8)) + np.eye(4, 8)[labels] * 5
    assert probe_accuracy(separable, labels, train, test) > 0.95
    assert probe_accuracy(rng.normal(size=(200, 8)), labels, train, test) < 0.5

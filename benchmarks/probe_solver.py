"""Benchmark: the probes' logistic regression against scikit-learn's, on a study's real activations.

For each network given, every layer's channel-mean features and 2×2-grid features (the linear and the
spatial probe) are fitted on scikit-learn's stratified half of the evaluation sample, once by
``cnnscope.analysis.linear_probe.fit_logistic`` and once by scikit-learn's ``LogisticRegression()``
(its defaults, the estimator the probes define), one thread. Prints one JSON object: the fit time of
each and their ratio, the objective each reached (ours − theirs, per problem: negative is lower), and
the share of held-out images both predict alike. scikit-learn is not a dependency of cnnscope; it comes
with ``mlxtend``.

    python benchmarks/probe_solver.py --folder <study folder after make repro> benchmark/seed0 untrained/seed1
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from cnnscope.activations import ActivationSet
from cnnscope.analysis.linear_probe import C, fit_logistic, pooled_features
from cnnscope.analysis.sample_order import sample_order
from cnnscope.analysis.spatial_probe import grid_features
from cnnscope.analysis.study.common import EVAL


def objective(x: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> float:
    """The probes' objective (mean cross-entropy + ‖W‖² / 2Cn), in float64."""
    logits = torch.from_numpy(x @ weights + bias)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
    return float(loss) + float((weights**2).sum()) / (2 * C * len(x))


def problems(folder: Path, network: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(train x, train y, test x, test y)``, standardised on the training half, for every probe of one network."""
    aset = ActivationSet(folder / "activations" / network)
    labels = np.asarray(aset.group(EVAL).labels)
    order = sample_order(aset.group(EVAL).sample_ids, 0)
    train, test = train_test_split(order, test_size=0.5, random_state=0, stratify=labels[order])
    out = []
    for layer in aset.layers:
        x = aset.array(EVAL, layer)
        if np.asarray(x[:0]).ndim < 2 or layer == "flatten":
            continue
        for features in (pooled_features(x), grid_features(x, 2)):
            f = features.astype(np.float64)
            mean, std = f[train].mean(axis=0), f[train].std(axis=0)
            std[std == 0] = 1.0
            _, y = np.unique(labels, return_inverse=True)
            out.append(((f[train] - mean) / std, y[train], (f[test] - mean) / std, y[test]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="a study folder holding activations/")
    parser.add_argument("networks", nargs="+", help="<variant>/seed<k>")
    args = parser.parse_args()
    cases = [p for network in args.networks for p in problems(args.folder, network)]
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning at its own max_iter
    with threadpool_limits(limits=1):
        begin = time.perf_counter()
        ours = [fit_logistic(x, y, int(y.max()) + 1) for x, y, _, _ in cases]
        ours_s = time.perf_counter() - begin
        begin = time.perf_counter()
        theirs = [LogisticRegression().fit(x, y) for x, y, _, _ in cases]
        theirs_s = time.perf_counter() - begin
    gaps, agree = [], []
    for (x, y, tx, _), (w, b), model in zip(cases, ours, theirs, strict=True):
        gaps.append(objective(x, y, w, b) - objective(x, y, model.coef_.T, model.intercept_))
        agree.append(float(np.mean((tx @ w + b).argmax(axis=1) == model.predict(tx))))
    print(
        json.dumps(
            {
                "problems": len(cases),
                "ours_s": round(ours_s, 2),
                "scikit_learn_s": round(theirs_s, 2),
                "speedup": round(theirs_s / ours_s, 2),
                "objective_gap_min": min(gaps),
                "objective_gap_max": max(gaps),
                "prediction_agreement_min": round(min(agree), 4),
            }
        )
    )


if __name__ == "__main__":
    main()

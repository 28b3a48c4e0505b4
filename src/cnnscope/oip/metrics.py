"""Per-map numbers of an OIP run, and the per-variant summary the report compares.

Every number is finite by construction: a map whose candidates never saw a gradient is *flagged*
dead (its activation is whatever the network gives, typically 0) rather than producing NaN, and
correlations of flat images count as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import Any

import pandas as pd
import torch

from cnnscope.oip.errors import OIPError
from cnnscope.oip.generate import OIPResult


def robustness(images: torch.Tensor) -> torch.Tensor:
    """Mean pairwise Pearson correlation of the K images along dim -4 of ``(..., K, C, H, W)``.

    1 means every seed reached the same pattern; ~0 means the seeds found unrelated ones.
    """
    k = images.shape[-4]
    if k < 2:
        raise ValueError("robustness needs at least 2 seeds")
    flat = images.flatten(-3)
    centred = flat - flat.mean(dim=-1, keepdim=True)
    norm = centred.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, centred / norm.clamp_min(1e-12), 0.0)
    corr = unit @ unit.transpose(-1, -2)  # (..., K, K)
    off_diagonal = corr.sum(dim=(-1, -2)) - corr.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    return off_diagonal / (k * (k - 1))


def converged(history: torch.Tensor, tol: float) -> torch.Tensor:
    """Whether the objective moved by at most ``tol`` (relative) over the last tenth of the steps.

    ``history`` is ``(steps + 1, ...)``; the result has the trailing shape.
    """
    window = max(1, (history.shape[0] - 1) // 10)
    last, before = history[-1], history[-1 - window]
    return (last - before).abs() <= tol * last.abs().clamp_min(1e-6)


def map_table(result: OIPResult, tol: float = 0.01) -> pd.DataFrame:
    """One row per map: best activation and where it was reached, reference activations,
    robustness at the best wavelength (and averaged over wavelengths), convergence, dead flag."""
    final = result.final  # (M, K, W)
    best_seed, best_wl = result.best_candidates()
    rows = torch.arange(final.shape[0])
    robust = robustness(result.images)  # (M, W)
    history_best = result.history[:, rows, best_seed, best_wl]  # (T, M)
    dead = ~result.grad_seen.flatten(1).any(dim=1)
    table = pd.DataFrame(
        {
            "map": result.maps,
            "best_activation": final[rows, best_seed, best_wl].tolist(),
            "best_wavelength": [result.wavelengths[i] for i in best_wl.tolist()],
            "best_seed": [result.seeds[i] for i in best_seed.tolist()],
            "start_activation": history_best[0].tolist(),
            "mean_image_activation": result.mean_image_activation.tolist(),
            "baseline_activation": result.baseline_activation.tolist(),
            "robustness": robust[rows, best_wl].tolist(),
            "robustness_all_wavelengths": robust.mean(dim=1).tolist(),
            "converged": (converged(history_best, tol) & ~dead).tolist(),
            "dead": dead.tolist(),
        }
    )
    for j, wavelength in enumerate(result.wavelengths):
        table[f"activation_wl{wavelength}"] = final[:, :, j].max(dim=1).values.tolist()
    return table


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Per-variant numbers: fraction of dead maps, medians over the live maps, wavelength wins."""
    live = table[~table["dead"]]

    def med(column: str) -> float:
        return float(median(live[column])) if len(live) else 0.0

    out: dict[str, Any] = {
        "maps": len(table),
        "dead_maps": int(table["dead"].sum()),
        "dead_fraction": float(table["dead"].mean()),
        "converged_fraction": float(table["converged"].mean()),
        "median_best_activation": med("best_activation"),
        "median_mean_image_activation": med("mean_image_activation"),
        "median_robustness": med("robustness"),
        "median_gain": float(median(live["best_activation"] - live["start_activation"])) if len(live) else 0.0,
    }
    wavelengths = [int(c.removeprefix("activation_wl")) for c in table.columns if c.startswith("activation_wl")]
    for wavelength in wavelengths:
        out[f"best_at_wl{wavelength}_fraction"] = (
            float((live["best_wavelength"] == wavelength).mean()) if len(live) else 0.0
        )
        out[f"median_activation_wl{wavelength}"] = med(f"activation_wl{wavelength}")
    return out


def pick_maps(table: pd.DataFrame, chosen: Sequence[int], count: int, key: str) -> list[int]:
    """The maps a figure follows: ``chosen`` (the ``oip.<key>`` setting) when given, else the
    ``count`` most active maps of ``table``, live maps first, ties to the lower index."""
    available = table["map"].tolist()
    if chosen:
        missing = [m for m in chosen if m not in available]
        if missing:
            raise OIPError(f"oip.{key}={missing} are not among the optimised maps; valid: {_ranges(available)}")
        return list(chosen)
    ranked = table.sort_values(["dead", "best_activation", "map"], ascending=[True, False, True])
    return [int(m) for m in ranked["map"].iloc[:count]]


def _ranges(values: list[int]) -> str:
    return f"{values[0]}..{values[-1]}" if values == list(range(values[0], values[-1] + 1)) else str(values)

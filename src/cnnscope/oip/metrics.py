"""Per-map numbers of an OIP run, and the per-variant summary the report compares.

Every number is finite by construction: a map whose candidates never saw a gradient is *flagged*
dead (its activation is whatever the network gives, typically 0) rather than producing NaN, and
correlations of flat images count as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import median
from typing import TYPE_CHECKING, Any

import torch

from cnnscope.oip.errors import OIPError
from cnnscope.oip.generate import OIPResult

if TYPE_CHECKING:  # pandas (~65 MB) only where a table is built: the trajectory stage imports
    import pandas as pd  # `cnnscope.oip` for the ascent alone


def _mean_pairwise_correlation(vectors: torch.Tensor) -> torch.Tensor:
    """Mean Pearson correlation over the pairs of the ``N`` rows of ``vectors`` ``(..., N, D)``: ``(...)``.

    A flat row correlates 0 with everything (not NaN)."""
    n = vectors.shape[-2]
    centred = vectors - vectors.mean(dim=-1, keepdim=True)
    norm = centred.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, centred / norm.clamp_min(1e-12), 0.0)
    corr = unit @ unit.transpose(-1, -2)  # (..., N, N)
    off_diagonal = corr.sum(dim=(-1, -2)) - corr.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
    return off_diagonal / (n * (n - 1))


def robustness(images: torch.Tensor) -> torch.Tensor:
    """Per map and wavelength, the mean pairwise Pearson correlation of the OIPs its K noise
    restarts reached: ``images`` ``(..., K, W, C, H, W)`` → ``(..., W)``.

    1 means every restart from noise of that wavelength reached the same pattern; ~0 means they
    found unrelated ones. Agreement *across wavelengths* is a different number and is not this.
    """
    if images.shape[-5] < 2:
        raise ValueError("robustness needs at least 2 restarts")
    per_wavelength = images.flatten(-3).transpose(-3, -2)  # (..., W, K, D)
    return _mean_pairwise_correlation(per_wavelength)


def _unit_rows(images: torch.Tensor) -> torch.Tensor:
    """Each OIP of ``images`` ``(M, K, W, C, H, W)`` centred and scaled to unit norm, as
    ``(W, M, K, D)``; a flat OIP becomes the zero vector, so it correlates 0 with everything."""
    vectors = images.flatten(-3).permute(2, 0, 1, 3)
    centred = vectors - vectors.mean(dim=-1, keepdim=True)
    norm = centred.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, centred / norm.clamp_min(1e-12), 0.0)


def cross_map_similarity(images: torch.Tensor, live: torch.Tensor) -> float:
    """The null for :func:`robustness`: mean Pearson correlation between OIPs of two *different*
    live maps reached from two *different* noise restarts at one wavelength, for ``images``
    ``(M, K, W, C, H, W)``.

    OIPs of one map that agree across restarts mean something only when they agree more than the
    OIPs of two unrelated maps do: blur and the network's input statistics alone make any two OIPs
    alike. The pairs differ from the same-map pairs of :func:`robustness` in the map only, not in
    the start: every map starts restart ``k`` from the same noise, so pairing different maps at the
    *same* restart would credit the null with whatever of that noise an ascent keeps
    (:func:`shared_start_similarity`). 0 with fewer than two live maps or restarts (finite, like
    every number here: readers check ``maps − dead_maps`` ≥ 2).
    """
    unit = _unit_rows(images[live])  # (W, M, K, D)
    maps, restarts = unit.shape[1], unit.shape[2]
    if maps < 2 or restarts < 2:
        return 0.0

    def squares(x: torch.Tensor) -> torch.Tensor:  # summed squared norms over everything but W
        return x.pow(2).flatten(1).sum(dim=1)

    # Σ over (m, k) ≠ (m', k') with m ≠ m' and k ≠ k' of u·u', by inclusion–exclusion on the sums
    # over restarts (per map) and over maps (per restart): O(M·K·D) instead of O((M·K)²·D).
    every = squares(unit.sum(dim=(1, 2)))
    same_map = squares(unit.sum(dim=2))
    same_start = squares(unit.sum(dim=1))
    itself = squares(unit)
    pairs = maps * (maps - 1) * restarts * (restarts - 1)
    return float(((every - same_map - same_start + itself) / pairs).mean())


def shared_start_similarity(images: torch.Tensor, live: torch.Tensor) -> float:
    """Mean Pearson correlation between OIPs of two different live maps from the *same* noise
    restart and wavelength: how much of their common start the ascents kept. Above
    :func:`cross_map_similarity` by the start's share; near it once the ascents have left their
    noise behind — a check on the OIP budget (``oip.steps``), not a null. 0 with fewer than two
    live maps."""
    kept = images[live]
    if kept.shape[0] < 2:
        return 0.0
    per_start = kept.flatten(-3).permute(1, 2, 0, 3)  # (K, W, M, D)
    return float(_mean_pairwise_correlation(per_start).mean())


def converged(history: torch.Tensor, tol: float) -> torch.Tensor:
    """Whether the objective moved by at most ``tol`` (relative) over the last tenth of the steps.

    ``history`` is ``(steps + 1, ...)``; the result has the trailing shape.
    """
    window = max(1, (history.shape[0] - 1) // 10)
    last, before = history[-1], history[-1 - window]
    return (last - before).abs() <= tol * last.abs().clamp_min(1e-6)


def map_table(result: OIPResult, tol: float = 0.01) -> pd.DataFrame:
    """One row per map: best activation and where it was reached, reference activations,
    robustness (:func:`robustness`) at the map's best wavelength and averaged over wavelengths,
    convergence, dead flag.

    ``robustness`` is the agreement of the restarts where the map's best OIP came from, the one
    the figures and the atlas show; ``robustness_all_wavelengths`` weighs every wavelength alike,
    like :func:`cross_map_similarity`, the null it is compared with."""
    final = result.final  # (M, K, W)
    best_restart, best_wl = result.best_candidates()
    rows = torch.arange(final.shape[0])
    robust = robustness(result.images)  # (M, W): agreement of the K restarts per wavelength
    history_best = result.history[:, rows, best_restart, best_wl]  # (T, M)
    dead = ~result.grad_seen.flatten(1).any(dim=1)
    import pandas as pd

    table = pd.DataFrame(
        {
            "map": result.maps,
            "best_activation": final[rows, best_restart, best_wl].tolist(),
            "best_wavelength": [result.wavelengths[i] for i in best_wl.tolist()],
            "best_restart": [result.restarts[i] for i in best_restart.tolist()],
            "start_activation": history_best[0].tolist(),
            "mean_image_activation": result.mean_image_activation.tolist(),
            "baseline_activation": result.baseline_activation.tolist(),
            "robustness": robust[rows, best_wl].tolist(),
            "robustness_all_wavelengths": robust.mean(dim=1).tolist(),
            "converged": (converged(history_best, tol) & ~dead).tolist(),
            "dead": dead.tolist(),
        }
    )
    start = result.history[0]  # (M, K, W): the objective at the noise each restart starts from
    for j, wavelength in enumerate(result.wavelengths):
        table[f"activation_wl{wavelength}"] = final[:, :, j].max(dim=1).values.tolist()
        # claim (c): a map is silent to noise of this wavelength when no restart activates it at the start
        table[f"start_activation_wl{wavelength}"] = start[:, :, j].max(dim=1).values.tolist()
        table[f"silent_start_wl{wavelength}"] = (start[:, :, j] <= 0).all(dim=1).tolist()
    return table


def summary(table: pd.DataFrame, cross_map: float = 0.0, shared_start: float = 0.0) -> dict[str, Any]:
    """Per-variant numbers: fraction of dead maps, medians over the live maps, wavelength wins, the
    fraction of maps silent at the start per wavelength, and same-map vs cross-map OIP similarity.

    ``median_robustness`` is over the live maps' robustness at their best wavelength;
    ``same_map_similarity`` the mean over live maps of their robustness averaged over wavelengths,
    which is how ``cross_map`` (:func:`cross_map_similarity`) averages over restarts and wavelengths;
    ``shared_start`` (:func:`shared_start_similarity`) shows how much of the start noise remains."""
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
        "same_map_similarity": float(live["robustness_all_wavelengths"].mean()) if len(live) else 0.0,
        "cross_map_similarity": cross_map,
        "shared_start_similarity": shared_start,
    }
    wavelengths = [int(c.removeprefix("activation_wl")) for c in table.columns if c.startswith("activation_wl")]
    for wavelength in wavelengths:
        out[f"best_at_wl{wavelength}_fraction"] = (
            float((live["best_wavelength"] == wavelength).mean()) if len(live) else 0.0
        )
        out[f"median_activation_wl{wavelength}"] = med(f"activation_wl{wavelength}")
        if f"silent_start_wl{wavelength}" in table:
            out[f"silent_start_fraction_wl{wavelength}"] = float(table[f"silent_start_wl{wavelength}"].mean())
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

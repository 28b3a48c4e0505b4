"""Every claim of the seed articles in one table, each with its measure and a seed-level verdict.

The claims, for a network trained on more data (``more``, the frog article's 50k benchmark)
against one trained on less (``less``, its 10k dummy); the variants share their initialisation
per seed, so each claim is tested on paired per-seed differences (:mod:`.verdicts`):

* **(a)** the deepest feature map of ``more`` is sparser (higher Hoyer sparsity) and has lower
  normalised entropy — both scale-free (:mod:`.scalefree`), since the raw entropy on shared bins
  moves with the scale of a layer;
* **(a′)** its first feature map is "more processed": further from the input pixels, i.e. lower
  debiased CKA to the pixels (:mod:`.cka`);
* **(b)** it is more certain: lower predictive entropy (float32 probabilities) on the evaluation
  sample and on the held-out probe images;
* **(c)** deep maps are silent to pixel-scale noise but respond to longer wavelengths: per seed,
  the fraction of maps silent at the start for every noise restart at the shortest wavelength
  minus that at the longest (one network, ``more``);
* **(d)** OIPs from different restarts of one map agree more than OIPs of two different maps
  (same-map minus cross-map correlation, ``more``);
* **(e)** same-class images share deep active nodes more than different-class images (mean
  Jaccard of active sets within minus between classes, ``more``);
* **(VI)** the binary pattern of the deepest map classifies held-out images (the MNIST article's
  part VI; nearest class-mean pattern, :mod:`.pattern_classifier`).

**Controls are rows** (issue 25): a within-network claim ((c), (d), (e), VI) that an untrained
network shows as well does not need training, so each gets a paired *trained − untrained* row
(``control = "untrained"``; the variants share their initialisation per seed, so seed ``s`` of the
null is the starting point of seed ``s`` of ``more``), and (e) and VI a *trained − pixel baseline*
row (``control = "binarised pixels"``: the same measure on the input pixels binarised at 0.5). A
control whose null is silent on data in the claim's layer (:mod:`.activation_scale`) gets the
verdict *degenerate null* and stays out of the verdicts. A (d) row computed on OIP ascents that
mostly did not converge (fewer than ``compare.min_converged`` of a network's live maps, in any of
its seeds) keeps its numbers but gets the verdict *not converged* and stays out of them too
(:mod:`.convergence`; (c) is measured at step 0 and is not gated). Every row carries its smallest
effect size of interest (``compare.sesoi``, by the key in :data:`SESOI_KEYS`), the paired ``d_z``,
the TOST p and, over the whole table, the Holm-adjusted sign-flip p (:mod:`.verdicts`, joined and
adjusted in :mod:`.claim_family`).

Columns ``image_ci_low``/``image_ci_high`` hold an image bootstrap where one exists: it describes
image-to-image variation within trained networks, never whether another training run would agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cnnscope.analysis.claim_family import COLUMNS
from cnnscope.analysis.convergence import gate
from cnnscope.analysis.seeds import bootstrap_difference
from cnnscope.analysis.verdicts import DEGENERATE, seed_verdict
from cnnscope.errors import CnnscopeError


class ClaimError(CnnscopeError, ValueError):
    """A claim names a variant the study lacks."""


def check_contrast(more: str, less: str, variants: Sequence[str]) -> None:
    """Both variants of the claims' contrast must be in the study."""
    missing = [v for v in (more, less) if v not in variants]
    if missing:
        raise ClaimError(
            f"the claims contrast {more} vs {less}, but the study has no variant {', '.join(missing)}; "
            f"study variants: {', '.join(variants)} (set compare.claims_contrast)"
        )


def _per_seed(table: pd.DataFrame, variant: str, value: str, **where: Any) -> pd.Series:
    rows = table[table["variant"] == variant]
    for key, wanted in where.items():
        rows = rows[rows[key] == wanted]
    return rows.set_index("seed")[value]


def _paired(table: pd.DataFrame, more: str, less: str, value: str, **where: Any) -> np.ndarray:
    a, b = _per_seed(table, more, value, **where), _per_seed(table, less, value, **where)
    seeds = sorted(set(a.index) & set(b.index))
    return (a.loc[seeds] - b.loc[seeds]).to_numpy(dtype=np.float64)


#: The ``compare.sesoi`` key of each claim's measure.
SESOI_KEYS = {
    "hoyer": "hoyer",
    "entropy_norm_bits": "entropy_norm_bits",
    "a′": "cka_to_input",
    "b": "predictive_entropy_bits",
    "c": "silent_fraction",
    "d": "oip_margin",
    "e": "jaccard_margin",
    "VI": "pattern_accuracy",
}
UNTRAINED_CONTROL = "untrained"
#: Claim (e) and VI's pixel baseline (:data:`cnnscope.analysis.measures.PIXELS`).
PIXEL_CONTROL = "binarised pixels"


def _row(
    claim: str, statement: str, measure: str, layer: str, variant: str, reference: str, d: np.ndarray, direction: int,
    confidence: float, image_ci: tuple[float, float] = (float("nan"), float("nan")), *, sesoi: float,
    control: str = "",
) -> dict[str, Any]:  # fmt: skip
    return {
        "claim": claim,
        "statement": statement,
        "measure": measure,
        "layer": layer,
        "variant": variant,
        "reference": reference,
        "control": control,
        **seed_verdict(d, direction, confidence, sesoi),
        "holm_p": float("nan"),
        "image_ci_low": image_ci[0],
        "image_ci_high": image_ci[1],
    }


def silent_layers(scale: pd.DataFrame | None) -> set[tuple[str, str]]:
    """``(variant, layer)`` pairs silent on data in any seed (from the ``activation_scale`` table)."""
    if scale is None or not len(scale) or "silent" not in scale:
        return set()
    silent = scale[scale["silent"].astype(str).str.lower() == "true"]
    return {(str(v), str(layer)) for v, layer in zip(silent["variant"], silent["layer"], strict=True)}


def _degenerate(row: dict[str, Any], null: str, silent: set[tuple[str, str]]) -> dict[str, Any]:
    """A trained − untrained row whose null is silent in the claim's layer: no baseline."""
    if (null, str(row["layer"])) in silent:
        row["verdict"] = DEGENERATE
    return row


def claims_table(
    more: str,
    less: str,
    variants: Sequence[str],
    tables: Mapping[str, pd.DataFrame],
    first_map: str | None,
    deepest_map: str | None,
    oip: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    per_image: Callable[[str, str, str], np.ndarray | None] | None = None,
    *,
    confidence: float,
    resamples: int,
    sesoi: Mapping[str, float],
    min_converged: float | None,
    null: str | None = None,
) -> pd.DataFrame:
    """The claims table. ``tables``: ``scale_free``, ``cka``, ``certainty``, ``overlap``,
    ``pattern_classification``, ``activation_scale`` (as the compare stage writes them); ``oip``:
    the OIP stage's summary per (variant, seed); ``per_image(quantity, layer, variant)``: the
    ``(seeds, images)`` values of a per-image quantity of ``variant`` (for the image-level interval
    of ``more − less``); ``sesoi``: smallest effect size of interest by :data:`SESOI_KEYS` value
    (missing: 0); ``min_converged``: ``compare.min_converged``, needed with ``oip`` (None without:
    the compare stage has no OIPs); ``null``: the untrained variant, whose controls join (c), (d),
    (e) and VI."""
    check_contrast(more, less, variants)
    if oip and min_converged is None:
        raise ValueError("claim (d) from OIP summaries needs compare.min_converged")
    rows = []
    delta = {k: float(sesoi.get(v, 0.0)) for k, v in SESOI_KEYS.items()}
    null = null if null in variants and null != more else None
    silent = silent_layers(tables.get("activation_scale"))

    def image_ci(quantity: str, layer: str) -> tuple[float, float]:
        got = per_image(quantity, layer, more) if per_image else None
        ref = per_image(quantity, layer, less) if per_image else None
        if got is None or ref is None:
            return float("nan"), float("nan")
        ci = bootstrap_difference(got, ref, resamples, confidence)
        return ci["ci_low"], ci["ci_high"]

    sf = tables.get("scale_free")
    if sf is not None and deepest_map is not None and len(sf):
        for quantity, direction, text in (
            ("hoyer", 1, "sparser deepest map (Hoyer)"),
            ("entropy_norm_bits", -1, "lower normalised entropy of the deepest map"),
        ):
            d = _paired(sf, more, less, quantity, layer=deepest_map)
            rows.append(
                _row("a", f"{more} has a {text} than {less}", f"{quantity} ({more} − {less})", deepest_map, more, less,
                     d, direction, confidence, image_ci(quantity, deepest_map), sesoi=delta[quantity])
            )  # fmt: skip
    cka = tables.get("cka")
    if cka is not None and first_map is not None and len(cka):
        to_input = cka[(cka["variant_b"] == "input") & (cka["layer"] == first_map)].rename(
            columns={"variant_a": "variant", "seed_a": "seed"}
        )
        d = _paired(to_input, more, less, "cka")
        rows.append(
            _row("a′", f"{more}'s first feature map is further from the input pixels than {less}'s",
                 f"debiased CKA to the pixels ({more} − {less})", first_map, more, less, d, -1, confidence,
                 sesoi=delta["a′"])
        )  # fmt: skip
    cert = tables.get("certainty")
    if cert is not None and len(cert):
        d = _paired(cert, more, less, "entropy_bits", sample="eval")
        rows.append(
            _row("b", f"{more} is more certain than {less} on the evaluation sample",
                 f"mean predictive entropy, bits ({more} − {less})", "softmax", more, less, d, -1, confidence,
                 image_ci("predictive_entropy_bits", "softmax"), sesoi=delta["b"])
        )  # fmt: skip
        probe_rows = cert[cert["sample"] != "eval"]
        for probe in dict.fromkeys(probe_rows["sample"]):
            d = _paired(probe_rows, more, less, "entropy_bits", sample=probe)
            rows.append(
                _row("b", f"{more} is more certain than {less} on the held-out probe `{probe}`",
                     f"predictive entropy of `{probe}`, bits ({more} − {less})", "softmax", more, less, d, -1,
                     confidence, sesoi=delta["b"])
            )  # fmt: skip
        pooled = probe_rows.groupby(["variant", "seed"], as_index=False)["entropy_bits"].mean()
        d = _paired(pooled, more, less, "entropy_bits")
        rows.append(
            _row("b", f"{more} is more certain than {less} on the held-out probes",
                 f"predictive entropy averaged over the probes, bits ({more} − {less})", "softmax", more, less, d, -1,
                 confidence, sesoi=delta["b"])
        )  # fmt: skip
    if oip and min_converged is not None:
        rows += oip_claims(more, oip, confidence, sesoi, null, silent, min_converged=min_converged)
    ov = tables.get("overlap")
    if ov is not None and len(ov) and more in set(ov["variant"]):
        d = _per_seed(ov, more, "difference").to_numpy(dtype=np.float64)
        first = ov[ov["variant"] == more].sort_values("seed").head(1)
        ci = (float(first["image_ci_low"].iloc[0]), float(first["image_ci_high"].iloc[0])) if len(first) else None
        layer = str(first["layer"].iloc[0])
        measure = "mean Jaccard of active nodes, within − between classes"
        rows.append(
            _row("e", f"same-class images share deep active nodes more than different classes ({more})",
                 measure, layer, more, "", d, 1, confidence, ci or (float("nan"), float("nan")), sesoi=delta["e"])
        )  # fmt: skip
        if null is not None and null in set(ov["variant"]):
            d = _paired(ov, more, null, "difference")
            rows.append(_degenerate(
                _row("e", f"…more in {more} than in the untrained network ({null})",
                     f"{measure}: {more} − {null}", layer, more, null, d, 1, confidence, sesoi=delta["e"],
                     control=UNTRAINED_CONTROL), null, silent)
            )  # fmt: skip
        pixel = ov[ov["variant"] == PIXEL_CONTROL]["difference"]
        if len(pixel):
            rows.append(
                _row("e", f"…more in {more} than in the binarised input pixels",
                     f"{measure}: {more} − pixels > 0.5", layer, more, PIXEL_CONTROL, d_pixel(ov, more, pixel), 1,
                     confidence, sesoi=delta["e"], control=PIXEL_CONTROL)
            )  # fmt: skip
    pc = tables.get("pattern_classification")
    if pc is not None and len(pc) and deepest_map is not None:
        patterns = pc[pc["classifier"] == "binary pattern"]
        measure = "held-out accuracy of the nearest class-mean binary pattern"
        if null is not None and more in set(patterns["variant"]) and null in set(patterns["variant"]):
            d = _paired(patterns, more, null, "accuracy")
            rows.append(_degenerate(
                _row("VI", f"the binary pattern of {more}'s deepest map classifies better than the untrained "
                     f"network's ({null})", f"{measure}: {more} − {null}", deepest_map, more, null, d, 1, confidence,
                     sesoi=delta["VI"], control=UNTRAINED_CONTROL), null, silent)
            )  # fmt: skip
        pixel = patterns[patterns["variant"] == PIXEL_CONTROL]["accuracy"]
        if len(pixel) and more in set(patterns["variant"]):
            rows.append(
                _row("VI", f"the binary pattern of {more}'s deepest map classifies better than the binarised pixels",
                     f"{measure}: {more} − pixels > 0.5", deepest_map, more, PIXEL_CONTROL,
                     d_pixel(patterns, more, pixel, "accuracy"), 1, confidence, sesoi=delta["VI"],
                     control=PIXEL_CONTROL)
            )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def d_pixel(table: pd.DataFrame, more: str, pixel: pd.Series, value: str = "difference") -> np.ndarray:
    """Per-seed value of ``more`` minus the (seed-free) pixel baseline."""
    return _per_seed(table, more, value).to_numpy(dtype=np.float64) - float(pixel.iloc[0])


def oip_claims(
    more: str,
    oip: Mapping[tuple[str, int], Mapping[str, Any]],
    confidence: float,
    sesoi: Mapping[str, float],
    null: str | None = None,
    silent: set[tuple[str, str]] | None = None,
    *,
    min_converged: float,
) -> list[dict[str, Any]]:
    """Claims (c) and (d) for ``more`` from the OIP stage's summaries per (variant, seed), each with
    its trained − untrained row when ``null`` (the untrained variant) has OIPs for the same seeds;
    ``sesoi`` keyed as ``compare.sesoi``; ``silent``: :func:`silent_layers`. A (d) row is *not
    converged* when a seed it averages has fewer than ``min_converged`` (``compare.min_converged``)
    of a network's live maps converged (:func:`.convergence.gate`); (c) is measured at the start."""
    delta = {k: float(sesoi.get(SESOI_KEYS[k], 0.0)) for k in ("c", "d")}
    runs = {s: m for (v, s), m in sorted(oip.items()) if v == more}
    if not runs:
        return []
    nulls = {s: m for (v, s), m in sorted(oip.items()) if v == null and s in runs} if null and null != more else {}
    wavelengths = sorted(
        int(k.removeprefix("silent_start_fraction_wl"))
        for k in next(iter(runs.values()))
        if k.startswith("silent_start_fraction_wl")
    )
    rows = []
    layer = str(next(iter(runs.values())).get("layer", ""))
    if len(wavelengths) >= 2:
        short, long = wavelengths[0], wavelengths[-1]

        def margin(m: Mapping[str, Any]) -> float:
            return float(m[f"silent_start_fraction_wl{short}"] - m[f"silent_start_fraction_wl{long}"])

        measure = f"fraction of maps silent at the start for every restart (wl {short} − wl {long})"
        rows.append(
            _row("c", f"deep maps of {more} are silent to wavelength-{short} noise more often than to "
                 f"wavelength-{long} noise", measure, layer, more, "", np.array([margin(m) for m in runs.values()]),
                 1, confidence, sesoi=delta["c"])
        )  # fmt: skip
        if nulls:
            d = np.array([margin(runs[s]) - margin(nulls[s]) for s in nulls])
            rows.append(_degenerate(
                _row("c", f"…more often in {more} than in the untrained network ({null})",
                     f"{measure}: {more} − {null}", layer, more, str(null), d, 1, confidence, sesoi=delta["c"],
                     control=UNTRAINED_CONTROL), str(null), silent or set())
            )  # fmt: skip

    def live(m: Mapping[str, Any]) -> bool:
        return bool(m.get("maps", 0) - m.get("dead_maps", 0) >= 2)

    def spread(m: Mapping[str, Any]) -> float:
        return float(m["same_map_similarity"] - m["cross_map_similarity"])

    measure = "mean OIP correlation, same map − different maps"
    seeds = [s for s, m in runs.items() if live(m)]
    rows.append(gate(
        _row("d", f"OIPs of one map of {more} agree more across restarts than OIPs of different maps",
             measure, layer, more, "", np.array([spread(runs[s]) for s in seeds]), 1, confidence, sesoi=delta["d"]),
        {more: {s: runs[s] for s in seeds}}, min_converged)
    )  # fmt: skip
    if nulls:
        seeds = [s for s in nulls if live(runs[s]) and live(nulls[s])]
        d = np.array([spread(runs[s]) - spread(nulls[s]) for s in seeds])
        row = _degenerate(
            _row("d", f"…more in {more} than in the untrained network ({null})", f"{measure}: {more} − {null}",
                 layer, more, str(null), d, 1, confidence, sesoi=delta["d"], control=UNTRAINED_CONTROL),
            str(null), silent or set())  # fmt: skip
        networks = {more: {s: runs[s] for s in seeds}, str(null): {s: nulls[s] for s in seeds}}
        rows.append(gate(row, networks, min_converged))
    return rows


def matched_step_claims(
    trajectories: pd.DataFrame,
    contrasts: Sequence[Sequence[str]],
    layer: str | None,
    confidence: float,
    sesoi: Mapping[str, float],
) -> pd.DataFrame:
    """Claim (a) at equal gradient steps (issue 26): for each ``[more, less]`` contrast whose runs
    end at different steps, the Hoyer sparsity of ``layer`` at the largest step both trajectories
    hold for every seed (the runs share the 1-2-5 steps, :mod:`cnnscope.models.steps`), paired per
    seed. ``trajectories``: the trajectory stage's tidy rows with ``variant`` and ``seed``."""
    rows: list[dict[str, Any]] = []
    if layer is None or trajectories.empty:
        return pd.DataFrame(rows, columns=COLUMNS)
    hoyer = trajectories[(trajectories["measure"] == "hoyer") & (trajectories["layer"] == layer)]
    for more, less in contrasts:
        runs = {v: hoyer[hoyer["variant"] == v] for v in (more, less)}
        if any(r.empty for r in runs.values()) or runs[more]["step"].max() == runs[less]["step"].max():
            continue
        seeds = sorted(set(runs[more]["seed"]) & set(runs[less]["seed"]))
        common = set.intersection(*(set(runs[v][runs[v]["seed"] == s]["step"]) for v in (more, less) for s in seeds))
        if not common or max(common) == 0:
            continue
        step = max(common)
        at = {v: r[r["step"] == step].set_index("seed")["value"] for v, r in runs.items()}
        d = (at[more].loc[seeds] - at[less].loc[seeds]).to_numpy(dtype=np.float64)
        rows.append(
            _row("a", f"{more} has a sparser deepest map (Hoyer) than {less} at the same number of gradient steps",
                 f"hoyer at step {step} ({more} − {less})", layer, more, less, d, 1, confidence,
                 sesoi=float(sesoi.get(SESOI_KEYS["hoyer"], 0.0)))
        )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)

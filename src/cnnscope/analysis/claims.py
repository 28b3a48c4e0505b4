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
  Jaccard of active sets within minus between classes, ``more``).

Columns ``image_ci_low``/``image_ci_high`` hold an image bootstrap where one exists: it describes
image-to-image variation within trained networks, never whether another training run would agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cnnscope.analysis.seeds import bootstrap_difference
from cnnscope.analysis.verdicts import seed_verdict
from cnnscope.errors import CnnscopeError


class ClaimError(CnnscopeError, ValueError):
    """A claim names a variant the study lacks."""


COLUMNS = [
    "claim",
    "statement",
    "measure",
    "layer",
    "variant",
    "reference",
    "n_seeds",
    "mean_difference",
    "seed_ci_low",
    "seed_ci_high",
    "sign_flip_p",
    "sign_flip_min_p",
    "verdict",
    "image_ci_low",
    "image_ci_high",
]


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


def _row(
    claim: str, statement: str, measure: str, layer: str, variant: str, reference: str, d: np.ndarray, direction: int,
    confidence: float, image_ci: tuple[float, float] = (float("nan"), float("nan")),
) -> dict[str, Any]:  # fmt: skip
    return {
        "claim": claim,
        "statement": statement,
        "measure": measure,
        "layer": layer,
        "variant": variant,
        "reference": reference,
        **seed_verdict(d, direction, confidence),
        "image_ci_low": image_ci[0],
        "image_ci_high": image_ci[1],
    }


def claims_table(
    more: str,
    less: str,
    variants: Sequence[str],
    tables: Mapping[str, pd.DataFrame],
    first_map: str | None,
    deepest_map: str | None,
    oip: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    per_image: Callable[[str, str, str], np.ndarray | None] | None = None,
    confidence: float = 0.95,
    resamples: int = 1000,
) -> pd.DataFrame:
    """The claims table. ``tables``: ``scale_free``, ``cka``, ``certainty``, ``overlap`` (as the
    compare stage writes them); ``oip``: the OIP stage's summary per (variant, seed);
    ``per_image(quantity, layer, variant)``: the ``(seeds, images)`` values of a per-image quantity
    of ``variant`` (for the image-level interval of ``more − less``)."""
    check_contrast(more, less, variants)
    rows = []

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
                     d, direction, confidence, image_ci(quantity, deepest_map))
            )  # fmt: skip
    cka = tables.get("cka")
    if cka is not None and first_map is not None and len(cka):
        to_input = cka[(cka["variant_b"] == "input") & (cka["layer"] == first_map)].rename(
            columns={"variant_a": "variant", "seed_a": "seed"}
        )
        d = _paired(to_input, more, less, "cka")
        rows.append(
            _row("a′", f"{more}'s first feature map is further from the input pixels than {less}'s",
                 f"debiased CKA to the pixels ({more} − {less})", first_map, more, less, d, -1, confidence)
        )  # fmt: skip
    cert = tables.get("certainty")
    if cert is not None and len(cert):
        d = _paired(cert, more, less, "entropy_bits", sample="eval")
        rows.append(
            _row("b", f"{more} is more certain than {less} on the evaluation sample",
                 f"mean predictive entropy, bits ({more} − {less})", "softmax", more, less, d, -1, confidence,
                 image_ci("predictive_entropy_bits", "softmax"))
        )  # fmt: skip
        probes = cert[cert["sample"] != "eval"].groupby(["variant", "seed"], as_index=False)["entropy_bits"].mean()
        d = _paired(probes, more, less, "entropy_bits")
        rows.append(
            _row("b", f"{more} is more certain than {less} on the held-out probes",
                 f"predictive entropy averaged over the probes, bits ({more} − {less})", "softmax", more, less, d, -1,
                 confidence)
        )  # fmt: skip
    if oip:
        rows += oip_claims(more, oip, confidence)
    ov = tables.get("overlap")
    if ov is not None and len(ov):
        d = _per_seed(ov, more, "difference").to_numpy(dtype=np.float64)
        first = ov[ov["variant"] == more].sort_values("seed").head(1)
        ci = (float(first["image_ci_low"].iloc[0]), float(first["image_ci_high"].iloc[0])) if len(first) else None
        rows.append(
            _row("e", f"same-class images share deep active nodes more than different classes ({more})",
                 "mean Jaccard of active nodes, within − between classes", str(ov["layer"].iloc[0]), more, "",
                 d, 1, confidence, ci or (float("nan"), float("nan")))
        )  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def oip_claims(more: str, oip: Mapping[tuple[str, int], Mapping[str, Any]], confidence: float) -> list[dict[str, Any]]:
    """Claims (c) and (d) for ``more`` from the OIP stage's summaries per (variant, seed)."""
    runs = {s: m for (v, s), m in sorted(oip.items()) if v == more}
    if not runs:
        return []
    wavelengths = sorted(
        int(k.removeprefix("silent_start_fraction_wl"))
        for k in next(iter(runs.values()))
        if k.startswith("silent_start_fraction_wl")
    )
    rows = []
    layer = str(next(iter(runs.values())).get("layer", ""))
    if len(wavelengths) >= 2:
        short, long = wavelengths[0], wavelengths[-1]
        d = np.array(
            [m[f"silent_start_fraction_wl{short}"] - m[f"silent_start_fraction_wl{long}"] for m in runs.values()]
        )
        rows.append(
            _row("c", f"deep maps of {more} are silent to wavelength-{short} noise more often than to "
                 f"wavelength-{long} noise", f"fraction of maps silent at the start for every restart "
                 f"(wl {short} − wl {long})", layer, more, "", d, 1, confidence)
        )  # fmt: skip
    live = {s: m for s, m in runs.items() if m.get("maps", 0) - m.get("dead_maps", 0) >= 2}
    d = np.array([m["same_map_similarity"] - m["cross_map_similarity"] for m in live.values()])
    rows.append(
        _row("d", f"OIPs of one map of {more} agree more across restarts than OIPs of different maps",
             "mean OIP correlation, same map − different maps", layer, more, "", d, 1, confidence)
    )  # fmt: skip
    return rows

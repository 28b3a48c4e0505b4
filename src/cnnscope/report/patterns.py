"""The report's part VI: classification by the binary pattern of the deepest map, against the heads.

The article says the convolutional part separates the classes (badly written 4s from 9s in
particular) and the head only reads the result. The compare stage scores a nearest class-mean
binary-pattern classifier (:mod:`cnnscope.analysis.pattern_classifier`) beside each network's own
head and the reference heads (the pixel MLP's) on the same held-out images; this section shows
their accuracies, the pair confusion of the pattern against **both** heads (its own network's and
the pixel MLP's), and the full confusion matrix of the pattern beside its own head's
(``tables/pattern_confusion.csv``, counts per true × predicted class, every seed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from cnnscope.viz import save_figure
from cnnscope.viz.confusion import confusion_panels

PATTERN, HEAD = "binary pattern", "network head"


class _Report(Protocol):
    folder: Path

    def add(self, *lines: str) -> None: ...

    def table(self, frame: pd.DataFrame) -> None: ...


def pair_against_heads(classify: pd.DataFrame, pm: Callable[[pd.Series], str]) -> pd.DataFrame:
    """Per network with a binary pattern: the pair confusion of its pattern, of its own head and of
    each reference head (a variant scored by its head only, e.g. the pixel MLP), ``pm`` over seeds,
    and the pattern − own head difference paired by seed."""
    nets = classify[classify["seed"] >= 0]
    patterned = list(dict.fromkeys(nets.loc[nets["classifier"] == PATTERN, "variant"]))
    references = [v for v in dict.fromkeys(nets["variant"]) if v not in patterned]
    rows = []
    for variant in patterned:
        own = nets[nets["variant"] == variant].pivot(index="seed", columns="classifier", values="pair_confusion")
        row = {"network": variant, "binary pattern": pm(own[PATTERN])}
        row["own head"] = pm(own[HEAD]) if HEAD in own else "—"
        for ref in references:
            heads = nets[(nets["variant"] == ref) & (nets["classifier"] == HEAD)]["pair_confusion"]
            row[f"{ref} head"] = pm(heads)
        row["pattern − own head (paired)"] = pm((own[PATTERN] - own[HEAD]).dropna()) if HEAD in own else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_rates(confusion: pd.DataFrame, variant: str, classifier: str) -> tuple[list[str], np.ndarray] | None:
    """The row-normalised confusion of one classifier of one network, averaged over its seeds
    (classes in the table's order); None when the table has no such rows."""
    rows = confusion[(confusion["variant"] == variant) & (confusion["classifier"] == classifier)]
    if rows.empty:
        return None
    rows = rows.astype({"true": str, "predicted": str})  # digit class names read back as numbers
    classes = list(dict.fromkeys(rows["true"]))
    rates = []
    for _, seed in rows.groupby("seed", sort=True):
        counts = seed.pivot_table(index="true", columns="predicted", values="images", aggfunc="sum")
        counts = counts.reindex(index=classes, columns=classes, fill_value=0).fillna(0).to_numpy(dtype=np.float64)
        rates.append(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1))
    return classes, np.mean(rates, axis=0)


def pattern_section(
    report: _Report,
    classify: pd.DataFrame,
    confusion: pd.DataFrame | None,
    variants: Sequence[str],
    pm: Callable[[pd.Series], str],
) -> None:
    """Accuracy, pair confusion against both heads, and the confusion matrices (one figure per network)."""
    pair = classify["pair"].dropna().iloc[0] if classify["pair"].notna().any() else ""
    report.add(
        "### Classification by activation patterns",
        "Held-out accuracy of the nearest class-mean *binary* pattern of the deepest map, beside each "
        f"network's own head on the same {int(classify['test_images'].iloc[0])} images"
        + (f", with the {pair} confusion (share of those two classes given the other label)." if pair else "."),
    )
    table = classify.groupby(["variant", "classifier"], sort=False)[["accuracy", "pair_confusion"]].agg(pm)
    report.table(table.reset_index())
    if pair:
        against = pair_against_heads(classify, pm)
        pixels = [c.removesuffix(" head") for c in against.columns if c.endswith(" head") and c != "own head"]
        report.add(
            f"**{pair} confusion of the binary pattern against the heads** — the network's own head (the same "
            "network reading the same maps through its dense layers)"
            + (f" and the head of {', '.join(f'`{v}`' for v in pixels)}, which sees only pixels" if pixels else "")
            + " (mean ± sd over seeds; the last column pairs pattern and own head by seed). Descriptive, not a "
            "tested claim:"
        )
        report.table(against)
    if confusion is None or confusion.empty:
        return
    references = [v for v in variants if confusion_rates(confusion, v, PATTERN) is None]
    shown = []
    for variant in variants:
        pattern = confusion_rates(confusion, variant, PATTERN)
        if pattern is None:
            continue
        classes, panels = pattern[0], {f"{variant}: binary pattern": pattern[1]}
        for name, label in [(variant, f"{variant}: own head"), *((r, f"{r}: head") for r in references)]:
            head = confusion_rates(confusion, name, HEAD)
            if head is not None:
                panels[label] = head[1]
        title = f"{variant}: held-out confusion of the binary pattern of the deepest map beside the heads"
        save_figure(confusion_panels(panels, classes, title), report.folder / "figures" / f"patterns_{variant}.png")
        shown.append(variant)
    seeds = int(confusion["seed"].nunique())
    for variant in shown:
        caption = (
            f"Full confusion matrix of `{variant}`'s binary-pattern classifier beside its own head's"
            + (f" and the {', '.join(f'`{r}`' for r in references)} head's" if references else "")
            + f": rows true class, each normalised to 1 and averaged over {seeds} seed(s); cells in percent, blank "
            "below 1 %. Counts per seed: `tables/pattern_confusion.csv`."
        )
        report.add(f"![{caption}](figures/patterns_{variant}.png)", f"*{caption}*")

"""The report's section on OIPs held against the data, with a link to the unit atlas.

Variants are compared on the OIP's activation ÷ its top exemplar's (scale-free), not on raw OIP
activations, whose scale differs per network; silent-on-data and silent-to-noise maps are counted
apart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cnnscope.config import Params
from cnnscope.report import collect

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cnnscope.report.assemble import Report

#: The atlas's overview figure in the report (the same figure as the atlas's ``overview.png``).
FIGURE = "atlas/oip_beside_exemplars.png"

COLUMNS = [
    "median_normalised_activation",
    "above_top_exemplar_fraction",
    "silent_on_data",
    "silent_to_noise",
    "silent_to_noise_not_on_data",
    "path_unnatural_fraction",
    "flagged",
]


def atlas_section(report: Report, params: Params, root: Path, out_dir: Path) -> None:
    """Section 4: per-variant OIP-vs-data numbers, the deepest layer's figure, the atlas link."""
    study = params.study
    runs, mapless = collect.with_maps(collect.per_run_metrics(root, "exemplars", study.variants, study.oip_seeds))
    atlas = root / params.atlas.out_dir / study.name
    report.add(
        "## 4. OIPs held against the data",
        "Stage `exemplars@<variant>-<seed>` (params `exemplars`): each map's top test images and the OIP "
        "measured against them. *Normalised activation*: the OIP's activation ÷ its top exemplar's (both the "
        "map's maximum over positions), comparable across variants. *Silent on data*: never positive on the "
        "split; *silent to noise*: no gradient from any noise start (the OIP table's `dead`). *Path unnatural*: "
        "the OIP's activations in the earlier block ends correlate less with the exemplars' than every exemplar "
        f"with the others; *flagged*: that, and ≥ {params.exemplars.far_above:g}× the top exemplar. "
        f"Mean ± std over the seeds with OIPs ({study.oip_seeds}, `study.oip_seeds`):",
    )
    report.table(collect.mean_std(runs, [c for c in COLUMNS if c in runs.columns], study.variants))
    if mapless:
        report.add(f"Without exemplars: {', '.join(f'`{v}`' for v in mapless)} (no convolution, so no feature maps).")
    figure = _overview(params)
    if figure is not None:
        caption = (
            f"Top maps of the OIP layer by their best image (seed {study.oip_seeds[0]}): each variant's OIP beside "
            'the receptive-field crops of its top exemplars. Above each OIP, "÷top r": its normalised activation '
            "(the OIP's activation ÷ the top exemplar's), in red when r > 1 (the OIP drives the map harder than any "
            'test image), black otherwise; "silent" and "no exemplars": the map is never active on the test '
            "split, so it has no exemplars to show."
        )
        report.drawn(figure, FIGURE, caption)
    # the atlas is git-ignored (hundreds of MB of images): a path to build, not a link that a clone cannot follow
    link = Path(os.path.relpath((atlas / "index.html").resolve(), out_dir.resolve()))  # README.md → atlas
    report.add(
        f"Every map of every layer, variant and seed: the unit atlas, `{link.as_posix()}` from this folder "
        "(stage `atlas`, git-ignored: `dvc repro atlas` builds it; open it from disk — in MLflow open "
        "`atlas/overview.html` of the study run)."
    )


def _overview(params: Params) -> Figure | None:
    """The atlas's overview figure, drawn here from what the atlas draws it from (the stages'
    exemplars, OIPs and the compare stage's matching), so that the report does not wait for the
    atlas site; None when no network has feature maps (nothing to show)."""
    from cnnscope.atlas.site import AtlasError
    from cnnscope.atlas.study import overview_figure, study_records

    try:
        return overview_figure(params, study_records(params, trajectories=False))
    except AtlasError:
        return None

"""DVC stage `histograms@<variant>-<seed>`: one network's per-image histograms on the bin edges the
whole study shares (:mod:`cnnscope.analysis.shared_bins`).

The edges of a layer span its range in every compared network, which the ``measures@`` stages
recorded; with them each network is binned on its own, side by side, instead of all of them in
`compare`. Reads ``activations/<variant>/seed<k>/``, every network's manifest and
``measures/*/seed*/``; writes ``histograms/<variant>/seed<k>/counts.npz``, which only `compare`
reads. A network of another architecture than the study's (the pixel ``mlp``), which `compare`
does not bin, gets an empty file.
"""

from __future__ import annotations

from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir
from cnnscope.layout import HISTOGRAMS_ROOT, MEASURES_ROOT, run_dir
from cnnscope.stage_args import network_args


def main(argv: list[str] | None = None) -> None:
    params, variant, seed = network_args(__doc__, argv)
    # the analysis (torch, sklearn, pandas) only once there is work: `--help` stays instant
    from cnnscope.analysis.measures import split_reference_heads
    from cnnscope.analysis.shared_bins import binned_layers, network_histograms, save
    from cnnscope.analysis.study.stage import open_networks, open_sets

    sets, _ = split_reference_heads(open_sets(params.extract.out_dir, params.study.variants, params.study.seeds))
    net = (variant, seed)
    counts = {}
    if net in sets:
        layers = binned_layers(sets)
        networks = open_networks(MEASURES_ROOT, sets)
        counts = network_histograms(sets[net], networks[net], networks, layers, params.compare.bins)
    out = run_dir(HISTOGRAMS_ROOT, variant, seed)
    with atomic_dir(out) as tmp:
        save(counts, tmp)
    print(f"histograms: {variant} seed {seed}: {len(counts)} histograms → {out}")


if __name__ == "__main__":
    run_stage(main)

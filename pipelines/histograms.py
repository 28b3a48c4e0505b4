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

import argparse

from cnnscope.config import load_params
from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir
from cnnscope.layout import HISTOGRAMS_ROOT, MEASURES_ROOT, run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)

    # the analysis (torch, sklearn, pandas) only once there is work: `--help` stays instant
    from cnnscope.analysis.measures import split_reference_heads
    from cnnscope.analysis.shared_bins import binned_layers, network_histograms, save
    from cnnscope.analysis.study.stage import open_networks, open_sets

    params = load_params(args.params)
    sets, _ = split_reference_heads(open_sets(params.extract.out_dir, params.study.variants, params.study.seeds))
    net = (args.variant, args.seed)
    counts = {}
    if net in sets:
        layers = binned_layers(sets)
        networks = open_networks(MEASURES_ROOT, sets)
        counts = network_histograms(sets[net], networks[net], networks, layers, params.compare.bins)
    out = run_dir(HISTOGRAMS_ROOT, args.variant, args.seed)
    with atomic_dir(out) as tmp:
        save(counts, tmp)
    print(f"histograms: {args.variant} seed {args.seed}: {len(counts)} histograms → {out}")


if __name__ == "__main__":
    run_stage(main)

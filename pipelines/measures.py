"""DVC stage `measures@<variant>-<seed>`: everything `compare` computes from one network's
activations alone — per-image moments, linear and spatial probes, class similarity, activation
scale, the scale-free statistics' robust scale, Hoyer sparsity and kurtosis, and the Gram
matrices of the CKA minibatches (:func:`cnnscope.analysis.network.network_measures`).

A stage per network so that these run side by side (``cnnscope repro``) and `compare` keeps only
what needs several networks. Reads ``activations/<variant>/seed<k>/``; writes
``measures/<variant>/seed<k>/`` (``rows.json``, ``arrays.npz``), which only `compare` reads.
"""

from __future__ import annotations

import argparse

from cnnscope.config import load_params
from cnnscope.errors import CnnscopeError, run_stage
from cnnscope.io import atomic_dir
from cnnscope.layout import MANIFEST, MEASURES_ROOT, run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)

    # the analysis (torch, sklearn, pandas) only once there is work: `--help` stays instant
    from cnnscope.activations import ActivationSet
    from cnnscope.analysis.measures import MeasureSettings
    from cnnscope.analysis.network import network_measures, save

    params = load_params(args.params)
    source = run_dir(params.extract.out_dir, args.variant, args.seed)
    if not (source / MANIFEST).is_file():
        raise CnnscopeError(
            f"no activations for {args.variant} seed {args.seed} at {source}/: run "
            f"dvc repro extract@{args.variant}-{args.seed} first"
        )
    measures = network_measures(ActivationSet(source), MeasureSettings.from_config(params.compare).network())
    out = run_dir(MEASURES_ROOT, args.variant, args.seed)
    with atomic_dir(out) as tmp:
        save(measures, tmp)
    print(f"measures: {args.variant} seed {args.seed}: {len(measures.rows['linear_probe'])} layers → {out}")


if __name__ == "__main__":
    run_stage(main)

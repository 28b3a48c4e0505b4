"""DVC stage `measures@<variant>-<seed>`: everything `compare` computes from one network's
activations alone — per-image moments, linear and spatial probes, class similarity, activation
scale, the scale-free statistics' robust scale, Hoyer sparsity and kurtosis, and the Gram
matrices of the CKA minibatches (:func:`cnnscope.analysis.network.network_measures`).

A stage per network so that these run side by side (``cnnscope repro``) and `compare` keeps only
what needs several networks. Reads ``activations/<variant>/seed<k>/``; writes
``measures/<variant>/seed<k>/`` (``rows.json``, ``arrays.npz``), which only `compare` reads.
"""

from __future__ import annotations

from cnnscope.errors import CnnscopeError, run_stage
from cnnscope.io import atomic_dir
from cnnscope.layout import MANIFEST, MEASURES_ROOT, run_dir
from cnnscope.stage_args import network_args


def main(argv: list[str] | None = None) -> None:
    params, variant, seed = network_args(__doc__, argv)
    # the analysis (torch, sklearn, pandas) only once there is work: `--help` stays instant
    from cnnscope.activations import ActivationSet
    from cnnscope.analysis.measures import MeasureSettings
    from cnnscope.analysis.network import network_measures, save

    source = run_dir(params.extract.out_dir, variant, seed)
    if not (source / MANIFEST).is_file():
        raise CnnscopeError(
            f"no activations for {variant} seed {seed} at {source}/: run cnnscope repro extract@{variant}-{seed} first"
        )
    measures = network_measures(ActivationSet(source), MeasureSettings.from_config(params.compare).network())
    out = run_dir(MEASURES_ROOT, variant, seed)
    with atomic_dir(out) as tmp:
        save(measures, tmp)
    layers = len(measures.rows["linear_probe"])
    print(f"measures: {variant} seed {seed}: {layers} layers → {out}")


if __name__ == "__main__":
    run_stage(main)

"""What the benchmarks on a finished pipeline's activations (the default study after ``dvc repro``)
share: the ``--params`` option and the study's activation sets and prepared images."""

from __future__ import annotations

import argparse

import torch

from cnnscope.activations import ActivationSet
from cnnscope.analysis.study.stage import open_sets
from cnnscope.config import Params, load_params
from cnnscope.data.prepared import PreparedData
from cnnscope.runtime import keep_freed_memory


def finished_study(description: str | None) -> tuple[Params, dict[tuple[str, int], ActivationSet], torch.Tensor]:
    """Parse ``--params``; returns the params, the activation sets of ``study.variants × study.seeds``
    (one error naming any that were not extracted) and the prepared images."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    keep_freed_memory()
    params = load_params(args.params)
    sets = open_sets(params.extract.out_dir, params.study.variants, params.study.seeds)
    return params, sets, PreparedData.load(params.data.out_dir).images

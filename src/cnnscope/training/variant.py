"""From ``params.yaml`` and the prepared data to one concrete training job (variant × seed).

Everything that can be wrong about a request — an unknown variant, a model override that is not a
model, a subset that was not prepared — fails here, before a Trainer or an MLflow run exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf.errors import OmegaConfBaseException

from cnnscope.config import ConfigError, Params, check_variant, to_container, variant_model_config
from cnnscope.data.prepared import PreparedData, subset_key
from cnnscope.models.steps import checkpoint_schedule
from cnnscope.training.datamodule import PreparedDataModule
from cnnscope.training.module import CNNModule


@dataclass(frozen=True)
class VariantJob:
    variant: str
    seed: int
    #: False: the untrained null model (evaluated, never optimised).
    train: bool
    #: ``"train"`` or the key of a nested subset of it.
    train_split: str
    #: Architecture arguments for :func:`cnnscope.models.build_model`, with ``name``.
    arch: dict[str, Any]
    #: Optimiser settings for :class:`cnnscope.training.module.CNNModule`.
    optim: dict[str, Any]
    #: Hash of everything that determines the trained weights; a checkpoint is resumed only into
    #: a job with the same fingerprint.
    fingerprint: str
    #: A step-matched control's step budget (``match_steps_of``); None: ``trainer.max_epochs`` epochs.
    max_steps: int | None
    #: Gradient steps whose weights are kept along training (:mod:`cnnscope.models.steps`).
    checkpoint_steps: tuple[int, ...]


def resolve_variant(
    params: Params, variant: str, seed: int, prepared: PreparedData, data_sha256: str | None = None
) -> VariantJob:
    study = params.study
    check_variant(study, variant)
    try:
        model_cfg = variant_model_config(params, variant)
    except OmegaConfBaseException as err:
        raise ConfigError(f"study.variant_specs.{variant}.model is invalid: {err.msg}") from None
    spec = study.variant_specs[variant]
    train_split = "train" if spec.train_subset is None else subset_key(spec.train_subset)
    if train_split not in prepared.splits and train_split not in prepared.subsets:
        raise ConfigError(
            f"variant {variant!r} trains on subset {train_split!r}, but the prepared data has only "
            f"{sorted(prepared.subsets)}: re-run the prepare stage with data.subsets including it"
        )
    arch = {
        "name": model_cfg.name.value,
        "in_channels": prepared.channels,
        "num_classes": prepared.num_classes,
        "image_size": prepared.image_size,
        "mean": [float(m) for m in prepared.mean],
        "std": [float(s) for s in prepared.std],
        "width": float(model_cfg.width),
        "hidden": int(model_cfg.hidden),
        "batch_norm": bool(model_cfg.batch_norm),
        "dropout": float(model_cfg.dropout),
        "init": model_cfg.init.value,
    }
    if model_cfg.depth is not None:
        arch["depth"] = int(model_cfg.depth)
    max_steps, steps_per_epoch = _step_budget(params, variant, prepared, train_split)
    optim = {
        "optimizer": model_cfg.optimizer.value,
        "lr": float(model_cfg.lr),
        "momentum": float(model_cfg.momentum),
        "weight_decay": float(model_cfg.weight_decay),
        "lr_schedule": model_cfg.lr_schedule.value,
        "lr_step_size": int(model_cfg.lr_step_size),
        "lr_gamma": float(model_cfg.lr_gamma),
        "max_epochs": int(params.trainer.max_epochs),
    }
    if max_steps is not None:  # the reference's schedule, step for step (its epochs are longer)
        optim["steps_per_epoch"] = steps_per_epoch
    total = max_steps if max_steps is not None else params.trainer.max_epochs * steps_per_epoch
    saved = _checkpoint_steps(params.trainer.checkpoint_steps, total, variant) if spec.train else [0]
    identity = {
        "arch": arch,
        "optim": optim,
        "trainer": to_container(params)["trainer"],
        "train": spec.train,
        "train_split": train_split,
        "max_steps": max_steps,
        "seed": seed,
        "data": data_sha256,
        "code": _code_digest(),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return VariantJob(variant, seed, spec.train, train_split, arch, optim, digest, max_steps, tuple(saved))


def _split_size(prepared: PreparedData, split: str) -> int:
    return len(prepared.split(split)[1])


def _step_budget(params: Params, variant: str, prepared: PreparedData, train_split: str) -> tuple[int | None, int]:
    """``(max_steps, steps per epoch)``: a step-matched control takes its reference's budget,
    ``trainer.max_epochs`` epochs of the reference's split (and its epoch length, for the learning-rate
    schedule); any other variant has no step budget and its own epoch length."""
    batch = params.trainer.batch_size
    ref = params.study.variant_specs[variant].match_steps_of
    if ref is None:
        return None, -(-_split_size(prepared, train_split) // batch)
    subset = params.study.variant_specs[ref].train_subset
    ref_size = _split_size(prepared, "train" if subset is None else subset_key(subset))
    if _split_size(prepared, train_split) >= ref_size:
        raise ConfigError(
            f"variant {variant!r} is step-matched to {ref!r} but its subset {train_split!r} holds as many images "
            f"as {ref!r}'s data ({ref_size}): a step-matched control needs a smaller nested subset"
        )
    per_epoch = -(-ref_size // batch)
    return params.trainer.max_epochs * per_epoch, per_epoch


def _checkpoint_steps(spec: int | list[int], total: int, variant: str) -> list[int]:
    """The steps to keep; an explicit step beyond this run fails now, before any training."""
    if not isinstance(spec, int) and max(spec) > total:
        raise ConfigError(
            f"trainer.checkpoint_steps={list(spec)} goes beyond the run of variant {variant!r}: it takes at most "
            f"{total} gradient steps on the prepared data; drop the later steps or give a count"
        )
    return checkpoint_schedule(spec if isinstance(spec, int) else list(spec), total)


def build_modules(params: Params, job: VariantJob, prepared: PreparedData) -> tuple[CNNModule, PreparedDataModule]:
    """Seed everything, then build ``job``'s LightningModule and data module — in one place, so the
    train stage and the Optuna entry point (:mod:`cnnscope.tune`) train exactly alike."""
    L.seed_everything(job.seed, workers=True, verbose=False)
    try:
        module = CNNModule(job.arch, job.optim, check_every=params.trainer.log_every_n_steps)
    except ValueError as err:
        raise ConfigError(f"model {job.arch['name']!r} cannot be built for this data: {err}") from None
    return module, PreparedDataModule(prepared, job.train_split, params.trainer.batch_size, job.seed)


def _code_digest() -> str:
    """Hash of the training and model code: a checkpoint is never resumed under changed code."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted([*(package / "training").glob("*.py"), *(package / "models").glob("*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()

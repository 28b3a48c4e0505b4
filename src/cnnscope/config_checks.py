"""The checks :func:`cnnscope.config.validate` runs once the types are merged: cross-field rules
(:func:`check_semantics`) and value ranges, lists and names (:func:`check_values`), each failing up
front with a message naming the key. The size arithmetic they need is :mod:`cnnscope.config_sizes`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from cnnscope.config import (
    ConfigError,
    ModelConfig,
    OIPConfig,
    Params,
    to_container,
    variant_model_config,
)
from cnnscope.config_analysis import OIPParameterization
from cnnscope.config_sizes import check_maps_in_layer, check_split_size, check_steps


def check_semantics(params: Params) -> None:
    """Cross-field rules that types alone cannot express."""
    study = params.study
    unknown = [v for v in study.variants if v not in study.variant_specs]
    if unknown:
        raise ConfigError(
            f"study.variants names {unknown} but study.variant_specs defines only {sorted(study.variant_specs)}"
        )
    for pair in study.contrasts:
        if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(study.variants):
            raise ConfigError(
                f"study.contrasts entry {list(pair)} must name two different variants of study.variants "
                f"({', '.join(study.variants)}), as [variant, reference]; drop it or add the variants"
            )
    stray = [s for s in study.oip_seeds if s not in study.seeds]
    if not study.oip_seeds or stray:
        raise ConfigError(
            f"study.oip_seeds={list(study.oip_seeds)} must be a non-empty subset of study.seeds="
            f"{list(study.seeds)}: OIPs are made of trained networks; list some of those seeds"
        )
    subsets = [float(s) for s in params.data.subsets]
    for name in study.variants:
        spec = study.variant_specs[name]
        if spec.train_subset is not None and float(spec.train_subset) not in subsets:
            raise ConfigError(
                f"study.variant_specs.{name}.train_subset={spec.train_subset} is not one of "
                f"data.subsets={params.data.subsets}"
            )
        bad = sorted(set(spec.model) - set(ModelConfig.__dataclass_fields__))
        if bad:
            raise ConfigError(
                f"study.variant_specs.{name}.model sets unknown keys {bad}; "
                f"model keys are: {', '.join(ModelConfig.__dataclass_fields__)}"
            )
        if "init" in spec.model:
            raise ConfigError(
                f"study.variant_specs.{name}.model sets init: model.init is one setting for the whole study "
                "(the variants share their initialisation per seed, so the untrained control is the trained "
                "networks' starting point); set model.init instead"
            )
    for key in ("val_fraction", "test_fraction"):
        value = getattr(params.data, key)
        if not 0 <= value < 1:
            raise ConfigError(f"data.{key}={value} must be in [0, 1)")
    if any(s <= 0 for s in subsets):
        raise ConfigError(f"data.subsets={params.data.subsets}: sizes must be positive")
    _check_oip(params.oip)
    check_steps(params)


def _check_oip(oip: OIPConfig) -> None:
    """The OIP parameterisation's options: ranges, and decorrelation only where it applies."""
    if oip.decorrelate and oip.parameterization != OIPParameterization.fourier:
        raise ConfigError(
            "oip.decorrelate=true needs oip.parameterization=fourier (the pixel recipe has no colour space)"
        )
    if not 0 <= oip.scale < 1:
        raise ConfigError(f"oip.scale={oip.scale} must be in [0, 1) (a relative zoom)")
    if not 0 <= oip.rotate <= 180:
        raise ConfigError(f"oip.rotate={oip.rotate} must be 0..180 degrees")
    if oip.decay < 0:
        raise ConfigError(f"oip.decay={oip.decay} must be >= 0 (1 = natural images' 1/f spectrum)")
    if oip.init_scale <= 0:
        raise ConfigError(f"oip.init_scale={oip.init_scale} must be > 0 (1 = the data's colour contrast)")


# ---------------------------------------------------------------- value checks (issue 16)
# Types alone let through values no stage can use (a negative learning rate, zero epochs or bins,
# NaN anywhere) and names that escape the repository; each would fail late — after minutes of work,
# with a traceback or a silently wrong result — or delete something. They fail here, up front.

#: Accelerators Lightning accepts by name.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: ``study.name`` names ``reports/<name>/`` and ``<atlas.out_dir>/<name>/``, both replaced as a whole.
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_OUTPUT_DIRS = (
    "data.out_dir",
    "trainer.models_dir",
    "extract.out_dir",
    "compare.out_dir",
    "oip.out_dir",
    "trajectory.out_dir",
    "exemplars.out_dir",
    "atlas.out_dir",
)


def _stage_ranges(params: Params) -> list[tuple[str, Any, bool, str]]:
    """The bounded numbers of the oip, exemplars and atlas stages: checked here, at composition,
    so that a value the stage would reject fails before any upstream stage runs."""
    o, x = params.oip, params.exemplars
    return [
        ("oip.restarts", o.restarts, o.restarts >= 2, "≥ 2 (robustness compares the noise restarts)"),
        ("oip.steps", o.steps, o.steps >= 1, "≥ 1 (gradient-ascent steps)"),
        ("oip.step_size", o.step_size, o.step_size > 0, "> 0"),
        ("oip.blur_sigma", o.blur_sigma, o.blur_sigma >= 0, "≥ 0 pixels"),
        ("oip.fourier_damping", o.fourier_damping, 0 <= o.fourier_damping < 1, "in [0, 1)"),
        ("oip.jitter", o.jitter, o.jitter >= 0, "≥ 0 pixels"),
        ("oip.convergence_tol", o.convergence_tol, o.convergence_tol > 0, "> 0"),
        ("exemplars.k", x.k, x.k >= 1, "≥ 1 (top images per map)"),
        ("exemplars.median_images", x.median_images, x.median_images >= 0, "≥ 0"),
        ("exemplars.median_sample", x.median_sample, x.median_sample >= 1, "≥ 1"),
        ("exemplars.batch_size", x.batch_size, x.batch_size >= 1, "≥ 1"),
        ("exemplars.far_above", x.far_above, x.far_above > 0, "> 0"),
        ("atlas.figure_maps", params.atlas.figure_maps, params.atlas.figure_maps >= 1, "≥ 1"),
    ]


def _ranges(params: Params) -> list[tuple[str, Any, bool, str]]:
    """(key, value, ok, rule) for every bounded number outside the OIP parameterisation's options
    (:func:`_check_oip`) and the data fractions (checked in :func:`check_semantics`)."""
    t, e, c, d = params.trainer, params.extract, params.compare, params.data
    rules = [
        ("runtime.threads", params.runtime.threads, params.runtime.threads >= 1, "≥ 1"),
        ("trainer.max_epochs", t.max_epochs, t.max_epochs >= 1, "≥ 1"),
        ("trainer.batch_size", t.batch_size, t.batch_size >= 1, "≥ 1"),
        ("trainer.num_nodes", t.num_nodes, t.num_nodes >= 1, "≥ 1"),
        ("trainer.patience", t.patience, t.patience >= 0, "≥ 0"),
        ("trainer.log_every_n_steps", t.log_every_n_steps, t.log_every_n_steps >= 1, "≥ 1"),
        ("trainer.accelerator", t.accelerator, t.accelerator in ACCELERATORS, f"one of {', '.join(ACCELERATORS)}"),
        ("extract.eval_samples", e.eval_samples, e.eval_samples >= 1, "≥ 1"),
        ("extract.batch_size", e.batch_size, e.batch_size >= 1, "≥ 1"),
        ("trajectory.eval_samples", params.trajectory.eval_samples, params.trajectory.eval_samples >= 8, "≥ 8"),
        ("trajectory.batch_size", params.trajectory.batch_size, params.trajectory.batch_size >= 4, "≥ 4 (CKA)"),
        ("trajectory.probe_samples", params.trajectory.probe_samples, params.trajectory.probe_samples >= 4, "≥ 4"),
        ("trajectory.bins", params.trajectory.bins, params.trajectory.bins >= 2, "≥ 2"),
        ("trajectory.entropy_range", params.trajectory.entropy_range, params.trajectory.entropy_range > 0, "> 0"),
        ("trajectory.maps", params.trajectory.maps, params.trajectory.maps >= 1, "≥ 1"),
        ("trajectory.oip_steps", params.trajectory.oip_steps, params.trajectory.oip_steps >= 1, "≥ 1"),
        ("compare.bins", c.bins, c.bins >= 2, "≥ 2"),
        ("compare.bootstrap", c.bootstrap, c.bootstrap >= 1, "≥ 1"),
        ("compare.confidence", c.confidence, 0 < c.confidence < 1, "in (0, 1)"),
        ("compare.max_maps", c.max_maps, c.max_maps >= 1, "≥ 1"),
        (
            "compare.linear_probe_test_fraction",
            c.linear_probe_test_fraction,
            0 < c.linear_probe_test_fraction < 1,
            "in (0, 1)",
        ),
        ("compare.scale_quantile", c.scale_quantile, 0 < c.scale_quantile <= 1, "in (0, 1]"),
        ("compare.cka_batch", c.cka_batch, c.cka_batch >= 4, "≥ 4 (the unbiased HSIC needs 4 images)"),
        ("compare.probe_grid", c.probe_grid, c.probe_grid >= 1, "≥ 1"),
        ("compare.fcp_draws", c.fcp_draws, c.fcp_draws >= 1, "≥ 1"),
        ("compare.overlap_resamples", c.overlap_resamples, c.overlap_resamples >= 0, "≥ 0"),
        ("compare.min_converged", c.min_converged, 0 <= c.min_converged <= 1, "in [0, 1]"),
        (
            "compare.confusion_pair",
            list(c.confusion_pair),
            len(c.confusion_pair) == 2 and len(set(c.confusion_pair)) == 2,
            "two different class names",
        ),
        ("data.image_size", d.image_size, d.image_size is None or d.image_size >= 1, "≥ 1 or null"),
        ("data.channels", d.channels, d.channels in (None, 1, 3), "1, 3 or null"),
        ("data.train_size", d.train_size, d.train_size is None or d.train_size >= 1, "≥ 1 or null"),
        *_stage_ranges(params),
    ]
    from omegaconf.errors import OmegaConfBaseException

    models = [("model", params.model)]
    for name in [v for v in params.study.variants if v in params.study.variant_specs]:  # others: check_semantics
        try:
            models.append((f"study.variant_specs.{name}.model", variant_model_config(params, name)))
        except OmegaConfBaseException as err:
            raise ConfigError(f"study.variant_specs.{name}.model is invalid: {err.msg}") from None
    for prefix, m in models:
        rules += [
            (f"{prefix}.lr", m.lr, m.lr > 0, "> 0"),
            (f"{prefix}.momentum", m.momentum, 0 <= m.momentum < 1, "in [0, 1)"),
            (f"{prefix}.weight_decay", m.weight_decay, m.weight_decay >= 0, "≥ 0"),
            (f"{prefix}.dropout", m.dropout, 0 <= m.dropout < 1, "in [0, 1)"),
            (f"{prefix}.width", m.width, m.width > 0, "> 0"),
            (f"{prefix}.hidden", m.hidden, m.hidden >= 1, "≥ 1"),
            (f"{prefix}.depth", m.depth, m.depth is None or m.depth >= 1, "≥ 1 or null"),
            (f"{prefix}.lr_step_size", m.lr_step_size, m.lr_step_size >= 1, "≥ 1"),
            (f"{prefix}.lr_gamma", m.lr_gamma, 0 < m.lr_gamma <= 1, "in (0, 1]"),
        ]
    return rules


def _non_finite(tree: Any, key: str = "") -> list[str]:
    """Keys (dotted) of every NaN or infinite number in a plain config tree."""
    if isinstance(tree, float):
        return [] if math.isfinite(tree) else [key]
    if isinstance(tree, dict):
        return [k for sub, value in tree.items() for k in _non_finite(value, f"{key}.{sub}" if key else str(sub))]
    if isinstance(tree, list):
        return [k for i, value in enumerate(tree) for k in _non_finite(value, f"{key}[{i}]")]
    return []


def check_values(params: Params) -> None:
    """Reject non-finite numbers, out-of-range settings, variant names that are not plain
    identifiers and output folders outside the repository — each naming the key and the fix."""
    bad = _non_finite(to_container(params))
    if bad:
        raise ConfigError(f"{', '.join(bad)} must be a finite number (got NaN or infinity): set a real value")
    for key, value, ok, rule in _ranges(params):
        if not ok:
            raise ConfigError(f"{key}={value} is out of range: it must be {rule}")
    study = params.study
    for name in [*study.variants, *study.variant_specs]:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"variant name {name!r} is not a plain identifier (letters, digits, '_', starting with a "
                "letter): it names folders and DVC stages, so rename it in study.variants and study.variant_specs"
            )
    if not _STUDY_NAME.fullmatch(study.name):
        raise ConfigError(
            f"study.name={study.name!r} is not a plain name (letters, digits, '_' or '-', no '/' or '..'): it "
            "names the folders reports/<name>/ and <atlas.out_dir>/<name>/, replaced as a whole; rename the study"
        )
    _check_lists(params)
    config = to_container(params)
    folders: dict[str, Path] = {}
    for key in _OUTPUT_DIRS:
        section, field_name = key.split(".")
        path = Path(config[section][field_name])
        if path.is_absolute() or ".." in path.parts:
            raise ConfigError(
                f"{key}={str(path)!r} points outside the repository: use a relative path inside it "
                "(outputs are DVC-tracked and replaced as a whole)"
            )
        if not path.parts:
            raise ConfigError(
                f"{key}={str(config[section][field_name])!r} is the repository itself: name a folder inside it "
                "(outputs are DVC-tracked and replaced as a whole)"
            )
        for other, taken in folders.items():
            if path == taken or taken in path.parents or path in taken.parents:
                raise ConfigError(
                    f"{key}={str(path)!r} and {other}={str(taken)!r} overlap: each stage's output folder is "
                    "replaced as a whole, so give them separate folders"
                )
        folders[key] = path


def _check_lists(params: Params) -> None:
    """Seeds and map indices: no duplicates, each in range (a repeated seed would be counted twice
    in every mean and make a seed-level verdict look better founded than it is)."""
    study, oip = params.study, params.oip
    lists: list[tuple[str, list[Any], str]] = [
        ("study.seeds", list(study.seeds), "each seed trains one network per variant"),
        ("study.oip_seeds", list(study.oip_seeds), "each seed's networks get OIPs once"),
        ("study.variants", list(study.variants), "each variant is trained once per seed"),
        ("oip.maps", list(oip.maps), "each map is optimised once"),
        ("oip.wavelengths", list(oip.wavelengths), "each wavelength is one noise start per restart"),
    ]
    for key, values, why in lists:
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(f"{key}={values} repeats {repeated}: list each once ({why})")
    if not study.seeds:
        raise ConfigError("study.seeds is empty: list at least one training seed (3 for seed-level verdicts)")
    for key, seeds in [("study.seeds", list(study.seeds)), ("study.oip_seeds", list(study.oip_seeds))]:
        if seeds != sorted(seeds):  # one meaning of "the first seed": seeds[0], the smallest
            raise ConfigError(
                f"{key}={seeds} is not in increasing order: list it as {sorted(seeds)} (the first seed, "
                "whose networks the figures and the report's single-network sections show, is the smallest)"
            )
    if not oip.wavelengths:
        raise ConfigError("oip.wavelengths is empty: list at least one noise wavelength in pixels, e.g. [1, 4]")
    for key, values in [("oip.maps", oip.maps), ("oip.evolution_maps", oip.evolution_maps)]:
        if any(m < 0 for m in values):
            raise ConfigError(f"{key}={list(values)} has a negative map index: map indices start at 0")
    if oip.focus_map is not None and oip.focus_map < 0:
        raise ConfigError(f"oip.focus_map={oip.focus_map} is a negative map index: use an index ≥ 0 or null")
    chosen: list[tuple[str, list[int | None]]] = [
        ("oip.evolution_maps", list(oip.evolution_maps)),
        ("oip.focus_map", [oip.focus_map]),
    ]
    for key, values in chosen:
        missing = [m for m in values if m is not None and oip.maps and m not in oip.maps]
        if missing:
            raise ConfigError(
                f"{key} names map(s) {missing} that oip.maps={list(oip.maps)} does not optimise: "
                "add them to oip.maps or pick from it"
            )
    if any(w < 1 for w in oip.wavelengths):
        raise ConfigError(f"oip.wavelengths={list(oip.wavelengths)}: each must be ≥ 1 pixel (1 = pixel noise)")
    if any(s < 0 for s in oip.snapshots):
        raise ConfigError(
            f"oip.snapshots={list(oip.snapshots)} has a negative step: snapshots are steps 0..oip.steps "
            "(a larger one is taken at the last step)"
        )
    check_maps_in_layer(params)
    check_split_size(params)

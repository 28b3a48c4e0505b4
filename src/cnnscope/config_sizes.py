"""Size arithmetic of the configuration: what a data source fixes (split sizes, image shape) and what
follows from it before ``prepare`` has run — a variant's gradient-step budget, the checkpoint steps
against it, ``exemplars.k`` against the searched split, and ``oip.*`` against each variant's network.
Called by :func:`cnnscope.config_checks.check_semantics` and :func:`~cnnscope.config_checks.check_values`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnscope.config import ConfigError, DataConfig, Params, ValSource, VariantSpec, variant_model_config

#: The image files an ImageFolder source reads: ``cnnscope.data.sources.IMAGE_SUFFIXES`` (a test checks),
#: not imported from there, which would make every stage that validates its config import the data
#: package.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
#: Training-pool and test-split sizes of the fixed sources, for the checks that need a run's length
#: before ``prepare`` has run (an ``imagefolder`` is checked when training starts instead).
SOURCE_SIZES: dict[str, tuple[int, int | None]] = {
    "embedded": (5000, None),
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "cifar10": (50000, 10000),
}


def planned_steps(params: Params, variant: str) -> int | None:
    """Gradient steps ``variant`` will take at most, from the source's known size (the same
    splitting arithmetic as :mod:`cnnscope.data.prepare`); None when the size is unknown here."""
    d, spec = params.data, params.study.variant_specs[variant]
    if spec.match_steps_of is not None:
        return planned_steps(params, spec.match_steps_of)
    sizes = SOURCE_SIZES.get(str(getattr(d.name, "value", d.name)))
    if sizes is None:
        return None
    pool = sizes[0] - (round(d.test_fraction * sizes[0]) if sizes[1] is None else 0)
    pool -= round(d.val_fraction * pool) if d.val_from == ValSource.train else 0
    n = min(pool, d.train_size or pool)
    if spec.train_subset is not None:
        n = min(n, round(spec.train_subset * n) if spec.train_subset <= 1 else int(spec.train_subset))
    return params.trainer.max_epochs * -(-n // params.trainer.batch_size)


def check_steps(params: Params) -> None:
    """``trainer.checkpoint_steps`` and the step-matched variants (``match_steps_of``), before any work."""
    steps, specs = params.trainer.checkpoint_steps, params.study.variant_specs
    if isinstance(steps, bool) or not isinstance(steps, int | list | tuple):
        raise ConfigError(f"trainer.checkpoint_steps={steps!r} must be a count (≥ 2) or a list of gradient steps")
    if isinstance(steps, int) and steps < 2:
        raise ConfigError(f"trainer.checkpoint_steps={steps} must be ≥ 2 (step 0 and the last, log-spaced between)")
    if isinstance(steps, list | tuple):
        if not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in steps):
            raise ConfigError(f"trainer.checkpoint_steps={list(steps)} must be a non-empty list of steps ≥ 0")
        if list(steps) != sorted(set(steps)):
            raise ConfigError(f"trainer.checkpoint_steps={list(steps)} must be sorted, each step once")
    for name in params.study.variants:
        spec, ref = specs[name], specs[name].match_steps_of
        if ref is not None:
            if ref not in specs or not specs[ref].train or specs[ref].match_steps_of is not None or not spec.train:
                raise ConfigError(
                    f"study.variant_specs.{name}.match_steps_of={ref!r} must name another trained variant of "
                    f"study.variant_specs ({', '.join(specs)}) that is not itself step-matched"
                )
            if spec.match_steps_spec is None or _as_spec(spec.match_steps_spec) != specs[ref]:
                raise ConfigError(
                    f"study.variant_specs.{name}.match_steps_spec must be a copy of study.variant_specs.{ref} "
                    f"(its step budget follows {ref}'s data, and DVC re-runs train@{name}-<seed> only when this "
                    "variant's own spec changes): write `match_steps_spec: ${..${.match_steps_of}}` beside "
                    "match_steps_of in conf/ and regenerate params.yaml (`make params`)"
                )
            if spec.train_subset is None or spec.train_subset == 1 or spec.train_subset == specs[ref].train_subset:
                raise ConfigError(
                    f"study.variant_specs.{name} is step-matched to {ref} but trains on "
                    f"{'the full split' if spec.train_subset in (None, 1) else 'the same data'} "
                    f"(train_subset={spec.train_subset}): set train_subset to a smaller nested subset of data.subsets"
                )
        elif spec.match_steps_spec is not None:
            raise ConfigError(
                f"study.variant_specs.{name}.match_steps_spec is set but match_steps_of is null: drop it, or name "
                "the reference variant in match_steps_of"
            )
        explicit = list(steps) if isinstance(steps, list | tuple) else None
        total = planned_steps(params, name) if spec.train and explicit else None
        if explicit and total is not None and explicit[-1] > total:
            raise ConfigError(
                f"trainer.checkpoint_steps={explicit} goes beyond the run of variant {name}: it takes at most "
                f"{total} gradient steps; drop the later steps or give a count (log-spaced over each run)"
            )


def _as_spec(raw: dict[str, Any]) -> VariantSpec | None:
    """``raw`` (a ``match_steps_spec`` copy) as a :class:`VariantSpec`, defaults filled in; None when it
    is not one."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(VariantSpec), raw))  # type: ignore[return-value]
    except OmegaConfBaseException:
        return None


def check_step_references(variant_specs: Mapping[str, Any]) -> None:
    """``match_steps_of`` of the composed, not yet resolved ``study.variant_specs``: a name that is
    not another trained, not step-matched variant fails here with the schema's message, before the
    interpolation of ``match_steps_spec`` (``${..${.match_steps_of}}``) would fail on it less clearly."""
    for name, spec in variant_specs.items():
        ref = spec.get("match_steps_of") if isinstance(spec, Mapping) else None
        if ref is None:
            continue
        other = variant_specs.get(ref)
        if ref == name or not isinstance(other, Mapping) or other.get("train") is False or other.get("match_steps_of"):
            raise ConfigError(
                f"study.variant_specs.{name}.match_steps_of={ref!r} must name another trained variant of "
                f"study.variant_specs ({', '.join(variant_specs)}) that is not itself step-matched"
            )


def check_split_size(params: Params) -> None:
    """``exemplars.k`` and ``exemplars.median_images`` against an upper bound of the searched split's
    size where the source fixes it (:data:`SOURCE_SIZES`); the exemplars stage checks the exact size
    (probes and validation images left out) before its work."""
    d, x = params.data, params.exemplars
    name = str(getattr(d.name, "value", d.name))
    if name not in SOURCE_SIZES:
        return
    pool, test = SOURCE_SIZES[name]
    if test is None:  # no test split of its own: it is cut from the pool
        test = round(d.test_fraction * pool)
        pool -= test
    bound = test if x.split == "test" else pool
    for key, wanted in (("k", x.k), ("median_images", x.median_images)):
        if wanted > bound:
            raise ConfigError(
                f"exemplars.{key}={wanted} images per map, but exemplars.split={x.split!r} of data.name={name} "
                f"holds at most {bound} images: set exemplars.{key} ≤ {bound}"
            )


def known_input(data: DataConfig) -> tuple[int, int] | None:
    """(channels, image side) of the prepared images when the configuration alone fixes them;
    for an ImageFolder tree without ``data.image_size``, the size of its first image (as ``prepare``
    keeps it); None when that cannot be read."""
    name = str(getattr(data.name, "value", data.name))
    if name in ("embedded", "mnist", "fashion_mnist"):
        return 1, 28
    if name == "cifar10":  # the python batches ignore data.channels / data.image_size; a JPEG tree honours them
        return (3, 32) if data.channels is None and data.image_size is None else None
    if data.channels is not None and data.image_size is not None:
        return data.channels, data.image_size
    if data.image_size is not None:  # the map counts do not depend on the channels
        return 3, data.image_size
    peeked = first_image_shape(data.root)
    return None if peeked is None else (data.channels or peeked[0], peeked[1])


def first_image_shape(root: str | None) -> tuple[int, int] | None:
    """(channels, side) of the first image of an ImageFolder tree or tarball at ``root``, from its
    header alone (the pixels are not decoded; a tarball is read only up to that image) — what
    ``prepare`` gives every image when ``data.image_size`` is null. None when there is no such
    image or it is not square (``prepare`` then says what is wrong)."""
    import tarfile

    from PIL import Image, UnidentifiedImageError

    path = Path(root) if root else None
    try:
        if path is not None and path.is_dir():
            first = _first_image(path, IMAGE_SUFFIXES)
            if first is None:
                return None
            with Image.open(first) as img:
                size, mode = img.size, img.mode
        elif path is not None and path.is_file():
            with tarfile.open(path, "r|*") as tar:
                member = next((m for m in tar if m.isfile() and Path(m.name).suffix.lower() in IMAGE_SUFFIXES), None)
                handle = tar.extractfile(member) if member is not None else None
                if handle is None:
                    return None
                with Image.open(handle) as img:
                    size, mode = img.size, img.mode
        else:
            return None
    except (OSError, tarfile.TarError, UnidentifiedImageError, EOFError):
        return None
    if size[0] != size[1]:
        return None
    return (1 if mode in ("L", "1", "I;16", "LA", "La") else 3), size[0]


def _first_image(folder: Path, suffixes: set[str]) -> Path | None:
    """The first image file in name order, depth first, listing only the folders on the way."""
    children = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for child in children:
        if child.is_file() and child.suffix.lower() in suffixes:
            return child
    for child in children:
        if child.is_dir() and (found := _first_image(child, suffixes)) is not None:
            return found
    return None


def check_maps_in_layer(params: Params) -> None:
    """``oip.layer``, ``oip.maps`` and ``oip.wavelengths`` against every variant's network, where
    the input shape is known from the configuration: the network is built (random weights, no
    data) and its target layer's map count read, so an index past the last map fails here and not
    in the oip stage after every upstream stage has run. The networks are built inside
    ``torch.random.fork_rng``: checking a configuration must not move the caller's random state (a
    test that seeded torch and then composed conf/ got other weights than the same test run later)."""
    oip, shape = params.oip, known_input(params.data)
    if shape is None:
        return
    channels, size = shape
    if any(w > size for w in oip.wavelengths):
        raise ConfigError(f"oip.wavelengths={list(oip.wavelengths)}: each must be 1..{size} pixels (the image side)")
    import torch

    with torch.random.fork_rng(devices=[]):
        for variant in [v for v in params.study.variants if v in params.study.variant_specs]:
            _check_variant_maps(params, variant, channels, size)


def _check_variant_maps(params: Params, variant: str, channels: int, size: int) -> None:
    """:func:`check_maps_in_layer` for one variant's network (built with random weights)."""
    import torch

    from cnnscope.models.networks import Arch
    from cnnscope.models.registry import MODELS

    oip, m = params.oip, variant_model_config(params, variant)
    depth = None if m.depth is None else int(m.depth)
    knobs = (float(m.width), int(m.hidden), bool(m.batch_norm), float(m.dropout), depth, m.init.value)
    try:
        net = MODELS[m.name.value](Arch(channels, 10, size, [0.0] * channels, [1.0] * channels, *knobs))
    except (ValueError, TypeError, RuntimeError):  # the train stage says why this network cannot be built
        return
    if oip.layer is None and not net.conv_layers:  # no feature maps (a pixel MLP): the oip stage records that
        return
    layer = oip.layer if oip.layer is not None else net.conv_layers[-1]
    if layer not in net.layer_names:
        raise ConfigError(
            f"oip.layer={layer!r} is not a layer of variant {variant!r} ({m.name.value}): valid layers are "
            f"{', '.join(net.layer_names)}; or null for the deepest convolution"
        )
    with torch.no_grad():
        n_maps = int(net.eval().truncated(layer)(torch.zeros(1, channels, size, size)).shape[1])
    beyond = [i for i in oip.maps if i >= n_maps]
    if beyond:
        raise ConfigError(
            f"oip.maps={list(oip.maps)}: {beyond} out of range for layer {layer} of variant {variant!r}, "
            f"which has {n_maps} maps: use indices 0..{n_maps - 1}, or [] for all"
        )

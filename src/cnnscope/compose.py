"""Compose ``conf/`` into ``params.yaml`` the way ``dvc exp run`` does, for plain ``dvc repro``.

``dvc exp run -S ...`` composes ``conf/`` itself (``[hydra] enabled = true`` in ``.dvc/config``),
but ``dvc repro`` reads ``params.yaml`` as committed. ``python -m cnnscope.compose [overrides]``
regenerates it after editing ``conf/``; a test fails when the committed file has drifted. A bad
override or value ends in one line naming it (and, for a config group, its valid choices) and exit
status 2; ``params.yaml`` is then left as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from cnnscope.config import ConfigError, check_renamed, validate
from cnnscope.config_sizes import check_step_references
from cnnscope.errors import run_stage
from cnnscope.io import atomic_write
from cnnscope.oip import OIPSettings

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def group_choices(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The options of config group ``group`` (the YAML files in ``conf/<group>/``)."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _unknown_option(overrides: list[str], conf_dir: Path) -> str | None:
    """'model=resnet' → a line naming the valid choices, for the first override that picks an
    option its group does not have."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        group = conf_dir / key
        if sep and group.is_dir() and value not in group_choices(key, conf_dir):
            choices = ", ".join(group_choices(key, conf_dir))
            return f"unknown {key} {value!r}: choose one of {choices} (files in conf/{key}/)"
    return None


def compose_params(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The plain dict that ``conf/`` composes to with ``overrides`` (validated).

    Raises :class:`ConfigError` with one line for anything Hydra or the schema rejects; an override
    of a renamed key fails naming the new key (Hydra alone would only say the old one is unknown).
    """
    overrides = overrides or []
    check_renamed(o.split("=", 1)[0].lstrip("+~") for o in overrides)
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
            cfg = compose(config_name="config", overrides=overrides)
        check_step_references(OmegaConf.to_container(cfg.study.variant_specs, resolve=False))  # type: ignore[arg-type]
        params: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    except MissingConfigException as err:
        raise ConfigError(_unknown_option(overrides, conf_dir) or str(err).splitlines()[0]) from None
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"cannot compose conf/ with {overrides}: {str(err).splitlines()[0]}") from None
    # oip.noise and oip.suppression are checked against the OIP registries here and by the oip stage,
    # not by config.validate, which every stage runs (see cnnscope.config)
    OIPSettings.from_config(validate(params).oip)
    return params


def model_knobs(name: str, conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The architecture keys that ``conf/model/<name>.yaml`` (over ``conf/base/model.yaml``) sets: what
    :func:`cnnscope.models.build_model` takes besides the data's shape, for a network built outside
    a stage (tests, benchmarks); ``depth`` is left out when null (the architecture's own), as the
    train stage leaves it out of a checkpoint."""
    from dataclasses import fields

    from cnnscope.models.networks import Arch  # torch: only for the callers that build a network

    model = compose_params([f"model={name}"], conf_dir)["model"]
    knobs = {f.name: model[f.name] for f in fields(Arch) if f.name in model}
    return {k: v for k, v in knobs.items() if not (k == "depth" and v is None)}


def main(argv: list[str] | None = None) -> None:
    overrides = sys.argv[1:] if argv is None else argv
    params = compose_params(overrides)
    with atomic_write("params.yaml") as fh:
        yaml.safe_dump(params, fh, sort_keys=False)
    print(f"wrote params.yaml ({len(overrides)} overrides)")


if __name__ == "__main__":
    run_stage(main)

"""Compose ``conf/`` into ``params.yaml`` the way ``dvc exp run`` does, for plain ``dvc repro``.

``dvc exp run -S ...`` composes ``conf/`` itself (``[hydra] enabled = true`` in ``.dvc/config``),
but ``dvc repro`` reads ``params.yaml`` as committed. ``python -m cnnscope.compose [overrides]``
regenerates it after editing ``conf/``; a test fails when the committed file has drifted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cnnscope.config import check_renamed, validate
from cnnscope.errors import run_stage
from cnnscope.io import atomic_write
from cnnscope.oip import OIPSettings

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_params(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The plain dict that ``conf/`` composes to with ``overrides`` (validated). An override of a
    renamed key fails naming the new key (Hydra alone would only say the old one is unknown)."""
    check_renamed(o.split("=", 1)[0].lstrip("+~") for o in overrides or [])
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
        cfg = compose(config_name="config", overrides=overrides or [])
    params: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    # oip.noise and oip.suppression are checked against the OIP registries here and by the oip stage,
    # not by config.validate, which every stage runs (see cnnscope.config)
    OIPSettings.from_config(validate(params).oip)
    return params


def main(argv: list[str] | None = None) -> None:
    overrides = sys.argv[1:] if argv is None else argv
    params = compose_params(overrides)
    with atomic_write("params.yaml") as fh:
        yaml.safe_dump(params, fh, sort_keys=False)
    print(f"wrote params.yaml ({len(overrides)} overrides)")


if __name__ == "__main__":
    run_stage(main)

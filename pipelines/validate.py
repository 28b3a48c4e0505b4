"""DVC stage `validate`: the whole of ``params.yaml`` checked before any other stage runs.

DVC removes a stage's outputs before it starts the stage's command, so a setting that a stage
rejects would still cost that stage's last good outputs. This stage sits at the root of the graph
(``prepare`` depends on its output, every other stage on ``prepare``'s) and tracks every
parameter: a rejected setting stops ``dvc repro`` / ``dvc exp run`` here, with one
``cnnscope: error: …`` line, before DVC touches any other stage. Its output, ``.validated``, is
the same few bytes for every valid configuration, so a valid change re-runs this stage and
nothing else that does not read the changed keys.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnscope.config import load_params
from cnnscope.errors import run_stage
from cnnscope.io import atomic_write

#: The stage's output; its content never depends on the configuration.
VALIDATED = Path(".validated")
CONTENT = "params.yaml passed cnnscope's checks (pipelines/validate.py)\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--params", default="params.yaml", help="configuration to check (default: params.yaml)")
    args = parser.parse_args(argv)
    from cnnscope.oip import OIPSettings  # torch: after --help

    params = load_params(args.params)
    OIPSettings.from_config(params.oip)  # oip.noise and oip.suppression against the OIP registries
    with atomic_write(VALIDATED) as fh:
        fh.write(CONTENT)
    print(f"{args.params} is valid")


if __name__ == "__main__":
    run_stage(main)

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

from pathlib import Path

from cnnscope.config import Params
from cnnscope.errors import run_stage
from cnnscope.io import atomic_write
from cnnscope.stage_args import stage_args

#: The stage's output; its content never depends on the configuration.
VALIDATED = Path(".validated")
CONTENT = "params.yaml passed cnnscope's checks (pipelines/validate.py)\n"
#: ``trainer.accelerator`` values every machine satisfies (Lightning picks what is there, or the CPU).
NEEDS_NO_DEVICE = ("auto", "cpu")


def check_machine(params: Params) -> None:
    """What a setting asks of this machine, checked here for the same reason as the keys (a stage
    that found it would find it after DVC removed that stage's outputs): the device of
    ``trainer.accelerator``, the MLflow store (``tracking.uri`` or ``MLFLOW_TRACKING_URI``; it must
    answer within seconds, and a store's folder is never created) and the folder or tarball of
    ``data.root``. Found by ``benchmarks/hostile_cases.py``. Runs whenever DVC runs this stage: when
    ``params.yaml`` changed to a configuration DVC has not validated before."""
    from cnnscope.data.sources import DataError
    from cnnscope.io import resolve_user_path
    from cnnscope.tracking_store import preflight

    if str(params.trainer.accelerator) not in NEEDS_NO_DEVICE:  # Lightning (~5 s to import) only to look
        from cnnscope.training.recipe import check_accelerator

        check_accelerator(params.trainer)
    preflight(params.tracking.uri)
    source = str(getattr(params.data.name, "value", params.data.name))
    root = params.data.root
    if source != "embedded" and root is not None and not params.data.download and not resolve_user_path(root).exists():
        raise DataError(
            f"data.root={root} does not exist: point it at the folder or tarball holding the {source} data"
            + ("" if source == "imagefolder" else ", or set data.download=true to fetch it")
        )


def main(argv: list[str] | None = None) -> None:
    params, args = stage_args(__doc__, argv)
    from cnnscope.oip import OIPSettings  # torch: after --help

    OIPSettings.from_config(params.oip)  # oip.noise and oip.suppression against the OIP registries
    check_machine(params)
    with atomic_write(VALIDATED) as fh:
        fh.write(CONTENT)
    print(f"{args.params} is valid")


if __name__ == "__main__":
    run_stage(main)

"""Training: the in-memory data module, the LightningModule, the fit/test recipe, resumable runs.

Downstream stages never import this package: they load checkpoints with
:func:`cnnscope.models.load_model`.
"""

from cnnscope.training.datamodule import PreparedDataModule, TensorBatches
from cnnscope.training.module import CNNModule, NonFiniteLossError
from cnnscope.training.recipe import (
    HISTORY_COLUMNS,
    TrainResult,
    check_accelerator,
    fit_and_test,
    make_trainer,
    test_only,
)
from cnnscope.training.rundir import RunStart, promote, resume_point, start_or_resume, work_dir
from cnnscope.training.variant import VariantJob, build_modules, resolve_variant

__all__ = [
    "HISTORY_COLUMNS",
    "CNNModule",
    "NonFiniteLossError",
    "PreparedDataModule",
    "RunStart",
    "TensorBatches",
    "TrainResult",
    "VariantJob",
    "build_modules",
    "check_accelerator",
    "fit_and_test",
    "make_trainer",
    "promote",
    "resolve_variant",
    "resume_point",
    "start_or_resume",
    "test_only",
    "work_dir",
]

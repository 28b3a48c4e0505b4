"""Hydra multirun entry point for exploring hyperparameters outside DVC (Optuna, SLURM).

``python -m cnnscope.tune -m +hparams_search=optuna`` composes ``conf/`` per trial, prepares the
data in memory, trains the study's first variant with its first seed through the same Lightning
recipe as the ``train`` stage, logs the trial to MLflow and returns the best validation accuracy
for the sweeper to maximise. DVC sweeps (``dvc exp run --queue -S ...``) remain the way to
produce versioned results; this is for finding where to look.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from cnnscope import tracking
from cnnscope.config import to_container, validate
from cnnscope.data.prepare import build_prepared
from cnnscope.data.sources import load_source
from cnnscope.runtime import keep_freed_memory
from cnnscope.training import build_modules, check_accelerator, fit_and_test, resolve_variant


@hydra.main(config_path="../../conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    keep_freed_memory()
    params = validate(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    check_accelerator(params.trainer)
    experiment = f"{params.tracking.experiment}-tune"
    with tracking.stage_tracking(experiment, params.tracking.uri) as run:  # the store: before any work
        variant, seed = params.study.variants[0], params.study.seeds[0]
        prepared = build_prepared(load_source(params.data), params.data)
        job = resolve_variant(params, variant, seed, prepared)
        module, data = build_modules(params, job, prepared)
        trial = HydraConfig.get().job.num
        logger = tracking.mlflow_logger(
            experiment,
            run_name=f"trial-{trial}",
            tags={**tracking.run_tags(variant, seed, params.study.name, None), "cnnscope.trial": str(trial)},
            uri=run.uri,
        )
        run.own(str(logger.run_id))
        tracking.log_params(logger, to_container(params))
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        result = fit_and_test(module, data, params.trainer, out_dir, logger, None, progress=False)
    return float(result.best_val_acc or 0.0)


if __name__ == "__main__":
    main()

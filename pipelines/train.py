"""DVC stage `train@<variant>-<seed>`: train (or, for the null model, only evaluate) one variant.

Writes ``models/<variant>/seed<k>/`` (initial.ckpt, best.ckpt, last.ckpt, mlflow_run_id.txt, confusion.png,
confusion.csv, provenance.json, run_state.json; the weights along training in checkpoints/step<k>.ckpt),
``metrics/train/<variant>_seed<k>.json`` and
``plots/train/<variant>_seed<k>.csv``; one MLflow run per variant and seed, nested under the study's
run. The run trains in ``models/<variant>/.seed<k>.partial/`` and replaces the folder only when it
succeeded; an interrupted run of the same configuration resumes from its ``last.ckpt``.
"""

from __future__ import annotations

from cnnscope import tracking
from cnnscope.errors import run_stage
from cnnscope.layout import BEST_CKPT, INITIAL_CKPT, history_path, run_dir
from cnnscope.progress import interactive
from cnnscope.stage_args import stage_args


def main(argv: list[str] | None = None) -> None:
    params, args = stage_args(
        __doc__,
        argv,
        network=True,
        extra=lambda p: p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)"),
    )
    from lightning.pytorch.utilities import rank_zero_only  # Lightning and torch: after --help

    from cnnscope.models import save_checkpoint
    from cnnscope.models.steps import step_file
    from cnnscope.training import build_modules, fit_and_test, test_only
    from cnnscope.training import stage as steps
    from cnnscope.training.checkpoints import StepCheckpoints
    from cnnscope.training.rundir import promote

    rank0 = rank_zero_only.rank == 0  # DDP re-executes this script; only rank 0 touches files
    steps.check_request(params, args.variant)
    # the MLflow store (rank 0) before loading any data; the run ends FINISHED only with the stage
    with tracking.stage_tracking(params.tracking.experiment, params.tracking.uri, check=rank0) as run:
        uri = run.uri
        job, prepared, data_sha = steps.load_job(params, args.variant, args.seed)
        module, data = build_modules(params, job, prepared)
        out_dir = run_dir(params.trainer.models_dir, job.variant, job.seed)
        begin = steps.start(out_dir, job, uri, rank0)
        logger, run_id = steps.open_run(params, job, begin, data_sha, uri, rank0)
        run.own(run_id)
        config = steps.resolved_config(params, job)
        progress = not args.no_progress and interactive()  # no redrawn bars in logs (CI, cnnscope repro)
        if run_id is not None and begin.resume is None:
            steps.log_config(logger, config, job)
        if job.train:
            if begin.resume is None:  # the weights training starts from, for trained-minus-initial kernels
                save_checkpoint(module.model, begin.work / INITIAL_CKPT)
            along = StepCheckpoints(begin.work, job.checkpoint_steps)  # weights along training: trajectory stage
            result = fit_and_test(
                module, data, params.trainer, begin.work, logger, begin.resume, progress, job.max_steps, [along]
            )
        else:
            save_checkpoint(module.model, begin.work / BEST_CKPT)
            save_checkpoint(module.model, step_file(begin.work, 0))  # its trajectory: the one point it has
            result = test_only(module, data, params.trainer, begin.work, logger, progress)
        if run_id is None:
            return
        steps.write_outputs(config, job, result, begin.work, data)
        promote(begin.work, out_dir, job.fingerprint)
        files = [out_dir / name for name in steps.ARTIFACTS] + [history_path(job.variant, job.seed)]
        tracking.attach(run_id, uri, files=files, stage="train")
    print(
        f"{job.variant} seed {job.seed}: test_acc={result.test_acc:.4f} test_loss={result.test_loss:.4f} "
        f"epochs={result.epochs}{' (resumed)' if begin.resume else ''} → {out_dir} (MLflow run {run_id})"
    )


if __name__ == "__main__":
    run_stage(main)

"""DVC stage `trajectory@<variant>-<seed>`: how every map of one network developed over training.

Reads the weights kept along training (``models/<variant>/seed<k>/checkpoints/step*.ckpt``,
``trainer.checkpoint_steps``) and the prepared data; writes ``trajectory/<variant>/seed<k>/`` —
``trajectory.csv`` (per checkpoint and map layer: Hoyer sparsity, normalised entropy, CKA to the
initial and the final network, spatial-probe accuracy; the test accuracy), ``maps.csv`` (the tracked
deep maps' top-image class and OIP objective per checkpoint), ``oips.pt`` (their OIPs) and
``index.json`` — atomically.
"""

from __future__ import annotations

import time

from cnnscope.config import to_container
from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir, provenance, write_json
from cnnscope.layout import TRAJECTORY_TABLE, run_dir
from cnnscope.stage_args import network_args


def main(argv: list[str] | None = None) -> None:
    params, variant, seed = network_args(__doc__, argv)
    # torch: after --help, and in the runner's warm server rather than the process DVC started
    from cnnscope.data.prepared import PreparedData
    from cnnscope.models import best_device
    from cnnscope.oip.color import colour_sqrt
    from cnnscope.trajectory.run import SavedNetworks, eval_images, run_trajectory

    start = time.perf_counter()
    data = PreparedData.load(params.data.out_dir)
    models = SavedNetworks(run_dir(params.trainer.models_dir, variant, seed), best_device())
    colours = colour_sqrt(data.split("train")[0]) if params.oip.decorrelate else None
    sample, classes = eval_images(data, params.trajectory.eval_samples, params.trajectory.order_seed), data.classes
    del data  # the pass needs its sample, not the dataset (peak memory, issue 26)
    trajectory = run_trajectory(params, models, sample, classes, colours)
    config = to_container(params)
    record = provenance({"trajectory": config["trajectory"], "oip": config["oip"]}, params.data.out_dir)
    out = run_dir(params.trajectory.out_dir, variant, seed)
    with atomic_dir(out) as tmp:
        trajectory.save(tmp)
        write_json(
            tmp / "index.json", {"variant": variant, "seed": seed, "steps": sorted(models), "provenance": record}
        )
    print(
        f"trajectory {variant} seed {seed}: {len(models)} checkpoints, {len(trajectory.tensors['maps'])} maps "
        f"followed, {time.perf_counter() - start:.1f} s → {out / TRAJECTORY_TABLE}"
    )


if __name__ == "__main__":
    run_stage(main)

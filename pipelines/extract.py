"""DVC stage `extract@<variant>-<seed>`: capture every requested layer of one trained variant.

Reads ``models/<variant>/seed<k>/best.ckpt`` and the prepared data; writes
``activations/<variant>/seed<k>/`` — one ``.npy`` per image group (``probe``, ``eval``) and stored
layer, the groups' uint8 images, the learned first-layer kernels and a ``manifest.json`` with
shapes, sample ids, labels, probe names, provenance and the recipes of the layers recomputed on read
(the convolution on the input, ReLU, pooling, flatten).
The evaluation sample is a class-stratified choice of ``extract.eval_samples`` test images that is
the same for every variant and seed.
"""

from __future__ import annotations

from pathlib import Path

from cnnscope.config import to_container, variant_model_config
from cnnscope.errors import CnnscopeError, run_stage
from cnnscope.io import atomic_dir, file_sha256, provenance
from cnnscope.layout import BEST_CKPT, best_checkpoint, run_dir
from cnnscope.stage_args import network_args


def _checkpoint(models_dir: Path, variant: str, seed: int) -> Path:
    """The variant's checkpoint, or an error listing the checkpoints that do exist."""
    path = best_checkpoint(models_dir, variant, seed)
    if not path.is_file():
        found = sorted(str(p.parent.relative_to(models_dir)) for p in models_dir.glob(f"*/seed*/{BEST_CKPT}"))
        raise CnnscopeError(
            f"no checkpoint for variant {variant!r} seed {seed} at {path}; checkpoints found: "
            f"{', '.join(found) or 'none'}. Run the train stage first (cnnscope repro train@{variant}-{seed})."
        )
    return path


def main(argv: list[str] | None = None) -> None:
    params, variant, seed = network_args(__doc__, argv)
    import torch  # after the command line, so --help is quick

    from cnnscope.activations import ImageGroup, extract_activations, resolve_layers, stratified_sample
    from cnnscope.data.prepared import PreparedData
    from cnnscope.models import best_device, load_for_config

    cfg = params.extract
    expected = variant_model_config(params, variant).name.value
    data_dir = Path(params.data.out_dir)
    data = PreparedData.load(data_dir)
    ckpt = _checkpoint(Path(params.trainer.models_dir), variant, seed)
    shape = (data.channels, data.image_size, data.num_classes)
    rerun = f"cnnscope repro train@{variant}-{seed}"
    model = load_for_config(ckpt, expected, rerun, shape, map_location=best_device())
    layers = resolve_layers(model, cfg.layers)

    test_ids = data.splits["test"]
    eval_ids = stratified_sample(test_ids, data.labels[test_ids], cfg.eval_samples)
    probe_ids = data.splits.get("probe", torch.zeros(0, dtype=torch.long))
    groups = {
        "probe": ImageGroup(data.images[probe_ids], probe_ids, data.labels[probe_ids], list(data.probe_names)),
        "eval": ImageGroup(data.images[eval_ids], eval_ids, data.labels[eval_ids]),
    }
    record = provenance(to_container(params)["extract"], data_dir)
    record.update(variant=variant, seed=seed, checkpoint=str(ckpt), checkpoint_sha256=file_sha256(ckpt))
    out = run_dir(cfg.out_dir, variant, seed)
    with atomic_dir(out) as tmp:
        extract_activations(
            model, groups, layers, tmp, cfg.batch_size, cfg.float16, data.classes, {"provenance": record}
        )
    print(
        f"extract: {variant} seed {seed}: {len(layers)} layers × {len(eval_ids)} eval + "
        f"{len(probe_ids)} probe images → {out}"
    )


if __name__ == "__main__":
    run_stage(main)

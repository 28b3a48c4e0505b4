"""DVC stage `exemplars@<variant>-<seed>`: dataset exemplars of every map, and the OIPs held against them.

Reads ``models/<variant>/seed<k>/best.ckpt``, the prepared data and, for a seed of
``study.oip_seeds``, the OIP stage's ``oip/<variant>/seed<k>/``; writes
``exemplars/<variant>/seed<k>/`` — ``exemplars.pt`` (top-k and median images per map with their
receptive-field crops), one ``<layer>.csv`` per layer, ``against_data.csv`` (normalised OIP
activation, silent flags, path check; only where OIPs were made) and ``index.json`` — and
``metrics/exemplars/<variant>_seed<k>.json``, all atomically.
"""

from __future__ import annotations

from cnnscope.config import ConfigError, to_container
from cnnscope.errors import run_stage
from cnnscope.io import atomic_dir, atomic_write, file_sha256, provenance, write_json
from cnnscope.layout import AGAINST_DATA, EXEMPLARS, metrics_path, run_dir
from cnnscope.network_stage import load_network, write_no_maps
from cnnscope.stage_args import network_args


def main(argv: list[str] | None = None) -> None:
    params, variant, seed = network_args(__doc__, argv)
    from cnnscope.activations.exemplars import (  # torch: after the command line, so --help is quick
        default_layers,
        find_exemplars,
        save_exemplars,
        split_images,
    )
    from cnnscope.data.prepared import PreparedData

    cfg = params.exemplars
    data = PreparedData.load(params.data.out_dir)
    model, checkpoint = load_network(params, variant, seed, (data.channels, data.image_size, data.num_classes))
    images, ids = split_images(data, cfg.split)
    for key, wanted in (("k", cfg.k), ("median_images", cfg.median_images)):  # the split's size is known only now
        if wanted > len(ids):
            raise ConfigError(
                f"exemplars.{key}={wanted} images per map, but exemplars.split={cfg.split!r} has {len(ids)} images "
                f"(probes excluded): set exemplars.{key} ≤ {len(ids)}, or search a larger split"
            )
    layers = list(cfg.layers) or default_layers(model)
    out = run_dir(cfg.out_dir, variant, seed)
    metrics_file = metrics_path("exemplars", variant, seed)
    if not layers:  # the pixel mlp: nothing to rank images for
        return write_no_maps(out, metrics_file, {"layers": [], "split": cfg.split, "images": len(ids)})
    from cnnscope.oip.against_data import against_oip_outputs, data_summary, summary
    from cnnscope.oip.generate import default_layer

    exemplars = find_exemplars(model, images, ids, layers, cfg.k, cfg.median_images, cfg.median_sample, cfg.batch_size)
    focus = params.oip.layer or default_layer(model)  # the OIP layer: its maps are held against the data
    if focus not in exemplars:
        raise ConfigError(
            f"oip.layer={focus!r} is not among exemplars.layers={layers}: add it there, or leave "
            "exemplars.layers empty (every layer with feature maps)"
        )
    has_oips = seed in params.study.oip_seeds
    if has_oips:
        oip_dir = run_dir(params.oip.out_dir, variant, seed)
        against = against_oip_outputs(model, oip_dir, exemplars, images, ids, cfg.far_above)

    record = provenance(to_container(params)["exemplars"], params.data.out_dir)
    record.update(variant=variant, seed=seed, checkpoint_sha256=file_sha256(checkpoint))
    with atomic_dir(out) as tmp:
        save_exemplars(exemplars, tmp / EXEMPLARS)
        for name, ex in exemplars.items():
            with atomic_write(tmp / f"{name}.csv") as fh:
                ex.table().to_csv(fh, index=False, float_format="%.6g")
        if has_oips:
            with atomic_write(tmp / AGAINST_DATA) as fh:
                against.to_csv(fh, index=False, float_format="%.6g")
        write_json(tmp / "index.json", {"layers": layers, "split": cfg.split, "images": len(ids), "provenance": record})
    metrics = summary(against) if has_oips else data_summary(exemplars[focus])
    write_json(metrics_file, metrics)
    held = (
        f"median OIP ÷ top exemplar {metrics['median_normalised_activation']:.3g}, {metrics['flagged']} flagged"
        if has_oips
        else "no OIPs for this seed (study.oip_seeds)"
    )
    print(f"exemplars {variant} seed{seed}: {len(layers)} layers over {len(ids)} {cfg.split} images; {held} → {out}")


if __name__ == "__main__":
    run_stage(main)

"""params.yaml stays what conf/ composes to, and bad configuration fails early and clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cnnscope.compose import compose_params
from cnnscope.config import ConfigError, load_params, validate, variant_model_config

REPO = Path(__file__).resolve().parents[1]


def test_params_yaml_is_what_conf_composes_to() -> None:
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == compose_params(), "params.yaml is stale: run `make params` and commit it"


@pytest.mark.parametrize("source", ["embedded", "mnist", "fashion_mnist", "cifar10"])
def test_every_data_option_composes(source: str) -> None:
    assert compose_params([f"data={source}"])["data"]["name"] == source


def test_overrides_compose_like_dvc_exp_run() -> None:
    params = compose_params(["data=mnist", "trainer.max_epochs=5", "model.lr=0.01"])
    assert params["trainer"]["max_epochs"] == 5 and params["model"]["lr"] == 0.01


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.max_epoch"):
        validate({"trainer": {"max_epoch": 3}})


def test_bad_choice_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"data\.name.*embedded.*mnist.*cifar10"):
        validate({"data": {"name": "svhn"}})


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.batch_size"):
        validate({"trainer": {"batch_size": "large"}})


def test_variant_must_be_defined() -> None:
    raw = {"study": {"variants": ["benchmark", "wide"], "variant_specs": {"benchmark": {}}}}
    with pytest.raises(ConfigError, match=r"\['wide'\].*defines only \['benchmark'\]"):
        validate(raw)


def test_variant_subset_must_be_prepared() -> None:
    raw = {"study": {"variants": ["dummy"], "variant_specs": {"dummy": {"train_subset": 0.3}}}}
    with pytest.raises(ConfigError, match=r"train_subset=0.3 is not one of data.subsets"):
        validate(raw)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cka_batch", 2, r"compare\.cka_batch=2 must be >= 4"),
        ("scale_quantile", 0.0, r"compare\.scale_quantile=0.0 must be in \(0, 1\]"),
        ("confusion_pair", ["4"], r"compare\.confusion_pair=\['4'\] must name two different classes"),
    ],
)
def test_measure_keys_are_checked(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate({"compare": {key: value}})


def test_variant_overrides_model() -> None:
    params = load_params(REPO / "params.yaml")
    sgd = variant_model_config(params, "sgd")
    assert sgd.optimizer.value == "sgd" and sgd.name == params.model.name


def test_schema_defaults_match_conf_defaults() -> None:
    """A key missing from params.yaml falls back to the schema: it must mean what conf/ means."""
    from omegaconf import OmegaConf

    from cnnscope.config import Params

    schema = OmegaConf.to_container(OmegaConf.structured(Params), enum_to_str=True)
    composed = compose_params()
    for section in ("model", "trainer", "extract", "compare", "oip", "tracking"):
        assert schema[section] == composed[section], section


def test_dvc_yaml_takes_output_folders_from_params() -> None:
    """Changing an output folder in the config moves the stage's outs and deps with it: dvc.yaml
    names every folder through its param, never through the default path."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    paths = [
        str(next(iter(entry)) if isinstance(entry, dict) else entry)
        for stage in stages.values()
        for entry in [*stage.get("deps", []), *stage.get("outs", [])]
    ]
    for section, key in [
        ("data", "out_dir"),
        ("trainer", "models_dir"),
        *((s, "out_dir") for s in ("extract", "compare", "oip")),
    ]:
        default = params[section][key]
        assert f"${{{section}.{key}}}" in "\n".join(paths), f"{section}.{key} is not used in dvc.yaml"
        hard_coded = [p for p in paths if p == default or p.startswith(f"{default}/")]
        assert not hard_coded, f"dvc.yaml hard-codes {hard_coded} instead of ${{{section}.{key}}}"

"""params.yaml stays what conf/ composes to, and bad configuration fails early and clearly."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml

from cnnscope.compose import compose_params
from cnnscope.config import (
    RENAMED,
    ConfigError,
    DataSource,
    ModelName,
    Params,
    load_params,
    validate,
    variant_model_config,
)
from cnnscope.data.sources import SOURCES
from cnnscope.models import MODELS
from cnnscope.oip import OIPError
from cnnscope.oip.param import NOISE_KINDS
from cnnscope.oip.transforms import SUPPRESSIONS

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


def committed(**sections: dict[str, Any]) -> dict[str, Any]:
    """The committed params.yaml with ``sections`` updated key by key."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, values in sections.items():
        raw[name].update(values)
    return raw


def test_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.max_epoch"):
        validate(committed(trainer={"max_epoch": 3}))


def test_bad_choice_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match=r"data\.name.*embedded.*mnist.*cifar10"):
        validate(committed(data={"name": "svhn"}))


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.batch_size"):
        validate(committed(trainer={"batch_size": "large"}))


def test_variant_must_be_defined() -> None:
    raw = committed(study={"variants": ["benchmark", "wide"], "variant_specs": {"benchmark": {}}})
    with pytest.raises(ConfigError, match=r"\['wide'\].*defines only \['benchmark'\]"):
        validate(raw)


@pytest.mark.parametrize("oip_seeds", [[], [0, 3]])
def test_oip_seeds_must_be_trained_seeds(oip_seeds: list[int]) -> None:
    with pytest.raises(
        ConfigError, match=r"study\.oip_seeds=.* must be a non-empty subset of study\.seeds=\[0, 1, 2\]"
    ):
        validate(committed(study={"seeds": [0, 1, 2], "oip_seeds": oip_seeds}))


def test_oip_seeds_follow_the_seeds_unless_set() -> None:
    assert compose_params(["study.seeds=[4,5]"])["study"]["oip_seeds"] == [4, 5]
    assert compose_params(["experiment=mnist_oip"])["study"]["oip_seeds"] == [0, 1, 2, 3, 4]
    assert compose_params(["study.oip_seeds=[1]"])["study"]["oip_seeds"] == [1]


def test_variant_subset_must_be_prepared() -> None:
    raw = committed(study={"variants": ["dummy"], "variant_specs": {"dummy": {"train_subset": 0.3}}, "contrasts": []})
    with pytest.raises(ConfigError, match=r"train_subset=0.3 is not one of data.subsets"):
        validate(raw)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cka_batch", 2, r"compare\.cka_batch=2 is out of range: it must be ≥ 4"),
        ("scale_quantile", 0.0, r"compare\.scale_quantile=0.0 is out of range: it must be in \(0, 1\]"),
        ("confusion_pair", ["4"], r"compare\.confusion_pair=\['4'\] is out of range: it must be two different"),
    ],
)
def test_measure_keys_are_checked(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(committed(compare={key: value}))


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_renamed_key_names_its_new_name(old: str, new: str) -> None:
    section, key = old.split(".")
    with pytest.raises(ConfigError, match=rf"^{re.escape(old)} was renamed to {re.escape(new)}"):
        validate(committed(**{section: {key: 1}}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(old)} was renamed to {re.escape(new)}"):
        compose_params([f"{old}=1"])
    new_section, new_key = new.split(".")
    assert new_key in compose_params()[new_section]


def test_missing_key_fails_instead_of_taking_a_second_default() -> None:
    raw = committed()
    del raw["oip"]["restarts"]
    with pytest.raises(ConfigError, match=r"'oip\.restarts' is not set.*make params"):
        validate(raw)


def test_conf_is_the_only_home_of_defaults() -> None:
    """The schema sections hold no default values (conf/ does), so the two cannot disagree."""
    for name, schema in get_type_hints(Params).items():
        with_default = [f.name for f in fields(schema) if f.default is not MISSING or f.default_factory is not MISSING]
        assert not with_default, f"{name}: {with_default} have defaults in config.py; move them to conf/"


def test_choices_come_from_the_registries() -> None:
    """A new reader, network, noise or suppression needs one entry in its registry, nothing else."""
    assert [m.value for m in DataSource] == list(SOURCES)
    assert [m.value for m in ModelName] == list(MODELS)
    for name in MODELS:
        assert validate(committed(model={"name": name})).model.name.value == name
    for key, registry in [("noise", NOISE_KINDS), ("suppression", SUPPRESSIONS)]:
        for kind in registry:
            assert compose_params([f"oip.{key}={kind}"])["oip"][key] == kind
        with pytest.raises(OIPError, match=rf"unknown \w+ 'bogus'; choose one of: {', '.join(registry)}"):
            compose_params([f"oip.{key}=bogus"])


def test_variant_overrides_model() -> None:
    params = load_params(REPO / "params.yaml")
    sgd = variant_model_config(params, "sgd")
    assert sgd.optimizer.value == "sgd" and sgd.name == params.model.name


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

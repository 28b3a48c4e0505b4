"""params.yaml stays what conf/ composes to, and bad configuration fails early and clearly."""

from __future__ import annotations

import ast
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml

from cnnscope.compose import compose_params, group_choices
from cnnscope.config import (
    RENAMED,
    ConfigError,
    DataSource,
    ModelName,
    Params,
    load_params,
    snapshot_steps,
    to_container,
    validate,
    variant_model_config,
)
from cnnscope.data.sources import SOURCES
from cnnscope.models import MODELS
from cnnscope.oip import OIPError
from cnnscope.oip.param import NOISE_KINDS
from cnnscope.oip.transforms import SUPPRESSIONS
from cnnscope.runner.dag import stage_definitions

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
        ("min_converged", 1.5, r"compare\.min_converged=1.5 is out of range: it must be in \[0, 1\]"),
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


#: Library defaults named like a ``params.yaml`` key that are not settings, and why.
NOT_SETTINGS = {
    "analysis/matching.py:all_map_correlations.layer": "a label for error messages",
    "analysis/matching.py:map_correlations.layer": "a label for error messages",
    "data/prepared.py:PreparedData.subsets": "the prepared data's subsets (none unless prepared with some)",
    "layout.py:history_path.root": "the repository the paths are under",
    "layout.py:metrics_dir.root": "the repository the paths are under",
    "layout.py:metrics_path.root": "the repository the paths are under",
    "layout.py:read_run_metrics.root": "the repository the paths are under",
    "models/receptive_field.py:model_receptive_fields.image_size": "None: the network's own input size",
    "progress.py:__call__.steps": "progress-bar increments",
    "progress.py:advance.steps": "progress-bar increments",
    "progress.py:silent.steps": "progress-bar increments",
    "report/assemble.py:build_report.root": "the repository the stage outputs are under",
    "tracking.py:attach.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:client.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:close_if_running.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:end_run.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:log_artifact.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:log_artifacts.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:log_metrics.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:mlflow_logger.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:study_run.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "tracking.py:study_run_for.uri": "None: the store MLflow resolves itself (stages pass tracking.uri)",
    "trajectory/collect.py:read_trajectories.name": "which of the stage's tables to read",
    "trajectory/measures.py:_Layer.scale": "a measured value, NaN until measured",
}


def library_defaults() -> set[str]:
    """``<module>:<function or class>.<name>`` for every default value in a signature or dataclass of
    src/cnnscope (config.py aside, checked above) whose name is a key of a ``params.yaml`` section."""
    keys = {f.name for schema in get_type_hints(Params).values() for f in fields(schema)}
    src = REPO / "src" / "cnnscope"
    found = set()
    for path in sorted(src.rglob("*.py")):
        module = path.relative_to(src).as_posix()
        for node in ast.walk(ast.parse(path.read_text())) if module != "config.py" else []:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = [*node.args.posonlyargs, *node.args.args]
                named = [
                    *args[len(args) - len(node.args.defaults) :],
                    *(a for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True) if d is not None),
                ]
                found |= {f"{module}:{node.name}.{a.arg}" for a in named if a.arg in keys}
            elif isinstance(node, ast.ClassDef):
                found |= {
                    f"{module}:{node.name}.{s.target.id}"
                    for s in node.body
                    if isinstance(s, ast.AnnAssign)
                    and s.value is not None
                    and isinstance(s.target, ast.Name)
                    and s.target.id in keys
                }
    return found


def test_conf_is_the_only_home_of_defaults() -> None:
    """The schema sections hold no default values (conf/ does), so the two cannot disagree; nor
    does a library signature or settings dataclass, except documented non-setting defaults."""
    for name, schema in get_type_hints(Params).items():
        with_default = [f.name for f in fields(schema) if f.default is not MISSING or f.default_factory is not MISSING]
        assert not with_default, f"{name}: {with_default} have defaults in config.py; move them to conf/"
    found = library_defaults()
    new = sorted(found - set(NOT_SETTINGS))
    assert not new, f"settings with a default in the library (conf/ is their home; pass them): {new}"
    stale = sorted(set(NOT_SETTINGS) - found)
    assert not stale, f"no longer a library default: remove {stale} from NOT_SETTINGS"


def test_choices_come_from_the_registries() -> None:
    """A new noise or suppression needs one entry in its registry, nothing else; a new reader or
    network also needs its name in ``config.DATA_SOURCES`` / ``MODEL_NAMES`` (this fails until the
    two agree), which keep torch and the registries out of ``import cnnscope.config``."""
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
    stages = stage_definitions(REPO)
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


# ---------------------------------------------------------------- every stage's settings at composition (issue 24)


def _named(override: str) -> str:
    """How an error names the setting of ``override`` (``key=value`` on the command line): its key
    and its value as Python writes it (``oip.maps=[0,200]`` → ``oip.maps=[0, 200]``)."""
    key, value = override.split("=", 1)
    return f"{key}={yaml.safe_load(value)!r}"


#: Each check at composition, by what its error says after naming the setting at fault, with the
#: overrides (as on the command line) that break it.
BROKEN = {
    r" is out of range: it must be ≥ 1": ["oip.steps=0", "exemplars.k=0", "atlas.figure_maps=0"],
    r" is out of range: it must be ≥ 2": ["oip.restarts=1"],
    r": \[200\] out of range for layer relu3 .* use indices 0\.\.127": ["oip.maps=[0,200]"],
    r": .* 64 maps: use indices 0\.\.63": ["model.width=0.5 oip.maps=[100]"],
    r" is not a layer of variant 'benchmark'.*valid layers are conv1": ["oip.layer=relu9"],
    r": each must be 1\.\.28 pixels": ["oip.wavelengths=[1,40]"],
    r" has a negative (map index|step)": ["oip.maps=[-1]", "oip.snapshots=[0,-5]"],
    r" repeats \[\d\]": ["oip.maps=[3,3]", "study.seeds=[0,0]", "study.seeds=[0,1] study.oip_seeds=[1,1]"],
    r" is not in increasing order: list it as \[": ["study.seeds=[2,0,1]", "study.seeds=[0,1,2] study.oip_seeds=[2,1]"],
    r" images per map, but exemplars\.split='test' .* at most 1000": [
        "exemplars.k=5000",
        "exemplars.median_images=2000",
    ],
    r" images per map, but exemplars\.split='train' .* at most 60000": [
        "data=mnist exemplars.split=train exemplars.k=70000"
    ],
    r" is not a plain name": ["study.name=../escaped", "study.name=a/b"],
    r" points outside the repository": ["exemplars.out_dir=/tmp/exemplars", "atlas.out_dir=../atlas"],
    r" is the repository itself": ["atlas.out_dir=."],
    r" and oip\.out_dir='oip' overlap": ["exemplars.out_dir=oip"],
    r" and trainer\.models_dir='models' overlap": ["extract.out_dir=models/acts"],
}


@pytest.mark.parametrize(
    ("overrides", "reason"), [(case, reason) for reason, cases in BROKEN.items() for case in cases]
)
def test_every_stage_setting_fails_at_composition_naming_its_key(overrides: str, reason: str) -> None:
    """The error opens with the last override's key and value (the one at fault), then says why."""
    with pytest.raises(ConfigError, match=f"^{re.escape(_named(overrides.split()[-1]))}{reason}"):
        compose_params(overrides.split())


def test_focus_map_must_be_one_of_the_maps() -> None:
    with pytest.raises(ConfigError, match=r"^oip\.focus_map names map\(s\) \[5\] that oip\.maps=\[0, 1\]"):
        compose_params(["oip.maps=[0,1]", "oip.focus_map=5"])


def test_the_presets_pass_the_composition_checks() -> None:
    for preset in ["cifar10_frog", "mnist_oip", "edge_filters", "edge_filters_cifar10"]:
        compose_params([f"experiment={preset}"])


@pytest.mark.parametrize(
    ("steps", "snapshots", "recorded"),
    [(20, [0, 5, 15, 30], [0, 5, 15, 20]), (30, [0, 5, 15, 30], [0, 5, 15, 30]), (3, [0, 5, 15], [0, 3])],
)
def test_snapshots_past_the_run_are_taken_at_its_last_step(
    steps: int, snapshots: list[int], recorded: list[int]
) -> None:
    """A sweep over oip.steps (`dvc exp run --queue -S oip.steps=20`) needs no matching oip.snapshots."""
    params = validate(committed(oip={"steps": steps, "snapshots": snapshots}))
    assert snapshot_steps(params.oip) == recorded


def test_checking_a_configuration_leaves_torchs_random_state_alone() -> None:
    """Validation builds every variant's network (random weights) to check ``oip.maps``; a seed
    set before it must still give the same draws after it."""
    import torch

    raw = compose_params()
    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    validate(raw)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("overrides", [[], *([f"experiment={p}"] for p in group_choices("experiment")), ["data=mnist"]])
def test_the_plain_form_is_omegaconfs(overrides: list[str]) -> None:
    """``to_container`` walks the dataclasses itself (every stage calls it several times); what it
    gives, key order and types included, is what OmegaConf gives, so manifests and MLflow params keep
    their bytes."""
    from omegaconf import OmegaConf

    params = validate(compose_params(overrides))
    for part in (params, params.data, params.oip, params.study):
        expected = OmegaConf.to_container(OmegaConf.structured(part), enum_to_str=True)
        assert repr(to_container(part)) == repr(expected)

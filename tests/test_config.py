"""The configs agree with the code: every conf/method/*.yaml with its class (both ways), every experiment
and every option of every config group composes and resolves, and sweeps take their method list from
the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vizlab.methods import REGISTRY, method_parameters
from vizlab.methods.registry import sweep_methods
from vizlab.resolvers import register_resolvers

CONF = Path(__file__).resolve().parents[1] / "conf"
METHOD_YAMLS = sorted((CONF / "method").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
LIST_GROUPS = {"metric"}  # defaults-list entries that are lists (metric: [deletion_insertion, ...])
GROUP_OPTIONS = [(group.name, p.stem) for group in sorted(CONF.iterdir())
                 if group.is_dir() and group.name != "experiment" for p in sorted(group.glob("*.yaml"))]


def plain(value: Any) -> Any:
    """Tuples → lists, recursively, so a signature default (0.1,) equals the yaml's [0.1]."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def method_config_problems(name: str, config: dict[str, Any]) -> list[str]:
    """Every way `config` (a conf/method yaml) disagrees with method `name`'s keyword options."""
    options = method_parameters(name)
    keys = set(config) - {"name"}
    problems = [f"{name}: yaml key {k!r} is not an option of {REGISTRY[name].__name__}" for k in sorted(keys - set(options))]
    problems += [f"{name}: option {k!r} is missing from the yaml" for k in sorted(set(options) - keys)]
    problems += [f"{name}: {k}: yaml {config[k]!r} != default {options[k]!r}" for k in sorted(keys & set(options))
                 if plain(config[k]) != plain(options[k])]
    return problems


@pytest.fixture(scope="module")
def hydra_conf():
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield


def test_every_registered_method_has_a_yaml_and_every_yaml_a_method():
    names = {p.stem for p in METHOD_YAMLS}
    assert set(REGISTRY) == names, (sorted(set(REGISTRY) - names), sorted(names - set(REGISTRY)))
    for path in METHOD_YAMLS:
        assert yaml.safe_load(path.read_text())["name"] == path.stem, path


@pytest.mark.parametrize("path", METHOD_YAMLS, ids=lambda p: p.stem)
def test_method_yaml_keys_and_defaults_equal_the_class_signature(path):
    assert method_config_problems(path.stem, yaml.safe_load(path.read_text())) == []


def test_the_check_catches_every_kind_of_disagreement():
    config = yaml.safe_load((CONF / "method" / "scorecam.yaml").read_text())
    assert method_config_problems("scorecam", config) == []
    bad = {**config, "batch_sise": 8, "temporal": "per_frame"}
    del bad["progress"]
    assert method_config_problems("scorecam", bad) == [
        "scorecam: yaml key 'batch_sise' is not an option of ScoreCAM",
        "scorecam: option 'progress' is missing from the yaml",
        "scorecam: temporal: yaml 'per_frame' != default 'pooled'",
    ]


def resolved(cfg) -> dict[str, Any]:
    """The job config (without the hydra node) with every interpolation resolved."""
    body = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return OmegaConf.to_container(body, resolve=True)


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_group_option_composes_and_resolves(hydra_conf, group, option):
    value = f"[{option}]" if group in LIST_GROUPS else option
    cfg = compose("config", overrides=[f"{group}={value}"], return_hydra_config=group == "hydra")
    job = resolved(cfg)
    if group == "method":
        assert job["method"]["name"] == option
    elif group in LIST_GROUPS:
        assert list(job[group]) == ([] if option == "none" else [option])
    elif group in ("model", "dataset", "task"):
        assert job[group]["name"] == option or group == "task"  # a task may rename itself (train_motion → train)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_its_sweep_uses_the_registry(hydra_conf, experiment):
    cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    resolved(cfg)
    sweep = cfg.hydra.sweeper.get("params") or OmegaConf.create({})
    params = OmegaConf.to_container(sweep, resolve=True)
    if "method" not in params:
        return
    raw = OmegaConf.to_container(sweep, resolve=False)["method"]
    assert raw.startswith("${vizlab.methods:"), f"{experiment}: list methods through the registry, not by hand"
    kind, *families = raw[len("${vizlab.methods:"):-1].split(",")
    methods = params["method"].split(",")
    assert methods == sweep_methods(kind, families) and {"gradcam", "scorecam", "eigencam"} <= set(methods)
    for method in (methods[0], methods[-1]):  # jobs of the sweep compose (every method alone: the test above)
        job = resolved(compose("config", overrides=[f"experiment={experiment}", f"method={method}"]))
        assert job["method"]["name"] == method


def test_sweep_selection_follows_the_class_attributes():
    image, video = sweep_methods("image"), sweep_methods("video")
    assert "extremal" in image and "extremal" not in video and {"ep2d", "ep3d", "step"} <= set(video)
    assert "hrcam" not in image + video  # needs an HR-CAM model (any_model = False)
    cams = sweep_methods("video", ["cam"])
    assert cams == sorted(n for n, c in REGISTRY.items() if c.family == "cam" and c.input_dims in (None, 5))
    assert {"cam", "gradcam", "gradcampp", "xgradcam", "layercam", "scorecam", "eigencam"} <= set(cams)

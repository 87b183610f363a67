"""Class Feature Pyramids end to end: the class tube on the trained motion model points at the moving
object; task=pyramid from the command line (files, W&B offline run read back, the graph page in a real
headless Chromium); method=pyramid in the explain loop; every zoo network (slow)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import pytest
import torch
from conftest import PYTHON, ROOT, run_cli, synthetic_model
from PIL import Image, ImageSequence
from test_report import chromium_args

import vizlab
from vizlab.loggers import read_offline_run
from vizlab.metrics import PointingGame
from vizlab.pyramid import ClassFeaturePyramid, KernelTree

MOTION = ["model=motion_cnn", "model.pretrained=false", "dataset=synthetic_motion"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(**chromium_args())
        yield browser
        browser.close()


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def test_class_tube_points_at_the_moving_object(request, monkeypatch):
    """motion_cnn, 64 fresh clips (synthetic_motion seed 7; θ = 0.3 was chosen on seed 11), the class tube as
    the saliency: spatio-temporal pointing (3 px) with the PointingGame metric. Measured on these clips:
    pyramid 0.859, Grad-CAM 0.906 (64 clips of seed 5: 0.94 / 0.98; of seed 21: 0.98 / 0.98)."""
    model = synthetic_model(request, monkeypatch, "motion_cnn")
    from torch.utils.data import DataLoader

    from vizlab.data.synthetic_motion import SyntheticMotion

    batch = next(iter(DataLoader(SyntheticMotion(64, seed=7), batch_size=64)))
    x = model.normalize(batch["image"])
    scores = {}
    for name in ("pyramid", "gradcam"):
        metric = PointingGame(tolerance=3)
        metric.update(vizlab.explain(model, x, batch["label"], method=name), batch["mask"])
        scores[name] = float(metric.compute())
    print("spatio-temporal pointing (3 px):", scores)
    assert scores["pyramid"] >= 0.8, scores


def open_page(browser, html: Path) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.resolve().as_uri(), wait_until="load")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    out = page.evaluate("""() => ({
        nodes: Array.from(document.querySelectorAll('svg g.node')).map(g => +g.dataset.id),
        links: document.querySelectorAll('svg path.link').length,
        titles: Array.from(document.querySelectorAll('svg g.node title')).map(t => t.textContent),
        images: Array.from(document.images).map(i => i.complete && i.naturalWidth > 0),
        data: JSON.parse(document.getElementById('pyramid-data').textContent),
        box: document.querySelector('svg.graph').getBoundingClientRect().width,
        text: document.body.innerText})""")
    page.close()
    return {**out, "requests": requests}


def read_gif(path: Path) -> list:
    return [frame.convert("RGB") for frame in ImageSequence.Iterator(Image.open(path))]


def test_task_pyramid_from_the_command_line(tmp_path, offline_wandb, browser):
    """`python run.py task=pyramid ...` on 3 clips (random-weight motion_cnn, batch 2): per clip the nested and
    flat JSON agree, tubes are 8-frame GIFs of the clip's size, the figure and the graph page exist; the
    offline W&B run holds the figures, the class tubes, the table and the graph pages; the page shows every
    node and link in Chromium without fetching anything."""
    job = tmp_path / "job"
    proc = run_cli(PYTHON, "run.py", "task=pyramid", *MOTION, "dataset.num_samples=3", "task.batch_size=2",
                   "task.max_tubes=2", "method.threshold=0.5", "logger=wandb", f"hydra.run.dir={job}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"vizlab: pyramid: {job / 'pyramid'}" in proc.stdout
    results = json.loads((job / "results.json").read_text())
    assert results["task"] == "pyramid" and results["summary"]["num_samples"] == 3
    assert results["pyramid"]["threshold"] == 0.5 and results["pyramid"]["depth"] == 3
    assert 0 < results["summary"]["backstep_over_forward"] < 1
    for sample in results["samples"]:
        files = sample["pyramid"]
        flat = json.loads((job / files["graph"]).read_text())
        nested = json.loads((job / files["nested"]).read_text())
        tree = KernelTree.from_flat(flat)
        assert tree.to_nested() == nested and list(nested) == [str(sample["target"])]
        assert sample["details"]["nodes"] == len(flat["nodes"]) and sample["details"]["level_sizes"] == \
            tree.level_sizes()
        gifs = [f for f in files["tubes"] if f.endswith(".gif")]
        assert gifs[0].endswith(f"node_0000_layer_0_kernel_{sample['target']}_num_kernels_"
                                f"{len(tree.children(0))}.gif")
        frames = read_gif(job / gifs[0])
        assert len(frames) == 8 and frames[0].size == (48, 48)
        assert len(gifs) <= 1 + 2 * 2  # the class + at most max_tubes per further level
        assert cv2.imread(str(job / files["figure"])) is not None
    run = read_offline_run(next((job / "wandb").glob("offline-run-*")))
    summary = run["summary"]
    assert run["config"]["method"]["name"] == "pyramid" and run["config"]["task"]["name"] == "pyramid"
    assert summary["figures/pyramid/count"] == 3 and summary["heatmap_clips/count"] == 3
    assert summary["pyramid/graph/count"] == 3 and summary["samples/nrows"] == 3
    assert summary["pyramid/nodes_mean"] == pytest.approx(results["summary"]["nodes_mean"])
    assert len([f for f in run["files"] if f.startswith("media/html/pyramid/graph")]) == 3

    sample = results["samples"][0]
    flat = json.loads((job / sample["pyramid"]["graph"]).read_text())
    page = open_page(browser, job / sample["pyramid"]["html"])
    assert sorted(page["nodes"]) == [n["id"] for n in flat["nodes"]] and page["links"] == len(flat["links"])
    assert page["images"] and all(page["images"])
    assert all(url.startswith(("file://", "data:")) for url in page["requests"]), page["requests"]
    assert [{k: v for k, v in n.items() if k != "thumbnail"} for n in page["data"]["nodes"]] == flat["nodes"]
    assert page["box"] > 0 and f"kernel {flat['nodes'][1]['kernel']}" in page["titles"][1]
    assert "Saliency tubes" in page["text"]


def test_method_pyramid_in_the_explain_loop(tmp_path):
    """task=explain method=pyramid (in process): the class tubes are scored by the metrics, the pyramid figure
    is saved per clip and the tree's size is in each sample's details."""
    from hydra import compose, initialize_config_dir

    from vizlab.tasks.explain import run_explain

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["method=pyramid", *MOTION, "dataset.num_samples=2", "logger=none",
                                           "metric=[pointing_game]", "metric.pointing_game.tolerance=3",
                                           f"paths.output_root={tmp_path}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_explain(cfg, tmp_path)
    assert results["method"]["name"] == "pyramid"
    for sample in results["samples"]:
        assert "pointing_hit" in sample["metrics"] and sample["details"]["pyramid_nodes"] >= 1
        assert (tmp_path / sample["figures"]["pyramid"]).is_file()


@pytest.mark.parametrize(("overrides", "message"), [
    (["method.threshold=2"], "threshold must be a number in (0, 1]"),
    (["task.max_tubes=0"], "task.max_tubes must be null"),
    (["method=gradcam"], "task=pyramid takes its options from method=pyramid"),
])
def test_bad_pyramid_config_fails_with_one_line(tmp_path, monkeypatch, capsys, overrides, message):
    from hydra import compose, initialize_config_dir

    from vizlab.tasks import run_task

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=pyramid", *MOTION, *overrides, "logger=none",
                                           f"paths.output_root={work}"])
    with pytest.raises(SystemExit) as exit_info:
        run_task(cfg)
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("vizlab: error:")]
    assert message in line
    assert not any(work.iterdir())


@pytest.mark.slow
def test_method_pyramid_from_the_command_line(tmp_path):
    job = tmp_path / "job"
    proc = run_cli(PYTHON, "run.py", "method=pyramid", *MOTION, "dataset.num_samples=2", "metric=[pointing_game]",
                   "logger=none", f"hydra.run.dir={job}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((job / "results.json").read_text())
    assert results["method"]["name"] == "pyramid" and "pointing_accuracy" in results["summary"]
    assert all((job / s["figures"]["pyramid"]).is_file() for s in results["samples"])


ZOO = [("i3d", (1, 3, 16, 64, 64)), ("mfnet", (1, 3, 16, 64, 64)), ("resnet3d_50", (1, 3, 16, 64, 64)),
       ("resnet3d_101", (1, 3, 16, 64, 64)), ("resnet3d_152", (1, 3, 16, 64, 64)),
       ("resnext3d_101", (1, 3, 16, 64, 64)), ("r3d_18", (1, 3, 8, 64, 64)), ("mc3_18", (1, 3, 8, 64, 64)),
       ("r2plus1d_18", (1, 3, 8, 64, 64)), ("efficientnet_lite0", (1, 3, 128, 128)), ("resnet18", (1, 3, 128, 128)),
       ("resnet50", (1, 3, 128, 128)), ("densenet121", (1, 3, 64, 64)), ("inception_v3", (1, 3, 96, 96))]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shape"), ZOO, ids=[z[0] for z in ZOO])
def test_every_zoo_network(name, shape):
    """Random weights, small inputs, D = 3: every level has kernels, every tube has the input's shape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vizlab.load_model(name)
    torch.manual_seed(0)
    result = ClassFeaturePyramid(model, depth=3)(torch.randn(*shape))
    tree = result.tree(0)
    assert all(size > 0 for size in tree.level_sizes()), tree.level_sizes()
    ids = [n.id for n in tree.nodes if result.has_tube(0, n.id)][:5]
    tubes = result.tubes(0, ids)
    assert tubes.shape == (len(ids), *shape[2:]) and tubes.min() >= 0 and tubes.max() <= 1
    assert result.seconds["backstep"] < 0.5 * result.seconds["forward"]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "shape", "match"), [("vgg16", (1, 3, 64, 64), "VGG-style fully connected head"),
                                                      ("tsm", (1, 3, 8, 64, 64), "logits come from 'mean'")])
def test_networks_without_a_pooled_classifier_are_clear_errors(name, shape, match):
    from vizlab.errors import ConfigError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vizlab.load_model(name)
    with pytest.raises(ConfigError, match=match):
        ClassFeaturePyramid(model)(torch.randn(*shape))

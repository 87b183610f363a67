"""task=report: collect a sweep's results.json files into report.csv / report.md / report.html,
and check the HTML in a real headless Chromium (images load, tables show the values)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from vizlab.errors import ConfigError
from vizlab.io import write_bytes_atomic, write_json_atomic
from vizlab.tasks.report import run_report
from vizlab.viz.report import build_report, collect_results, report_table

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

METHODS = ("gradcam", "gradients")
MODELS = ("resnet18", "vgg16")
SAMPLES = ("chelsea", "coffee", "rocket")
# summary metrics per (method, model); mask_iou is absent everywhere
SUMMARY = {
    ("gradcam", "resnet18"): {"deletion_auc": 0.11, "insertion_auc": 0.62, "pointing_accuracy": 0.9,
                              "energy_pointing": 0.41, "seconds_per_sample": 0.0123},
    ("gradcam", "vgg16"): {"deletion_auc": 0.25, "insertion_auc": 0.48, "pointing_accuracy": 0.8,
                           "seconds_per_sample": 0.0456},
    ("gradients", "resnet18"): {"deletion_auc": 0.20, "insertion_auc": 0.41, "pointing_accuracy": 0.5,
                                "energy_pointing": 0.23, "seconds_per_sample": 0.0078},
    ("gradients", "vgg16"): {"deletion_auc": 0.19, "insertion_auc": 0.55, "pointing_accuracy": 0.8,
                             "seconds_per_sample": 0.0301},
}


def write_png(path: Path, colour: tuple[int, int, int], size: int = 48) -> None:
    image = np.zeros((size + 8, size, 3), np.uint8)
    image[:] = colour
    cv2.circle(image, (size // 2, size // 2 + 8), size // 4, (255, 255, 255), -1)
    ok, data = cv2.imencode(".png", image)
    assert ok
    write_bytes_atomic(path, data.tobytes())


def sample_record(index: int, name: str, files: list[str]) -> dict:
    return {"index": index, "name": name, "label": -1, "target": 285, "target_name": "Egyptian cat",
            "target_prob": 0.79, "predicted": 285, "predicted_name": "Egyptian cat", "predicted_prob": 0.79,
            "seconds": 0.01, "metrics": {"deletion_auc": 0.1 + index / 100, "insertion_auc": 0.6,
                                         "pointing_hit": 1.0}, "files": files}


def write_job(job: Path, method: str, model: str, summary: dict, complete: bool = True) -> None:
    """A job directory as task=explain writes it: heatmaps/, .hydra/overrides.yaml, results.json."""
    samples = []
    for i, name in enumerate(SAMPLES):
        rel = f"heatmaps/{i:05d}_{name}.png"
        write_png(job / rel, (40 * i + 30, 90 if method == "gradcam" else 200, 120 if model == "vgg16" else 20))
        samples.append(sample_record(i, name, [rel]))
    write_bytes_atomic(job / ".hydra" / "overrides.yaml",
                       f"- method={method}\n- model={model}\n- dataset.images=[chelsea,coffee,rocket]\n".encode())
    results = {"task": "explain", "model": {"name": model, "checkpoint": None},
               "method": {"name": method}, "dataset": {"name": "samples", "images": list(SAMPLES)},
               "device": "cpu", "metrics_config": {"steps": 8},
               "summary": {"num_samples": len(samples), "seconds_total": 0.1, **summary}, "samples": samples}
    if complete:
        results["complete"] = True
    write_json_atomic(job / "results.json", results)


@pytest.fixture
def sweep(tmp_path) -> Path:
    """2 methods × 2 models × 3 samples (job dirs named like Hydra's, one level deeper for some),
    plus one job without "complete": true and one corrupt results.json."""
    root = tmp_path / "multirun" / "12-00-00"
    num = 0
    for method in METHODS:
        for model in MODELS:
            sub = f"{num}_method={method},model={model}"
            job = root / ("nested" if num % 2 else ".") / sub
            write_job(job, method, model, SUMMARY[(method, model)])
            num += 1
    write_job(root / "4_method=cam,model=resnet18", "cam", "resnet18", SUMMARY[("gradcam", "resnet18")],
              complete=False)
    write_bytes_atomic(root / "5_method=cam,model=vgg16" / "results.json", b'{"task": "explain", "compl')
    write_bytes_atomic(root / "multirun.yaml", b"hydra: {}\n")
    return root


def chromium_args() -> dict:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (installs Debian chromium) to test the HTML report "
                    "in a real browser.")
    return {"executable_path": str(CHROMIUM), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing: run `make test` (installs the test extras).")
    kwargs = chromium_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(**kwargs)
        yield browser
        browser.close()


def open_report(browser, html: Path, screenshot: Path | None = None) -> dict:
    """Load `html` from file:// and return its images, table text and every URL it requested."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.resolve().as_uri(), wait_until="load")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    images = page.evaluate("Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
                           "ok: i.complete && i.naturalWidth > 0}))")
    tables = page.evaluate("Array.from(document.querySelectorAll('table')).map(t => t.innerText)")
    best = page.evaluate("Array.from(document.querySelectorAll('td.best')).map(td => "
                         "[td.innerText, getComputedStyle(td).fontWeight])")
    text = page.evaluate("document.body.innerText")
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return {"images": images, "tables": tables, "best": best, "text": text, "requests": requests}


def md_rows(md: str, heading: str) -> dict[str, list[str]]:
    """The rows of the markdown table under `heading`: method → cells."""
    lines = md.split(heading, 1)[1].split("\n\n", 2)[1].splitlines()
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in lines[2:])}


def test_collect_and_table(sweep):
    with pytest.warns(UserWarning, match="skipping job"):
        jobs = collect_results(sweep)
    assert sorted((j.method_name, j.model_name) for j in jobs) == sorted(SUMMARY)
    job = next(j for j in jobs if j.rel == "nested/1_method=gradcam,model=vgg16")
    assert job.overrides[:2] == ["method=gradcam", "model=vgg16"]
    assert job.dataset_name == "samples" and len(job.samples) == 3
    rows = {(r["method"], r["model"]): r for r in report_table(jobs)}
    assert rows[("gradients", "vgg16")]["deletion_auc"] == 0.19
    assert rows[("gradcam", "resnet18")]["mask_iou"] is None
    assert rows[("gradcam", "resnet18")]["num_samples"] == 3


def test_build_report_csv_md_html(sweep, browser, tmp_path):
    with pytest.warns(UserWarning):
        out = build_report(sweep)
    names = sorted(Path(f).name for f in out["files"])
    assert names == ["report.csv", "report.html", "report.md"]
    assert out["summary"]["num_jobs"] == out["summary"]["num_samples"] == 4
    assert sorted(j["job"] for j in out["summary"]["incomplete"]) == ["4_method=cam,model=resnet18",
                                                                      "5_method=cam,model=vgg16"]

    with open(sweep / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert list(rows[0]) == ["method", "model", "dataset", "num_samples", "deletion_auc", "insertion_auc",
                             "pointing_accuracy", "mask_iou", "energy_pointing", "object_recall", "seconds_per_sample",
                             "job"]
    for row in rows:
        expected = SUMMARY[(row["method"], row["model"])]
        for key, value in expected.items():
            assert float(row[key]) == value
        assert row["mask_iou"] == "" and row["num_samples"] == "3" and row["dataset"] == "samples"
        assert (sweep / row["job"] / "results.json").is_file()

    md = (sweep / "report.md").read_text()
    assert "Mask IoU" not in md  # absent in every job
    deletion = md_rows(md, "## Deletion AUC (lower is better)")
    assert deletion["gradcam"] == ["**0.110**", "0.250"] and deletion["gradients"] == ["0.200", "**0.190**"]
    insertion = md_rows(md, "## Insertion AUC (higher is better)")
    assert insertion["gradcam"] == ["**0.620**", "0.480"] and insertion["gradients"] == ["0.410", "**0.550**"]
    pointing = md_rows(md, "## Pointing accuracy (higher is better)")
    assert pointing["gradcam"] == ["**0.900**", "**0.800**"] and pointing["gradients"] == ["0.500", "**0.800**"]
    energy = md_rows(md, "## Energy on the object (higher is better)")  # every metric's declared summary
    assert energy["gradcam"] == ["**0.410**"] and energy["gradients"] == ["0.230"]  # resnet18 only
    seconds = md_rows(md, "## Seconds per sample (lower is better)")
    assert seconds["gradients"] == ["**0.0078**", "**0.0301**"]
    assert "| method | resnet18 | vgg16 |" in md
    assert "4_method=cam,model=resnet18" in md and "5_method=cam,model=vgg16" in md

    source = (sweep / "report.html").read_text()
    assert "http://" not in source and "https://" not in source and "<script" not in source
    moved = tmp_path / "moved"  # relative image paths: the report still works after the sweep is moved
    shutil.move(sweep, moved)
    page = open_report(browser, moved / "report.html")
    assert len(page["images"]) == len(METHODS) * len(MODELS) * len(SAMPLES)
    assert all(img["ok"] for img in page["images"]), page["images"]
    assert all(url.startswith("file://") for url in page["requests"]), page["requests"]
    deletion_table = next(t for t in page["tables"] if "Deletion AUC" in t)
    for value in ("0.110", "0.250", "0.200", "0.190"):
        assert value in deletion_table
    assert "Mask IoU" not in page["text"]
    assert ["0.110", "700"] in page["best"] and ["0.620", "700"] in page["best"]
    assert "gradcam · resnet18" in page["text"] and "4_method=cam,model=resnet18" in page["text"]


def test_clips_show_gif_and_report_elsewhere(tmp_path, browser):
    job = tmp_path / "sweep" / "0_model=r3d_18"
    frames = [Image.fromarray(np.full((32, 32, 3), 60 * t, np.uint8)) for t in range(3)]
    buf = job / "heatmaps" / "00000_clip.gif"
    buf.parent.mkdir(parents=True)
    frames[0].save(buf, save_all=True, append_images=frames[1:], duration=100, loop=0)
    write_png(job / "heatmaps" / "00000_clip_strip.png", (10, 10, 200))
    sample = sample_record(0, "clip <b>&", ["heatmaps/00000_clip_strip.png", "heatmaps/00000_clip.gif"])
    write_json_atomic(job / "results.json", {
        "task": "explain", "complete": True, "model": {"name": "r3d_18"}, "method": {"name": "gradcam"},
        "dataset": {"name": "image_folder", "root": "/data/clips"}, "summary": {"num_samples": 1},
        "samples": [sample]})
    out = build_report(tmp_path / "sweep", tmp_path / "elsewhere")
    assert out["summary"]["incomplete"] == [] and out["summary"]["num_jobs"] == 1
    source = (tmp_path / "elsewhere" / "report.html").read_text()
    assert "clip &lt;b&gt;&amp;" in source and "clip <b>" not in source
    md = (tmp_path / "elsewhere" / "report.md").read_text()
    assert "Deletion AUC" not in md and "Seconds per sample" not in md and "No metrics" in md
    page = open_report(browser, tmp_path / "elsewhere" / "report.html")
    (img,) = page["images"]
    assert img["ok"] and img["src"].endswith("00000_clip.gif") and img["src"].startswith("../sweep/")
    assert "clip <b>&" in page["text"]


def test_run_report_task(sweep, tmp_path, capsys):
    cfg = OmegaConf.create({"sweep_dir": str(sweep), "task": {"name": "report", "sweep_dir": None,
                                                              "out_dir": str(tmp_path / "r")}})
    with pytest.warns(UserWarning):
        results = run_report(cfg, tmp_path / "job")
    assert results["summary"]["num_samples"] == 4 and len(results["summary"]["incomplete"]) == 2
    assert (tmp_path / "r" / "report.html").is_file() and not (sweep / "report.html").exists()
    assert json.loads((tmp_path / "job" / "results.json").read_text())["task"] == "report"
    assert f"report: {tmp_path / 'r' / 'report.html'}" in capsys.readouterr().out
    # a report's own results.json is not a job of the sweep
    cfg = OmegaConf.create({"task": {"name": "report", "sweep_dir": str(tmp_path / "job"), "out_dir": None}})
    with pytest.raises(ConfigError, match="No results.json of an explain job"):
        run_report(cfg, tmp_path / "job2")
    with pytest.raises(ConfigError, match="sweep_dir="):
        run_report(OmegaConf.create({"sweep_dir": None, "task": {"name": "report", "sweep_dir": None}}), tmp_path)


def test_missing_or_empty_sweep_dir(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="No results.json of an explain job"):
        build_report(tmp_path / "empty")
    assert not (tmp_path / "empty" / "report.html").exists()


def test_real_sweep_then_report_end_to_end(tmp_path, browser):
    """`run.py -m` over two methods, then `run.py task=report sweep_dir=...`, opened in Chromium."""
    from conftest import PYTHON, run_cli

    sweep = tmp_path / "sweep"
    proc = run_cli(PYTHON, "run.py", "-m", "method=cam,gradients", "dataset.images=[chelsea,coffee]", "logger=none",
                   "metric.deletion_insertion.steps=5", f"hydra.sweep.dir={sweep}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli(PYTHON, "run.py", "task=report", f"sweep_dir={sweep}", "logger=none",
                   f"paths.output_root={tmp_path / 'reports'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert sorted(r["method"] for r in rows) == ["cam", "gradients"]
    for row in rows:
        (job,) = [p for p in sweep.rglob("results.json") if json.loads(p.read_text())["method"]["name"] == row["method"]]
        summary = json.loads(job.read_text())["summary"]
        assert float(row["deletion_auc"]) == pytest.approx(summary["deletion_auc"], abs=1e-6)
        assert float(row["insertion_auc"]) == pytest.approx(summary["insertion_auc"], abs=1e-6)
    page = open_report(browser, sweep / "report.html")
    assert len(page["images"]) == 4 and all(i["ok"] for i in page["images"])
    assert "Deletion AUC" in (sweep / "report.md").read_text()

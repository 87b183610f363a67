"""Sweep reports: collect every job's results.json under a sweep directory and write
report.csv, report.md (metric tables) and report.html (tables + a heatmap gallery).

The HTML page is static and self-contained: inline CSS, no scripts, no external resources;
heatmaps are linked by paths relative to the report file, so the sweep directory can be moved.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from vizlab.errors import ConfigError
from vizlab.io import write_bytes_atomic
from vizlab.metrics.build import all_summaries
from vizlab.metrics.summaries import SECONDS, Summary
from vizlab.naming import natural_key

RESULTS = "results.json"
FAILED = "failed.json"  # written by a multirun job that failed (vizlab.tasks.runner)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
GROUP_KEYS = ("method", "model", "dataset")


# every summary number a metric declares (vizlab.metrics.summaries), then the method's time per sample
METRICS: tuple[Summary, ...] = (*all_summaries(), SECONDS)
COLUMNS = ("method", "model", "dataset", "num_samples", *(m.key for m in METRICS), "job")


@dataclass
class JobResult:
    """One complete job of a sweep, as read from its results.json."""

    job_dir: Path
    method: dict[str, Any]
    model: dict[str, Any]
    dataset: dict[str, Any]
    summary: dict[str, Any]
    samples: list[dict[str, Any]]
    overrides: list[str] = field(default_factory=list)
    rel: str = "."  # job_dir relative to the sweep directory

    @property
    def method_name(self) -> str:
        return str(self.method.get("name", "?"))

    @property
    def model_name(self) -> str:
        return str(self.model.get("name", "?"))

    @property
    def dataset_name(self) -> str:
        """Dataset name, plus its file/folder for `image` and `image_folder` datasets."""
        name = str(self.dataset.get("name", "?"))
        where = self.dataset.get("path") or self.dataset.get("root")
        return f"{name}:{Path(str(where)).name}" if where else name


@dataclass(frozen=True)
class Incomplete:
    """A results.json that was skipped: not marked complete, or unreadable."""

    rel: str
    reason: str


@dataclass(frozen=True)
class Failed:
    """A sweep job that failed (its failed.json): the one-line error and the job's overrides."""

    rel: str
    error: str
    overrides: tuple[str, ...] = ()
    kept_results: bool = False  # a failed re-run next to an earlier complete results.json

    @property
    def reason(self) -> str:
        return f"re-run failed, earlier results kept: {self.error}" if self.kept_results else self.error


# ----------------------------------------------------------------------------- collecting


def find_results(sweep_dir: str | Path) -> tuple[Path, list[Path]]:
    """(resolved sweep dir, every results.json under it except in hidden folders such as .hydra)."""
    root = Path(sweep_dir).expanduser()
    if not root.is_dir():
        raise ConfigError(f"sweep_dir {str(root)!r} does not exist or is not a directory; pass the folder a "
                          f"multirun wrote, e.g. sweep_dir=outputs/multirun/explain/<date>/<time>.")
    root = root.resolve()
    paths = [p for p in root.rglob(RESULTS)
             if not any(part.startswith(".") for part in p.relative_to(root).parts[:-1])]
    return root, sorted(paths, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def read_overrides(job_dir: Path) -> list[str]:
    """The job's Hydra command-line overrides (job_dir/.hydra/overrides.yaml), or []."""
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in data] if isinstance(data, list) else []


def read_job(path: Path, root: Path) -> JobResult | Incomplete | None:
    """Parse one results.json; None for results of other tasks (e.g. a previous report)."""
    rel = path.parent.relative_to(root).as_posix()
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Incomplete(rel, f"unreadable {RESULTS}: {exc}")
    if not isinstance(data, dict):
        return Incomplete(rel, f"{RESULTS} is not a JSON object")
    if data.get("task", "explain") != "explain":
        return None
    if data.get("complete") is not True:
        return Incomplete(rel, 'not marked "complete": true (still running, or failed)')
    return JobResult(job_dir=path.parent, method=_dict(data.get("method")), model=_dict(data.get("model")),
                     dataset=_dict(data.get("dataset")), summary=_dict(data.get("summary")),
                     samples=[s for s in data.get("samples") or [] if isinstance(s, dict)],
                     overrides=read_overrides(path.parent), rel=rel)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def find_failed(sweep_dir: str | Path) -> list[Failed]:
    """Every job under `sweep_dir` with a failed.json (outside hidden folders), in natural order."""
    root = Path(sweep_dir).expanduser().resolve()
    out = []
    for path in root.rglob(FAILED) if root.is_dir() else ():
        rel_parts = path.relative_to(root).parts[:-1]
        if any(part.startswith(".") for part in rel_parts):
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            data = {"error": f"unreadable {FAILED}: {exc}"}
        data = data if isinstance(data, dict) else {"error": f"{FAILED} is not a JSON object"}
        overrides = tuple(str(o) for o in data.get("overrides") or [])
        complete = read_job(path.parent / RESULTS, root) if (path.parent / RESULTS).is_file() else None
        out.append(Failed(path.parent.relative_to(root).as_posix(), str(data.get("error", "?")), overrides,
                          isinstance(complete, JobResult)))
    return sorted(out, key=lambda f: natural_key(f.rel))


def scan_results(sweep_dir: str | Path, allow_empty: bool = False) -> tuple[list[JobResult], list[Incomplete]]:
    """Complete jobs and skipped (incomplete or corrupt) jobs under `sweep_dir`; warns for each skipped one.
    No job at all is a ConfigError unless `allow_empty` (a sweep whose every job failed)."""
    root, paths = find_results(sweep_dir)
    jobs: list[JobResult] = []
    skipped: list[Incomplete] = []
    for path in paths:
        job = read_job(path, root)
        if isinstance(job, Incomplete):
            warnings.warn(f"vizlab report: skipping job {job.rel!r}: {job.reason}", stacklevel=2)
            skipped.append(job)
        elif job is not None:
            jobs.append(job)
    if not jobs and not skipped and not allow_empty:
        raise ConfigError(f"No {RESULTS} of an explain job found under {str(root)!r}: point sweep_dir at the "
                          f"directory of an explain run or sweep (e.g. outputs/multirun/explain/<date>/<time>).")
    return jobs, skipped


def collect_results(sweep_dir: str | Path) -> list[JobResult]:
    """Every complete job under `sweep_dir` (any depth); incomplete or corrupt ones are skipped with a warning."""
    return scan_results(sweep_dir)[0]


# ----------------------------------------------------------------------------- tables


def metric_value(job: JobResult, key: str) -> float | None:
    """A finite float from the job's summary, else None."""
    value = job.summary.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def report_table(jobs: list[JobResult]) -> list[dict[str, Any]]:
    """One row per job: method, model, dataset, num_samples, the metrics (None if absent) and job dir."""
    rows = []
    for job in jobs:
        row: dict[str, Any] = {"method": job.method_name, "model": job.model_name, "dataset": job.dataset_name,
                               "num_samples": job.summary.get("num_samples", len(job.samples))}
        row.update({m.key: metric_value(job, m.key) for m in METRICS})
        row["job"] = job.rel
        rows.append(row)
    return rows


def method_labels(jobs: list[JobResult]) -> list[str]:
    """Row label per job: the method name, made unique per (model, dataset) cell with the job's
    distinguishing overrides (e.g. `smoothgrad (method.n_samples=8)`) or, failing that, its directory."""
    labels = [job.method_name for job in jobs]
    cells = [(labels[i], job.model_name, job.dataset_name) for i, job in enumerate(jobs)]
    counts = Counter(cells)
    for i, job in enumerate(jobs):
        if counts[cells[i]] < 2:
            continue
        group = [jobs[k].overrides for k in range(len(jobs)) if cells[k] == cells[i]]
        extra = [o for o in job.overrides
                 if not all(o in g for g in group) and o.split("=", 1)[0].lstrip("+~") not in GROUP_KEYS]
        labels[i] = f"{job.method_name} ({', '.join(extra) if extra else job.rel})"
    final = Counter((labels[i], job.model_name, job.dataset_name) for i, job in enumerate(jobs))
    return [f"{labels[i]} [{job.rel}]" if final[(labels[i], job.model_name, job.dataset_name)] > 1 else labels[i]
            for i, job in enumerate(jobs)]


@dataclass
class MetricTable:
    """One metric as a method × model grid for one dataset; `best[model]` is the best value in that column."""

    metric: Summary
    dataset: str
    methods: list[str]
    models: list[str]
    cells: dict[tuple[str, str], float]
    best: dict[str, float]

    def text(self, method: str, model: str) -> str:
        value = self.cells.get((method, model))
        return "–" if value is None else format(value, self.metric.fmt)

    def is_best(self, method: str, model: str) -> bool:
        value = self.cells.get((method, model))
        return value is not None and value == self.best.get(model)


def metric_tables(jobs: list[JobResult]) -> list[MetricTable]:
    """Tables for every metric present in at least one job, per dataset, in METRICS order."""
    labels = method_labels(jobs)
    datasets = sorted({job.dataset_name for job in jobs})
    tables = []
    for metric in METRICS:
        for dataset in datasets:
            cells = {(labels[i], job.model_name): v for i, job in enumerate(jobs)
                     if job.dataset_name == dataset and (v := metric_value(job, metric.key)) is not None}
            if not cells:
                continue
            pick = max if metric.higher_is_better else min
            models = sorted({model for _, model in cells})
            best = {m: pick(v for (_, model), v in cells.items() if model == m) for m in models}
            methods = sorted({method for method, _ in cells}, key=natural_key)
            tables.append(MetricTable(metric, dataset, methods, models, cells, best))
    return tables


# ----------------------------------------------------------------------------- CSV / Markdown


def write_csv(jobs: list[JobResult], path: str | Path) -> Path:
    """report.csv: one row per job (report_table), empty cells for absent metrics."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in report_table(jobs):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return write_bytes_atomic(path, buf.getvalue().encode())


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(table: MetricTable, with_dataset: bool) -> list[str]:
    title = f"## {table.metric.heading}" + (f" — {table.dataset}" if with_dataset else "")
    lines = [title, "", "| method | " + " | ".join(_md(m) for m in table.models) + " |",
             "|---|" + "---:|" * len(table.models)]
    for method in table.methods:
        cells = [f"**{table.text(method, m)}**" if table.is_best(method, m) else table.text(method, m)
                 for m in table.models]
        lines.append(f"| {_md(method)} | " + " | ".join(cells) + " |")
    return lines + [""]


def write_markdown(jobs: list[JobResult], path: str | Path, incomplete: Sequence[Incomplete] = (),
                   failed: Sequence[Failed] = ()) -> Path:
    """report.md: one method × model table per metric (best per model in bold), then failed and incomplete jobs."""
    tables = metric_tables(jobs)
    with_dataset = len({t.dataset for t in tables}) > 1
    lines = ["# vizlab sweep report", "",
             f"{len(jobs)} complete job(s), {len(failed)} failed, {len(incomplete)} incomplete.", ""]
    for table in tables:
        lines += markdown_table(table, with_dataset)
    if not tables:
        lines += ["No metrics in any job.", ""]
    if failed:
        lines += ["## Failed jobs", ""] + [f"- `{job.rel}`: {_md(job.reason)}" for job in failed] + [""]
    if incomplete:
        lines += ["## Incomplete jobs", ""] + [f"- `{job.rel}`: {_md(job.reason)}" for job in incomplete] + [""]
    return write_bytes_atomic(path, "\n".join(lines).encode())


# ----------------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.15em;margin:28px 0 8px}h3{font-size:1em;margin:20px 0 6px}
.meta{color:#5b6475;margin:0 0 16px}
.tables{display:flex;flex-wrap:wrap;gap:8px 28px;align-items:flex-start}
table{border-collapse:collapse;background:#fff;font-size:.92em;box-shadow:0 1px 2px #0001}
th,td{border:1px solid #d8dce3;padding:4px 10px}th{background:#eef1f5;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.best{font-weight:700;background:#e5f4e8}
caption{text-align:left;font-weight:600;padding:4px 0}
.sample{margin:18px 0;padding:12px;background:#fff;border:1px solid #e1e4ea;border-radius:6px}
.sample h3{margin:0 0 8px}.row{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:232px}figure img{width:224px;height:auto;display:block;border:1px solid #ccd;background:#eee}
figcaption{font-size:.85em;margin-top:4px}figcaption b{display:block;margin-bottom:2px}
.missing{width:224px;height:224px;display:flex;align-items:center;justify-content:center;text-align:center;
background:#f0f0f0;color:#888;font-size:.85em;border:1px dashed #bbb}
.small{color:#5b6475;font-size:.85em}ul.incomplete li{margin:2px 0}code{font-size:.9em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_table(table: MetricTable, with_dataset: bool) -> str:
    caption = table.metric.heading + (f" — {table.dataset}" if with_dataset else "")
    head = "".join(f"<th>{_e(m)}</th>" for m in table.models)
    body = []
    for method in table.methods:
        cells = "".join(f'<td class="num{" best" if table.is_best(method, m) else ""}">'
                        f"{_e(table.text(method, m))}</td>" for m in table.models)
        body.append(f"<tr><th>{_e(method)}</th>{cells}</tr>")
    return (f"<table><caption>{_e(caption)}</caption><thead><tr><th>method</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def heatmap_file(sample: dict[str, Any]) -> str | None:
    """The picture to show for a sample: its GIF (clips) if any, else its first image file."""
    files = [str(f) for f in sample.get("files") or []]
    for suffixes in ((".gif",), IMAGE_SUFFIXES):
        for f in files:
            if f.lower().endswith(suffixes):
                return f
    return None


def relative_url(target: Path, report_dir: Path) -> str:
    """URL of `target` relative to the report folder (percent-encoded; sweep dirs contain '=' and ',')."""
    return quote(Path(os.path.relpath(target, report_dir)).as_posix())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def figure_html(job: JobResult, label: str, sample: dict[str, Any], report_dir: Path) -> str:
    """One gallery cell: heatmap, "method · model" caption, target and the sample's metrics."""
    name = heatmap_file(sample)
    path = job.job_dir / name if name else None
    if path is not None and path.is_file():
        alt = f"{label} · {job.model_name} · {sample.get('name', '')}"
        picture = f'<img src="{_e(relative_url(path, report_dir))}" alt="{_e(alt)}">'
    else:
        picture = f'<div class="missing">{_e(f"missing: {name}" if name else "no heatmap saved")}</div>'
    lines = []
    if "target_name" in sample or "target" in sample:
        prob = sample.get("target_prob")
        prob_text = f" (p={prob:.2f})" if isinstance(prob, (int, float)) else ""
        lines.append(f"target: {_e(sample.get('target_name', sample.get('target')))}{_e(prob_text)}")
    metrics = sample.get("metrics") if isinstance(sample.get("metrics"), dict) else {}
    if metrics:
        lines += [f"{_e(k)} {_e(_fmt(v))}" for k, v in metrics.items()]
    lines.append(f'<span class="small">{_e(job.rel)}</span>')
    head = f"<b>{_e(label)} · {_e(job.model_name)}</b>"
    return f"<figure>{picture}<figcaption>{head}{'<br>'.join(lines)}</figcaption></figure>"


def gallery_groups(jobs: list[JobResult]) -> dict[tuple[str, str], list[tuple[int, dict[str, Any]]]]:
    """(dataset, sample name) → [(job index, sample record)], ordered by dataset then sample index."""
    order: dict[tuple[str, str], tuple[str, int]] = {}
    groups: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    for i, job in enumerate(jobs):
        for k, sample in enumerate(job.samples):
            key = (job.dataset_name, str(sample.get("name", sample.get("index", k))))
            index = sample.get("index", k)
            order.setdefault(key, (job.dataset_name, index if isinstance(index, int) else k))
            groups.setdefault(key, []).append((i, sample))
    return {key: groups[key] for key in sorted(groups, key=lambda key: order[key])}


def gallery_html(jobs: list[JobResult], labels: list[str], report_dir: Path) -> str:
    parts = []
    for (dataset, name), members in gallery_groups(jobs).items():
        members = sorted(members, key=lambda m: (natural_key(labels[m[0]]), jobs[m[0]].model_name))
        figures = "".join(figure_html(jobs[i], labels[i], sample, report_dir) for i, sample in members)
        parts.append(f'<section class="sample"><h3>{_e(name)} <span class="small">({_e(dataset)})</span></h3>'
                     f'<div class="row">{figures}</div></section>')
    return "".join(parts) or "<p>No samples.</p>"


def write_html(jobs: list[JobResult], path: str | Path, incomplete: Sequence[Incomplete] = (),
               title: str = "vizlab sweep report", failed: Sequence[Failed] = ()) -> Path:
    """report.html: metric tables at the top, then one gallery row per (dataset, sample) with each job's heatmap."""
    path = Path(path)
    report_dir = path.parent.resolve()
    tables = metric_tables(jobs)
    with_dataset = len({t.dataset for t in tables}) > 1
    tables_html = "".join(html_table(t, with_dataset) for t in tables) or "<p>No metrics in any job.</p>"
    skipped = ""
    if failed:
        items = "".join(f"<li><code>{_e(j.rel)}</code>: {_e(j.reason)}</li>" for j in failed)
        skipped += f'<h2>Failed jobs</h2><ul class="incomplete failed">{items}</ul>'
    if incomplete:
        items = "".join(f"<li><code>{_e(j.rel)}</code>: {_e(j.reason)}</li>" for j in incomplete)
        skipped += f'<h2>Incomplete jobs</h2><ul class="incomplete">{items}</ul>'
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class=\"meta\">{len(jobs)} complete job(s), {len(failed)} failed, "
            f"{len(incomplete)} incomplete. "
            f"Best value per model column in bold.</p>"
            f'<h2>Metrics</h2><div class="tables">{tables_html}</div>{skipped}'
            f"<h2>Heatmaps</h2>{gallery_html(jobs, method_labels(jobs), report_dir)}</body></html>\n")
    return write_bytes_atomic(path, page.encode())


# ----------------------------------------------------------------------------- entry point


def build_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Write report.csv, report.md and report.html for the sweep into `out_dir` (default: the sweep dir)."""
    failed = find_failed(sweep_dir)
    jobs, incomplete = scan_results(sweep_dir, allow_empty=bool(failed))
    root = Path(sweep_dir).expanduser().resolve()
    out = Path(out_dir).expanduser().resolve() if out_dir is not None else root
    title = f"vizlab sweep report: {root.name}"
    files = [write_csv(jobs, out / "report.csv"), write_markdown(jobs, out / "report.md", incomplete, failed),
             write_html(jobs, out / "report.html", incomplete, title=title, failed=failed)]
    return {"summary": {"num_samples": len(jobs), "num_jobs": len(jobs),
                        "failed": [{"job": j.rel, "reason": j.reason, "overrides": list(j.overrides)} for j in failed],
                        "incomplete": [{"job": j.rel, "reason": j.reason} for j in incomplete]},
            "files": [str(f) for f in files]}

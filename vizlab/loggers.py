"""Experiment loggers from `cfg.logger`: wandb (default, offline unless told otherwise), csv, tensorboard, none."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vizlab.errors import ConfigError
from vizlab.validation import check_number

LOGGERS = ("wandb", "csv", "tensorboard", "none")


def wandb_mode() -> str:
    """WANDB_MODE if the user set it; else online when an API key is present; else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


WANDB_INIT_TIMEOUT = 15.0  # seconds an online W&B run may take to start before vizlab logs offline instead


def wandb_logger(cfg: DictConfig, out_dir: Path, run_name: str) -> Any:
    """A quiet WandbLogger (no W&B banner or summary on the console). Online (WANDB_API_KEY or
    WANDB_MODE=online) it starts the run at once with `logger.init_timeout` seconds (default 15);
    if that fails (no network, bad key) it warns in one line and logs offline instead, so the run
    is never lost: `wandb sync <job>/wandb/offline-run-*` uploads it later."""
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    timeout = check_number("logger.init_timeout", cfg.get("init_timeout", WANDB_INIT_TIMEOUT), low=0, low_open=True)

    def make(mode: str) -> WandbLogger:
        logger = WandbLogger(project=cfg.get("project", "vizlab"), name=run_name, save_dir=str(out_dir),
                             offline=mode == "offline", mode=mode if mode in ("offline", "disabled") else None,
                             tags=list(cfg.get("tags") or []), log_model=False,
                             settings=wandb.Settings(silent=True, init_timeout=float(timeout)))
        logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; W&B warns that it has no effect
        return logger

    mode = wandb_mode()
    logger = make(mode)
    if mode != "online":
        return logger
    os.environ.setdefault("WANDB_SILENT", "true")  # also W&B's login line; vizlab prints the run's URL itself
    try:
        print(f"vizlab: W&B run: {logger.experiment.url}")  # starts the online run now, within the timeout
    except Exception as exc:  # wandb raises CommError, UsageError, AuthenticationError, ...
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = lines[0][:160] if lines else type(exc).__name__
        print(f"vizlab: warning: W&B did not start an online run within {float(timeout):g} s ({reason}); "
              f"logging offline to {out_dir / 'wandb'} instead (upload it later with `wandb sync`).", file=sys.stderr)
        logger = make("offline")
    return logger


def build_loggers(cfg: DictConfig, out_dir: Path, run_name: str, config: dict[str, Any]) -> list:
    """Lightning loggers writing under `out_dir`, with the resolved config logged as hyper-parameters."""
    name = cfg.get("name", "none")
    if name not in LOGGERS:
        raise ConfigError(f"Unknown logger {name!r}; valid: {', '.join(LOGGERS)}.")
    if name == "none":
        return []
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    if name == "wandb":
        logger = wandb_logger(cfg, out_dir, run_name)
    elif name == "csv":
        logger = CSVLogger(save_dir=str(out_dir), name="csv", version="")
    else:
        logger = TensorBoardLogger(save_dir=str(out_dir), name="tensorboard", version="")
    logger.log_hyperparams(config)
    return [logger]


def sample_caption(record: dict[str, Any]) -> str:
    """"<index> <name>: <target name>", the caption of a sample's pictures."""
    return f"{record['index']} {record['name']}: {record['target_name']}"


def flat_details(details: dict[str, Any]) -> dict[str, Any]:
    """A record's "details" as scalar columns: lists become name[0], name[1], ..."""
    out: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, (list, tuple)):
            out.update({f"{key}[{i}]": v for i, v in enumerate(value)})
        else:
            out[key] = value
    return out


def log_media(loggers: list, records: list[dict[str, Any]], root: Path, limit: int = 32,
              curves: dict[str, list[float | None]] | None = None) -> None:
    """To W&B: overlays (first `limit` PNGs), clip GIFs as videos, method figures (figures/<name>),
    the per-sample table (metrics and method details as columns) and the mean optimisation curves
    (curves/<name> against curves/iteration). To TensorBoard: overlays, figures and curves."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    shown = [r for r in records if r["files"] and r["files"][0].endswith(".png")][:limit]
    paths = [str(root / r["files"][0]) for r in shown]
    captions = [sample_caption(r) for r in shown]
    clips = [(str(root / f), sample_caption(r)) for r in shown for f in r["files"] if f.endswith(".gif")]
    figures: dict[str, list[tuple[str, str]]] = {}
    for r in records:
        for name, rel in (r.get("figures") or {}).items():
            if len(figures.setdefault(name, [])) < limit:
                figures[name].append((str(root / rel), sample_caption(r)))
    curves = {k: v for k, v in (curves or {}).items() if v}
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            if paths:
                logger.log_image(key="heatmaps", images=paths, caption=captions)
            if clips:
                logger.log_video(key="heatmap_clips", videos=[c[0] for c in clips], caption=[c[1] for c in clips],
                                 format=["gif"] * len(clips))
            for name, shown_figures in figures.items():
                logger.log_image(key=f"figures/{name}", images=[f[0] for f in shown_figures],
                                 caption=[f[1] for f in shown_figures])
            details = [flat_details(r.get("details") or {}) for r in records]
            keys = sorted({k for r in records for k in r["metrics"]})
            extra = sorted({k for d in details for k in d})
            columns = ["index", "name", "target", "target_name", "target_prob", "predicted", "seconds", *keys, *extra]
            data = [[r["index"], r["name"], r["target"], r["target_name"], r["target_prob"], r["predicted"],
                     r["seconds"], *[r["metrics"].get(k) for k in keys], *[d.get(k) for k in extra]]
                    for r, d in zip(records, details, strict=True)]
            logger.log_table(key="samples", columns=columns, data=data)
            if curves:
                log_wandb_curves(logger.experiment, curves)
        elif isinstance(logger, TensorBoardLogger):
            import cv2

            for key, files in (("heatmaps", paths), *((f"figures/{n}", [f[0] for f in v]) for n, v in figures.items())):
                for step, path in enumerate(files):
                    image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
                    logger.experiment.add_image(key, image, step, dataformats="HWC")
            for name, values in curves.items():
                for step, value in enumerate(values):
                    if value is not None:
                        logger.experiment.add_scalar(f"curves/{name}", value, step)


def log_wandb_curves(run: Any, curves: dict[str, list[float | None]]) -> None:
    """Mean per-iteration curves as W&B history rows {curves/iteration: t, curves/<name>: value},
    plotted against curves/iteration (not W&B's global step)."""
    run.define_metric("curves/iteration")
    run.define_metric("curves/*", step_metric="curves/iteration")
    length = max(len(v) for v in curves.values())
    for t in range(length):
        row: dict[str, Any] = {"curves/iteration": t}
        row.update({f"curves/{name}": values[t] for name, values in curves.items()
                    if t < len(values) and values[t] is not None})
        run.log(row)


def log_images(loggers: list, key: str, images: list, captions: list[str] | None = None,
               step: int | None = None) -> None:
    """Log uint8 RGB arrays (H, W, 3) as pictures under `key`: W&B images, TensorBoard images
    (`key/i`); loggers without image support (CSV) are skipped."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    if not images:
        return
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=list(images), step=step,
                             **({"caption": list(captions)} if captions else {}))
        elif isinstance(logger, TensorBoardLogger):
            for i, image in enumerate(images):
                logger.experiment.add_image(f"{key}/{i}", image, step or 0, dataformats="HWC")


def finish_loggers(loggers: list) -> None:
    """Close W&B runs so their files are complete on disk."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger" and getattr(logger, "_experiment", None) is not None:
            logger.experiment.finish()


BLOCK = 32 * 1024
HEADER = 7  # ":W&B" + magic 0xBEE1 (little endian) + version byte


def _wandb_records(path: Path):
    """Raw records of a .wandb file (a LevelDB-style log: 32 KiB blocks, 7-byte record headers)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = HEADER, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4:pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST
            yield pending
            pending = b""


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """Read an offline W&B run folder back: {"config", "history" (list of rows), "summary", "files"}.

    Lets tests and users check what a run logged without syncing it anywhere.
    """
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    (path,) = run_dir.glob("run-*.wandb")
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "files": []}
    for raw in _wandb_records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                                   for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    out["files"] = sorted(str(p.relative_to(run_dir / "files")) for p in (run_dir / "files").rglob("*") if p.is_file())
    return out

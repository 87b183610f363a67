"""The command line's way into Hydra, shared by `python run.py ...` and the `vizlab` console script.

`hydra_main(conf_dir)` runs `vizlab.tasks.run_task` under Hydra and turns what Hydra would print
as 7–29 lines (an unknown `model=` option, a misspelled key, an override it cannot parse) into one
`vizlab: error:` line with the valid choices and a did-you-mean, exit status 2. Ctrl-C anywhere
exits with status 130 after the task runner's clean-up. With HYDRA_FULL_ERROR=1 set by the user,
Hydra's own errors are raised unchanged (for debugging).

`conf_dir()` finds the configs: `vizlab/conf` inside an installed wheel, `conf/` in the source tree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vizlab import interrupts

PACKAGE_DIR = Path(__file__).resolve().parent


def conf_dir() -> Path | None:
    """The config folder: the wheel's package data (vizlab/conf) or the source tree's conf/."""
    for candidate in (PACKAGE_DIR / "conf", PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def group_options(conf: Path | None, group: str) -> list[str]:
    """The option names of config group `group` (conf/<group>/*.yaml)."""
    folder = conf / group if conf is not None else None
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder is not None and folder.is_dir() else []


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _keys(node: object) -> list[str]:
    try:
        return sorted(str(k) for k in node.keys())  # type: ignore[attr-defined]
    except Exception:
        return []


def unknown_key_message(full_key: str, keys: Iterable[str]) -> str:
    """'Unknown option method.layr. Did you mean ...? Valid options of method: ...'."""
    from vizlab.errors import suggest

    keys = sorted(keys)
    parent, _, key = full_key.rpartition(".")
    where = f"of {parent}" if parent else "at the top level (config groups and keys)"
    listed = f" Valid options {where}: {', '.join(keys)}." if keys else ""
    return f"Unknown option {full_key!r}.{suggest(key, keys, prefix=f'{parent}.' if parent else '')}{listed}"


def hydra_error_message(exc: BaseException, conf: Path | None = None) -> str:
    """One line for a Hydra composition, override or OmegaConf error."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from vizlab.errors import suggest

    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and "/" in exc.missing_cfg_file:
        group, name = exc.missing_cfg_file.rsplit("/", 1)
        options = sorted(exc.options or []) or group_options(conf, group)
        if options:
            return f"Unknown {group}={name}.{suggest(name, options)} Valid choices for {group}=: {', '.join(options)}."
    if isinstance(exc, OverrideParseException):
        return (f"Cannot parse the override {exc.override!r} ({_first_line(exc.message)}); write key=value, "
                "e.g. method.steps=50 or dataset.images=[chelsea,coffee].")
    cause = exc.__cause__
    if isinstance(exc, ConfigCompositionException) and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        full_key = str(getattr(cause, "full_key", "") or getattr(cause, "key", ""))
        if full_key:
            return unknown_key_message(full_key, _keys(getattr(cause, "parent_node", None)))
    text = _first_line(str(exc)) or type(exc).__name__
    if text.startswith("Could not override") and cause is not None:
        text = f"{text} {_first_line(str(cause))}"
    return text


def is_config_problem(exc: BaseException) -> bool:
    """Hydra/OmegaConf errors (composition, overrides, interpolation) and vizlab's own."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from vizlab.errors import VizlabError

    return isinstance(exc, (HydraException, OmegaConfBaseException, VizlabError))


def hydra_main(conf: Path | None, argv: list[str] | None = None) -> None:
    """Run vizlab under Hydra with the configs in `conf` and the command line `argv` (default sys.argv[1:])."""
    interrupts.install()
    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises; vizlab reports (below)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    try:
        if conf is None:
            raise_missing_conf()
        import hydra

        from vizlab.resolvers import register_resolvers
        from vizlab.tasks import run_task

        register_resolvers()  # ${vizlab.methods:...} (experiment sweeps), vizlab_* (hydra.run.dir, hardware=slurm)
        hydra.main(version_base="1.3", config_path=str(conf), config_name="config")(run_task)()
    except KeyboardInterrupt:
        interrupts.clean_unstarted_run()
        interrupts.exit_interrupted()
    except Exception as exc:
        if interrupts.was_interrupted():
            interrupts.clean_unstarted_run()
            interrupts.exit_interrupted()
        if user_wants_traceback or not is_config_problem(exc):
            raise
        from vizlab.errors import VizlabError

        message = str(exc) if isinstance(exc, VizlabError) else hydra_error_message(exc, conf)
        print(f"vizlab: error: {' '.join(message.split())}", file=sys.stderr)
        sys.exit(2)


def raise_missing_conf() -> None:
    from vizlab.errors import ConfigError

    raise ConfigError(f"vizlab's config folder was found neither in {PACKAGE_DIR / 'conf'} (installed package) nor "
                      f"in {PACKAGE_DIR.parent / 'conf'} (source tree); reinstall vizlab (pip install vizlab or pip "
                      "install -e . in its source tree).")



class RunStartGuard(Callback):
    """Hydra callback (conf/hydra/default.yaml): remembers a single run's job directory before
    Hydra creates it, so that Ctrl-C during start-up can remove what Hydra wrote there."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        root = config.get("paths", {}).get("output_root")
        interrupts.expect_run(Path(str(config.hydra.run.dir)).absolute(), str(config.hydra.job.name),
                              Path(root).absolute() if root else None)

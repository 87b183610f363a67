"""Checks of option values by type and range, in one place: every check raises one ConfigError
that names the option, what it must be and what it got.

    check_number("task.batch_size", 0, low=1, integer=True)    # ConfigError: ... must be an integer >= 1; got 0.
    check_type("method.steps", "abc", int)                      # ConfigError: ... must be an integer; got 'abc' (str).
    check_config(cfg)                                           # every task/model/dataset/hardware option in OPTIONS

`OPTIONS` lists the numeric options of the config groups (task, model, dataset, hardware) with their
ranges; method and metric options are checked against the type hints of the class that takes them
(`check_signature`, `check_fields`) and by the class itself for their ranges.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vizlab.errors import ConfigError


def is_number(value: Any) -> bool:
    """A real number that is not a bool (ints, floats, numpy scalars)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An integer that is not a bool (Python or numpy); floats such as 3.0 are not integers."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_number(option: str, value: Any, low: float | None = None, high: float | None = None,
                 integer: bool = False, low_open: bool = False, high_open: bool = False,
                 optional: bool = False) -> Any:
    """Raise ConfigError unless `value` is a finite number (an integer with integer=True) within
    the bounds (inclusive unless low_open/high_open); None passes when optional. Returns `value`."""
    if optional and value is None:
        return value
    ok = is_integer(value) if integer else is_number(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high}")
        kind = "an integer" if integer else "a number"
        kind += f" {' and '.join(bounds)}" if bounds else ""
        raise ConfigError(f"{option} must be {kind}{' or null' if optional else ''}; got {describe(value)}.")
    return value


def check_choice(option: str, value: Any, choices: collections.abc.Iterable[Any]) -> Any:
    """Raise ConfigError unless `value` is one of `choices`. Returns `value`."""
    from vizlab.errors import suggest

    choices = list(choices)
    if value not in choices:
        hint = suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
        raise ConfigError(f"{option} must be one of {', '.join(map(repr, choices))}; got {describe(value)}.{hint}")
    return value


def describe(value: Any) -> str:
    """repr(value), with its type when that is not obvious from the repr (strings that look like numbers)."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})" if isinstance(value, str) else text


# ----------------------------------------------------------------------------- type hints


def type_name(hint: Any) -> str:
    """A readable name of a type hint: 'an integer', 'a number', 'true or false', 'a string', ..."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if origin in (list, tuple, collections.abc.Sequence):
        args = typing.get_args(hint)
        return f"a list of {type_name(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def matches(value: Any, hint: Any) -> bool:
    """Whether `value` fits the type hint. Hints it does not understand (Any, classes, callables) accept."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_integer(value)
    if hint is float:
        return is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(hint))
    if origin in (list, tuple, collections.abc.Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, collections.abc.Sequence):
            return False
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return not args or all(matches(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping) or hint in (dict, Mapping):
        return isinstance(value, collections.abc.Mapping)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def check_type(option: str, value: Any, hint: Any) -> Any:
    """Raise ConfigError unless `value` fits the type hint `hint` (see `matches`). Returns `value`."""
    if not matches(value, hint):
        raise ConfigError(f"{option} must be {type_name(hint)}; got {describe(value)}.")
    return value


def hints_of(func: Callable[..., Any]) -> dict[str, Any]:
    """The resolved type hints of a function or class (empty if they cannot be resolved)."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # forward references that only exist for type checkers
        return {}


def check_signature(prefix: str, func: Callable[..., Any], values: Mapping[str, Any],
                    skip: collections.abc.Container[str] = ()) -> None:
    """Check keyword values against the parameter type hints of `func` (e.g. a method's __init__):
    ConfigError naming `<prefix>.<key>` for the first value of the wrong type (keys in `skip` are
    left to `func`, which checks them with a better message)."""
    hints = hints_of(func)
    params = inspect.signature(func).parameters
    for key, value in values.items():
        if key in params and key in hints and key not in skip:
            check_type(f"{prefix}.{key}", value, hints[key])


def check_fields(prefix: str, cls: type, values: Mapping[str, Any]) -> None:
    """Check values against the field type hints of dataclass `cls` (unknown keys are left to `cls`)."""
    hints = hints_of(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key in names and key in hints:
            check_type(f"{prefix}.{key}", value, hints[key])


# ----------------------------------------------------------------------------- the config groups


@dataclass(frozen=True)
class Rule:
    """A numeric option: integer or not, bounds, and whether null is allowed."""

    low: float | None = None
    high: float | None = None
    integer: bool = True
    optional: bool = False
    low_open: bool = False

    def check(self, option: str, value: Any) -> None:
        check_number(option, value, self.low, self.high, self.integer, self.low_open, optional=self.optional)


INT_POSITIVE = Rule(low=1)
INT_POSITIVE_OR_NULL = Rule(low=1, optional=True)
INT_NON_NEGATIVE = Rule(low=0)

# Every numeric option of the task, model, dataset and hardware groups. Options a config does not
# have are not checked (each task has its own); options not listed are checked where they are used.
OPTIONS: dict[str, Rule] = {
    "seed": Rule(optional=True),
    "task.batch_size": INT_POSITIVE_OR_NULL,
    "task.max_samples": INT_POSITIVE_OR_NULL,
    "task.num_workers": INT_NON_NEGATIVE,
    "task.log_images": INT_NON_NEGATIVE,
    "task.overlay_power": Rule(low=0, integer=False, low_open=True),
    "task.epochs": INT_POSITIVE_OR_NULL,
    "task.num_train": INT_POSITIVE_OR_NULL,
    "task.num_val": INT_POSITIVE_OR_NULL,
    "task.lr": Rule(low=0, integer=False, low_open=True, optional=True),
    "task.weight_decay": Rule(low=0, integer=False, optional=True),
    "task.seed": Rule(optional=True),
    "task.cam_samples": INT_NON_NEGATIVE,
    "model.num_classes": INT_POSITIVE_OR_NULL,
    "dataset.max_pixels": INT_POSITIVE,
    "dataset.frames": INT_POSITIVE_OR_NULL,
    "dataset.num_samples": INT_POSITIVE_OR_NULL,
    "dataset.size": INT_POSITIVE_OR_NULL,
    "dataset.seed": Rule(optional=True),
    "dataset.crop_ratio": Rule(low=0, high=1, integer=False, low_open=True),
    "dataset.num_threads": INT_NON_NEGATIVE,
    "hardware.threads": INT_POSITIVE_OR_NULL,
    "hardware.devices": Rule(low=-1),  # -1: every visible device (0 is refused below)
}
TARGET_HELP = ("null (the predicted class), 'label' (the dataset's labels), a class index, a list of class "
               "indices or topK (e.g. top3)")


def check_config(cfg: Mapping[str, Any]) -> None:
    """Check every option of `cfg` listed in OPTIONS that the config has, and task.target's type."""
    for dotted, rule in OPTIONS.items():
        node: Any = cfg
        for part in dotted.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, Mapping) else _ABSENT
            if node is _ABSENT:
                break
        else:
            rule.check(dotted, node)
    hardware = cfg.get("hardware") if isinstance(cfg, Mapping) else None
    if isinstance(hardware, Mapping) and hardware.get("devices") == 0:
        raise ConfigError("hardware.devices must be -1 (every visible device) or a count >= 1; got 0.")
    task = cfg.get("task") if isinstance(cfg, Mapping) else None
    target = task.get("target") if isinstance(task, Mapping) else None
    from vizlab.methods.targets import is_multi_target

    if target is not None and target != "label" and not is_integer(target) and not is_multi_target(target):
        raise ConfigError(f"task.target must be {TARGET_HELP}; got {describe(target)}.")


_ABSENT = object()

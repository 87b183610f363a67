"""Errors vizlab raises for bad input. Each message names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VizlabError(ValueError):
    """Base class: a user-facing error with a message that says what to change."""


class ConfigError(VizlabError):
    """A configuration value is invalid (unknown name, out-of-range number, missing file)."""


class InputError(VizlabError):
    """An input tensor or target is invalid (wrong shape, NaN, class index out of range)."""


class LayerNotFoundError(VizlabError):
    """A layer name does not exist in the model."""


class CheckpointError(VizlabError):
    """A checkpoint file is missing or does not fit the model."""


def suggest(name: str, choices: Iterable[str], limit: int = 5, prefix: str = "") -> str:
    """Return a ' Did you mean ...?' hint for `name` among `choices` (empty if nothing is close);
    each suggestion is shown with `prefix` (e.g. "method." for the keys of the method group)."""
    close = difflib.get_close_matches(name, list(choices), n=limit, cutoff=0.5)
    return f" Did you mean: {', '.join(repr(prefix + c) for c in close)}?" if close else ""


def unknown_choice(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """Build the error for an unknown registry name, listing every valid choice."""
    choices = sorted(choices)
    return ConfigError(
        f"Unknown {kind} {name!r}.{suggest(name, choices)} Valid choices: {', '.join(choices)}."
    )


def no_embedded_weights(name: str, checkpoint_hint: str) -> CheckpointError:
    """The error for pretrained=True on a model whose weights vizlab does not ship."""
    return CheckpointError(
        f"{name} has no embedded weights and vizlab never downloads them. "
        f"Pass model.checkpoint={checkpoint_hint} or model.pretrained=false for random init."
    )

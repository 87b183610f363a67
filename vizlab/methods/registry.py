"""The method registry: every attribution method registers itself with `@register`.

    @register
    class MyMethod(AttributionMethod):
        name = "my_method"

`vizlab.methods` imports every method module, so importing it fills REGISTRY; the CLI, the
config tests, the sweeps and the README's method table all read the list from here.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from vizlab.errors import ConfigError, unknown_choice
from vizlab.validation import check_signature

if TYPE_CHECKING:  # pragma: no cover
    from vizlab.methods.base import AttributionMethod

REGISTRY: dict[str, type[AttributionMethod]] = {}
LAYER_OPTIONS = ("layer", "classifier")  # resolved by vizlab.layers.resolve_layer, which names what is wrong
M = TypeVar("M", bound=type)


def register(cls: M) -> M:
    """Class decorator: add a method to the registry under `cls.name` (names must be unique)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == "base":
        raise TypeError(f"{cls.__name__} needs a class attribute `name` to be registered.")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise TypeError(f"Method name {name!r} is taken by {REGISTRY[name].__name__}.")
    REGISTRY[name] = cls
    return cls


def available_methods() -> list[str]:
    return sorted(REGISTRY)


INPUT_KINDS = {"image": 4, "video": 5}


def sweep_methods(kind: str = "image", families: Iterable[str] = ()) -> list[str]:
    """Registered methods that run on any network of `kind` ("image": (N, C, H, W), "video": clips),
    optionally only those of the given `family` values (cam, gradient, ...): the method list of the
    ready sweeps (conf/experiment/*.yaml, via the `vizlab.methods` config resolver) and `make sweep`."""
    if kind not in INPUT_KINDS:
        raise ConfigError(f"Method kind must be one of {sorted(INPUT_KINDS)}, got {kind!r}.")
    families = {f for f in families if f}
    known = {cls.family for cls in REGISTRY.values()}
    if families - known:
        raise ConfigError(f"Unknown method famil{'ies' if len(families - known) > 1 else 'y'} "
                          f"{sorted(families - known)}; known: {sorted(known)}.")
    return [name for name, cls in sorted(REGISTRY.items())
            if cls.any_model and cls.input_dims in (None, INPUT_KINDS[kind]) and (not families or cls.family in families)]


def options_dataclass(cls: type) -> type | None:
    """The frozen options dataclass a method class takes (its `options_type`: the extremal family),
    or None for methods whose options are their __init__'s keyword parameters."""
    options_type = getattr(cls, "options_type", None)
    return options_type if options_type is not None and dataclasses.is_dataclass(options_type) else None


def method_parameters(name: str) -> dict[str, Any]:
    """The keyword options of method `name` with their defaults: the fields of its options
    dataclass where it has one, else its __init__'s keyword parameters."""
    if name not in REGISTRY:
        raise unknown_choice("method", name, REGISTRY)
    options_type = options_dataclass(REGISTRY[name])
    if options_type is not None:
        return {f.name: f.default for f in dataclasses.fields(options_type)}
    sig = inspect.signature(REGISTRY[name].__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in ("self", "model")}


def build(name: str, model: Any, **options: Any) -> AttributionMethod:
    """Instantiate method `name` for `model`; unknown options, and options of the wrong type (checked
    against the type hints of the method's __init__, or by its options dataclass when it is made),
    raise a ConfigError naming them."""
    valid = method_parameters(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"Method {name!r} has no option(s) {unknown}. Valid options: {sorted(valid)}.")
    if options_dataclass(REGISTRY[name]) is None:  # an options dataclass checks its fields in __post_init__
        check_signature("method", REGISTRY[name].__init__, options, skip=LAYER_OPTIONS)
    return REGISTRY[name](model, **options)

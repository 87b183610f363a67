"""Fast mode for explaining and scoring: mixed precision, channels-last memory and torch.compile.

    fast = FastMode(precision="bf16-mixed", channels_last=True, compile=True)
    accelerate(model, fast)      # in place; every method and metric that calls `model` now runs fast
    ...
    restore(model)               # back to plain float32, contiguous, eager

What changes, and only there: `model(x)` (its forward pass). Inputs are turned channels-last
(4-D: `torch.channels_last`, 5-D clips: `torch.channels_last_3d`), the forward runs under
`torch.autocast` with the reduced dtype, and every floating output is cast back to float32.
Everything around the forward (gradients with respect to the input or to mask parameters, the
optimisers of the perturbation methods, maps, normalisation, deletion/insertion curves and AUCs)
stays float32; layer activations captured for CAM methods are float32 copies
(`vizlab.methods.hooks.capture_layer`).

Compilation: the model's forward is wrapped with `torch.compile` (backend `compile_backend`,
default inductor) and compiled on the first call. If that fails (no C++ compiler, an operator the
backend cannot lower, ...) vizlab warns once, naming the error, and runs the model uncompiled from
then on. Calls made while a hook is registered on a module inside the model (CAM, Grad-CAM and
other layer methods capture a layer with a per-call hook) run uncompiled: a compiled graph does
not see hooks added after it was traced (torch._dynamo skips hook guards), so compiling them would
silently skip the hook. Forward-only and input-gradient work (deletion/insertion, gradients, IG,
SmoothGrad, the extremal family) runs compiled.

Precision values: "32" (also 32 and "32-true": no autocast), "bf16-mixed", "16-mixed" (float16).
Float16 has a narrow exponent range: gradients below ~6e-8 flush to zero, so prefer bf16 on
GPUs that have it (Ampere and later). On CPUs without native bfloat16 / float16 arithmetic (no
AVX512-BF16, AMX or AVX512-FP16) autocast works but is several times *slower* than float32; vizlab
warns once when that is the case.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vizlab.errors import ConfigError

PRECISIONS: dict[str, torch.dtype | None] = {"32": None, "32-true": None, "bf16-mixed": torch.bfloat16,
                                             "16-mixed": torch.float16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
REDUCED = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class FastMode:
    """What to speed up. Defaults: nothing (float32, contiguous, eager).

    precision: "32" | "bf16-mixed" | "16-mixed" (32 and "32-true" mean "32").
    channels_last: store conv weights and inputs channels-last (clips: channels_last_3d).
    compile: False, True (torch.compile's default mode) or a mode name ("reduce-overhead", ...).
    compile_backend: torch.compile backend ("inductor"; "aot_eager" traces without code generation).
    """

    precision: str = "32"
    channels_last: bool = False
    compile: bool | str = False
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        precision = str(self.precision)
        if precision not in PRECISIONS:
            raise ConfigError(f"hardware.precision must be one of 32, bf16-mixed, 16-mixed; got {self.precision!r}.")
        object.__setattr__(self, "precision", "32" if precision == "32-true" else precision)
        if not isinstance(self.channels_last, bool):
            raise ConfigError(f"hardware.channels_last must be true or false, got {self.channels_last!r}.")
        if not isinstance(self.compile, bool) and self.compile not in COMPILE_MODES:
            raise ConfigError(f"hardware.compile must be false, true or a torch.compile mode "
                              f"({', '.join(COMPILE_MODES)}); got {self.compile!r}.")
        if self.compile and self.compile_backend not in torch._dynamo.list_backends(exclude_tags=()):
            raise ConfigError(f"hardware.compile_backend={self.compile_backend!r} is not a torch.compile backend; "
                              f"valid: {', '.join(torch._dynamo.list_backends())}.")

    @classmethod
    def from_config(cls, hardware: Any) -> FastMode:
        """From a hardware config (DictConfig or dict): precision (null = 32), channels_last, compile,
        compile_backend; missing keys take the defaults."""
        get = hardware.get
        return cls(precision=str(get("precision") or "32"), channels_last=bool(get("channels_last") or False),
                   compile=get("compile") or False, compile_backend=get("compile_backend") or "inductor")

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for float32."""
        return PRECISIONS[self.precision]

    @property
    def enabled(self) -> bool:
        return self.dtype is not None or self.channels_last or bool(self.compile)

    def check_device(self, device: torch.device | str) -> None:
        """ConfigError if this device cannot run the precision (bf16 on a CUDA GPU without it)."""
        device = torch.device(device)
        if device.type == "cuda" and self.dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"hardware.precision=bf16-mixed needs a GPU with bfloat16 (Ampere or later); "
                              f"{torch.cuda.get_device_name(device)} has none: use hardware.precision=16-mixed.")


class FastForward:
    """Replaces a module's forward: channels-last input, autocast, float32 outputs, compiled or eager.

    `compiled` is the torch.compile'd forward (None: eager); after a failed compilation it is None
    and `compile_error` says why. State (compile_error, compiled_calls, eager_calls) is reported
    by `status(model)`.
    """

    def __init__(self, model: nn.Module, fast: FastMode) -> None:
        self.fast = fast
        self.eager = type(model).forward.__get__(model)  # the class's forward, bound to this model
        self.inner = [m for m in model.modules() if m is not model]
        self.compiled = None
        self.compile_error: str | None = None
        self.compiled_calls = self.eager_calls = 0
        self._warned_cpu = False
        if fast.compile:
            mode = None if fast.compile is True or fast.compile == "default" else fast.compile
            self.compiled = torch.compile(self.eager, backend=fast.compile_backend, mode=mode)

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, torch.Tensor) and self.fast.channels_last and x.dim() in (4, 5):
            x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
        device = x.device.type if isinstance(x, torch.Tensor) else "cpu"
        dtype = self.fast.dtype
        if dtype is not None and device == "cpu" and not self._warned_cpu:
            self._warned_cpu = True
            warn_slow_cpu(dtype)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = self.run(x, *args, **kwargs)
        return to_float32(out) if dtype is not None else out

    def run(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None or self.hooked():
            self.eager_calls += 1
            return self.eager(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back; the model's own errors re-raise below
            out = self.eager(*args, **kwargs)  # raises if the model itself is at fault
            self.compiled = None
            self.compile_error = describe_error(exc)
            warnings.warn(f"vizlab: torch.compile could not compile the model ({self.compile_error}); "
                          "running it uncompiled (set hardware.compile=false to skip compiling).", stacklevel=3)
            self.eager_calls += 1
            return out
        self.compiled_calls += 1
        return out

    def hooked(self) -> bool:
        """True while any module inside the model (or globally) has a forward or backward hook."""
        from torch.nn.modules import module as mod

        if mod._global_forward_hooks or mod._global_forward_pre_hooks or mod._global_backward_hooks:
            return True
        return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                   for m in self.inner)


def accelerate(model: nn.Module, fast: FastMode) -> nn.Module:
    """Apply `fast` to `model` in place (replacing an earlier fast mode) and return it."""
    restore(model)
    if not fast.enabled:
        return model
    if fast.channels_last:
        set_memory_format(model, channels_last=True)
    model.forward = FastForward(model, fast)
    return model


def restore(model: nn.Module) -> nn.Module:
    """Undo `accelerate`: the class's forward, contiguous weights. A no-op on a plain model."""
    forward = model.__dict__.get("forward")
    if isinstance(forward, FastForward):
        del model.forward
        if forward.fast.channels_last:
            set_memory_format(model, channels_last=False)
    return model


@contextmanager
def accelerated(model: nn.Module, fast: FastMode) -> Iterator[nn.Module]:
    """`with accelerated(model, fast):` runs the block in fast mode, then restores the model."""
    accelerate(model, fast)
    try:
        yield model
    finally:
        restore(model)


def status(model: nn.Module) -> dict[str, Any]:
    """The fast mode in effect: precision, channels_last, compile, and for a compiled model whether
    it really ran compiled (compiled_calls, eager_calls, compile_error)."""
    forward = model.__dict__.get("forward")
    if not isinstance(forward, FastForward):
        return {"precision": "32", "channels_last": False, "compile": False}
    fast = forward.fast
    out: dict[str, Any] = {"precision": fast.precision, "channels_last": fast.channels_last, "compile": fast.compile}
    if fast.compile:
        out.update(compile_backend=fast.compile_backend, compiled_calls=forward.compiled_calls,
                   eager_calls=forward.eager_calls, compile_error=forward.compile_error)
    return out


def set_memory_format(model: nn.Module, channels_last: bool) -> None:
    """4-D parameters and buffers → channels_last, 5-D → channels_last_3d (or back to contiguous)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dim() == 4:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
        elif tensor.dim() == 5:
            fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
        else:
            continue
        tensor.data = tensor.data.contiguous(memory_format=fmt)


def to_float32(out: Any) -> Any:
    """Every float16 / bfloat16 tensor in `out` (tensors, tuples, named tuples, lists, dicts) → float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.dtype in REDUCED else out
    if isinstance(out, dict):
        return type(out)((k, to_float32(v)) for k, v in out.items())
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return type(out)(*(to_float32(v) for v in out))
    if isinstance(out, (tuple, list)):
        return type(out)(to_float32(v) for v in out)
    return out


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) Pearson r between each sample's map in `a` and in `b` (N, ...), in float64; a pair with a
    constant map counts as r = 1. How fast-mode maps are compared with float32 maps."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-300), torch.ones_like(den))


def native_cpu_support(dtype: torch.dtype) -> bool:
    """Whether this CPU computes `dtype` natively (oneDNN's check: AVX512-BF16 / AMX, AVX512-FP16)."""
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}[dtype]
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError):
        return False


def warn_slow_cpu(dtype: torch.dtype) -> None:
    if native_cpu_support(dtype):
        return
    name = {torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}[dtype]
    warnings.warn(f"vizlab: hardware.precision={name} on a CPU without native {dtype} arithmetic "
                  f"(capability {torch.backends.cpu.get_cpu_capability()}): results are correct but slower than "
                  "float32; use precision 32 on this CPU (fast mode pays off on GPUs and AMX CPUs).", stacklevel=4)


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """"Type: first line" of `exc`, plus its root cause's (compiler errors wrap the real one)."""
    def line(e: BaseException) -> str:
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0] if text else ''}".strip()

    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    inner = getattr(exc, "inner_exception", None)
    if root is exc and isinstance(inner, BaseException):
        root = inner
    text = line(exc) if root is exc else f"{line(exc)} {line(root)}"
    return text[:limit]

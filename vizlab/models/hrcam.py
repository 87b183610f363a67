"""High-Resolution CAM networks (Tagaris, Sdraka & Stafylopatis, ICIP 2019): DenseNet-FCN classifiers.

`HalfModel` is the classifier: a DenseNet-FCN contracting path (keras-contrib variant, early
transition, max-pool transitions), the bottleneck dense block and the first up-sampling block up to
the **branch point**, then `conv_aux` (1×1 → 16 channels, the low-resolution CAM features A_low),
global average pooling and `fc`. `FullModel` adds the rest of the expansion path (U-Net skips, the
last ConvTranspose gives A_high at input resolution) and a 1×1 reconstruction head `main_output`.
Both CAMs use the same classifier weights W = fc.weight:

    low  = Σ_k A_low[k]  · W[c, k]     (N, S/2^B, S/2^B)  14×14 at 224² with B = 4 blocks
    high = Σ_k A_high[k] · W[c, k]     (N, S, S)          no ReLU, bias or normalisation (spec §6.4)

Shapes for the paper configuration (`HRCAMConfig()`, 224² input) are those of the spec table;
`stage_shapes()` lists them. Departures from the Keras original, on purpose:

- Layers are found by name, never by index (the original's `layers[121]` surgery breaks with any
  layer-count change); the half → full weight transfer is by parameter name and is verified.
- Inputs: by default images in [0, 1] normalised with mean = std = 0.5 (`raw_pixels=False`);
  `raw_pixels=True` reproduces the original's raw 0-255 inputs (mean 0, std 1/255), so the
  reconstruction loss works in pixel units as there. Either way the network sees
  `ZooModel.normalize(x01)` and the choice is stored in the checkpoint.
- Every checkpoint carries its own architecture, normalisation and class names (a uint8 JSON
  buffer `hrcam_config`), so `load_model("hrcam_full", checkpoint=...)` rebuilds small variants.
- PyTorch's ConvTranspose2d(3, stride 2, padding 1, output_padding 1) doubles the side like
  Keras' 'same' padding; the sub-pixel alignment of the two may differ (no Keras weights load).
- L2 weight decay (Keras l2(1e-4) on kernels) is applied by the optimiser (task.weight_decay).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vizlab.errors import CheckpointError, ConfigError, InputError

HALF_MEAN = (0.5, 0.5, 0.5)
RAW_STD = (1 / 255, 1 / 255, 1 / 255)
BN_EPS = 1.1e-5
CONFIG_KEY = "hrcam_config"


@dataclass(frozen=True)
class HRCAMConfig:
    """Architecture and input convention of a DenseNet-FCN HR-CAM model.

    Defaults are the paper's: 4 dense blocks of 4 layers, growth 16, 48 initial 3×3 filters,
    early transition, 16 CAM channels, 398 classes (ImageNet animals), 224² input.
    `input_size` must be divisible by 2**(blocks + 1) (early transition + `blocks` pools).
    """

    num_classes: int = 398
    input_size: int = 224
    growth: int = 16
    layers_per_block: int = 4
    blocks: int = 4
    init_filters: int = 48
    aux_channels: int = 16
    raw_pixels: bool = False
    class_names: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for key in ("num_classes", "input_size", "growth", "layers_per_block", "blocks", "init_filters", "aux_channels"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{key} must be an integer >= 1, got {value!r}.")
        if self.num_classes < 2:
            raise ConfigError(f"model.num_classes must be >= 2 for a classifier, got {self.num_classes}.")
        step = 2 ** (self.blocks + 1)
        if self.input_size % step:
            raise ConfigError(
                f"model.input_size={self.input_size} must be divisible by 2**(blocks + 1) = {step} "
                f"(early transition + {self.blocks} max-pools); e.g. {max(step, round(self.input_size / step) * step)}."
            )
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names for {self.num_classes} classes.")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    @property
    def mean(self) -> tuple[float, float, float]:
        return (0.0, 0.0, 0.0) if self.raw_pixels else HALF_MEAN

    @property
    def std(self) -> tuple[float, float, float]:
        return RAW_STD if self.raw_pixels else HALF_MEAN

    @property
    def low_res(self) -> int:
        """Side of A_low / the low-resolution CAM: input_size / 2**blocks (14 at 224 with 4 blocks)."""
        return self.input_size // 2 ** self.blocks

    @property
    def branch_channels(self) -> int:
        return self.growth * self.layers_per_block

    def arch(self) -> dict[str, Any]:
        """The keys that decide tensor shapes (what two checkpoints must share to exchange weights)."""
        return {k: getattr(self, k) for k in ("num_classes", "input_size", "growth", "layers_per_block", "blocks",
                                             "init_filters", "aux_channels")}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HRCAMConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "class_names" else v) for k, v in d.items() if k in known})


# --- building blocks --------------------------------------------------------------------------
class Concat(nn.Module):
    """torch.cat over channels as a module, so hooks (memory estimate, layer lookup) see it."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, 1)


class ConvBlock(nn.Sequential):
    """BN(ε 1.1e-5) → ReLU → Conv3×3(growth, no bias)."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__(nn.BatchNorm2d(cin, eps=BN_EPS), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, growth, 3, padding=1, bias=False))


class DenseBlock(nn.Module):
    """`layers` conv blocks, each fed the concatenation of the input and all earlier new maps.

    forward returns (x ⧺ new maps, new maps only): the up-sampling path uses only the new maps.
    """

    def __init__(self, cin: int, layers: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvBlock(cin + i * growth, growth) for i in range(layers))
        self.cat = Concat()
        self.new = Concat()
        self.out_channels = cin + layers * growth

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new = []
        for conv in self.convs:
            y = conv(x)
            new.append(y)
            x = self.cat(x, y)
        return x, self.new(*new)


class TransitionDown(nn.Sequential):
    """BN → ReLU → Conv1×1(C, no bias) → MaxPool 2×2 (keras-contrib, compression 1, 'max' pooling)."""

    def __init__(self, channels: int) -> None:
        super().__init__(nn.BatchNorm2d(channels, eps=BN_EPS), nn.ReLU(inplace=True),
                         nn.Conv2d(channels, channels, 1, bias=False), nn.MaxPool2d(2))


class TransitionUp(nn.Sequential):
    """ConvTranspose 3×3, stride 2 (doubles the side), with bias, then ReLU (keras-contrib 'deconv')."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), nn.ReLU())


def _init_weights(module: nn.Module) -> None:
    """Keras' initialisers: he_normal (truncated normal, std √(2 / fan_in)) for conv kernels,
    glorot_uniform for the dense classifier, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            std = math.sqrt(2 / nn.init._calculate_correct_fan(m.weight, "fan_in"))
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


class HalfModel(nn.Module):
    """HR-CAM classifier (the original's HalfDenseNetFCN): forward(x) → logits (N, num_classes).

    x is the normalised input (N, 3, S, S), S = config.input_size. Named stages: `stem`,
    `tr_early`, `down.i` / `tr.i`, `bottleneck`, `up0`, `dense_up0` (its new maps are the branch
    point, module `branch`), `conv_aux` (A_low), `pool`, `fc`.
    """

    kind = "half"

    def __init__(self, config: HRCAMConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or HRCAMConfig(**overrides)
        if config is not None and overrides:
            cfg = HRCAMConfig(**{**asdict(config), **overrides})
        self.config = cfg
        g, n = cfg.growth, cfg.layers_per_block
        c = cfg.init_filters
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c, eps=BN_EPS),
                                  nn.ReLU(inplace=True))
        self.tr_early = TransitionDown(c)
        self.down = nn.ModuleList()
        self.tr = nn.ModuleList()
        self.skip_channels: list[int] = []
        for _ in range(cfg.blocks):
            block = DenseBlock(c, n, g)
            self.down.append(block)
            c = block.out_channels
            self.skip_channels.append(c)
            self.tr.append(TransitionDown(c))
        self.bottleneck = DenseBlock(c, n, g)
        self.up0 = TransitionUp(n * g, n * g)
        self.dense_up0 = DenseBlock(n * g + self.skip_channels[-1], n, g)
        self.branch = nn.Identity()  # output: the branch point (N, n*g, S/2^B, S/2^B)
        self.conv_aux = nn.Conv2d(n * g, cfg.aux_channels, 1, bias=False)  # output: A_low
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cfg.aux_channels, cfg.num_classes)
        self.register_buffer(CONFIG_KEY, encode_config(cfg, self.kind))
        _init_weights(self)

    # --- forward pieces -----------------------------------------------------------------------
    def contract(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Input → (branch point, skips [dense_0 ... dense_{B-1} outputs], full output of dense_up0)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"HR-CAM models take (N, 3, H, W) images, got shape {tuple(x.shape)}.")
        step = 2 ** (self.config.blocks + 1)
        if x.shape[-1] % step or x.shape[-2] % step:
            raise InputError(f"Input side {tuple(x.shape[-2:])} must be divisible by {step}; "
                             f"the model was built for {self.config.input_size}².")
        x = self.tr_early(self.stem(x))
        skips = []
        for block, tr in zip(self.down, self.tr, strict=True):
            x, _ = block(x)
            skips.append(x)
            x = tr(x)
        _, new = self.bottleneck(x)
        full, new = self.dense_up0(self.dense_up0.cat(self.up0(new), skips[-1]))
        return self.branch(new), skips, full

    def head(self, a_low: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(a_low).flatten(1))

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"logits", "a_low"} (and "a_high", "reconstruction" for FullModel) from one forward pass."""
        branch, _, _ = self.contract(x)
        a_low = self.conv_aux(branch)
        return {"logits": self.head(a_low), "a_low": a_low}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch, _, _ = self.contract(x)
        return self.head(self.conv_aux(branch))

    # --- the original's wrapper API (cams.py) -------------------------------------------------
    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (N, num_classes)."""
        return self(x).softmax(1)

    @torch.no_grad()
    def predict_topk(self, x: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """(probabilities, class indices), each (N, k), best first."""
        return self.predict(x).topk(min(k, self.config.num_classes), dim=1)

    def _classes(self, classes: Any, logits: torch.Tensor) -> torch.Tensor:
        from vizlab.methods.base import resolve_target

        return resolve_target(classes, logits)

    def cam_weights(self, classes: torch.Tensor) -> torch.Tensor:
        """W[:, c] per sample: (N, aux_channels)."""
        return self.fc.weight[classes]

    @torch.no_grad()
    def low_res_cam(self, x: torch.Tensor, classes: Any = None) -> torch.Tensor:
        """A_low · W[:, c]: (N, S/2^B, S/2^B), signed, not normalised. classes=None: predicted."""
        return self.generate_cams(x, classes)["low"]

    cam = low_res_cam  # the original HalfModel.cam

    @torch.no_grad()
    def generate_cams(self, x: torch.Tensor, classes: Any = None) -> dict[str, torch.Tensor]:
        """One forward pass → {"logits", "classes" (N,), "low" (N, h, w)} (+ "high" for FullModel)."""
        out = self.features(x)
        c = self._classes(classes, out["logits"])
        w = self.cam_weights(c)
        cams = {"logits": out["logits"], "classes": c, "low": torch.einsum("nkhw,nk->nhw", out["a_low"], w)}
        if "a_high" in out:
            cams["high"] = torch.einsum("nkhw,nk->nhw", out["a_high"], w)
        return cams

    # --- checkpoints --------------------------------------------------------------------------
    @property
    def zoo_info(self) -> dict[str, Any]:
        """ModelInfo fields this network decides (load_model applies them)."""
        c = self.config
        names = c.class_names
        if not names:  # a model not trained by vizlab (random init): the paper's 398 ImageNet animals, else indices
            from vizlab.models.class_names import imagenet_classes

            names = imagenet_classes()[:398] if c.num_classes == 398 else tuple(map(str, range(c.num_classes)))
        return {"num_classes": c.num_classes, "input_size": c.input_size, "mean": c.mean, "std": c.std,
                "class_names": names}

    def classifier_state(self) -> dict[str, torch.Tensor]:
        """The HalfModel part of the state dict (what the full model shares with the half)."""
        return {k: v for k, v in self.state_dict().items() if k in half_keys(self)}


class FullModel(HalfModel):
    """HR-CAM full model (the original's AuxiliaryDenseNetFCN): HalfModel + expansion path.

    forward(x) → logits (the classifier is the HalfModel's); `features(x)` also returns A_high
    (N, aux_channels... see below) and the reconstruction. Expansion: for each remaining level,
    ConvT(n*g) of the previous new maps, concat with the skip, dense block; the last dense block
    keeps its full concatenation, then `tr_up_early` ConvT(growth) + ReLU → A_high (N, growth, S, S)
    and `main_output` Conv1×1(3, no bias) → reconstruction of the (normalised) input.
    """

    kind = "full"

    def __init__(self, config: HRCAMConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        g, n = cfg.growth, cfg.layers_per_block
        if g != cfg.aux_channels:
            raise ConfigError(f"FullModel needs model.aux_channels == model.growth (A_high has `growth` channels "
                              f"and shares W with A_low); got aux_channels={cfg.aux_channels}, growth={g}.")
        self.up = nn.ModuleList()
        self.dense_up = nn.ModuleList()
        for skip in reversed(self.skip_channels[:-1]):
            self.up.append(TransitionUp(n * g, n * g))
            self.dense_up.append(DenseBlock(n * g + skip, n, g))
        last = self.dense_up[-1].out_channels if len(self.dense_up) else self.dense_up0.out_channels
        self.tr_up_early = TransitionUp(last, g)  # output: A_high
        self.main_output = nn.Conv2d(g, 3, 1, bias=False)
        setattr(self, CONFIG_KEY, encode_config(cfg, self.kind))
        _init_weights(nn.ModuleList([self.up, self.dense_up, self.tr_up_early, self.main_output]))

    def expand(self, branch: torch.Tensor, skips: list[torch.Tensor], full: torch.Tensor) -> torch.Tensor:
        """Branch point, skips and dense_up0's full output → A_high (N, growth, S, S)."""
        new = branch
        for up, dense, skip in zip(self.up, self.dense_up, reversed(skips[:-1]), strict=True):
            full, new = dense(dense.cat(up(new), skip))
        return self.tr_up_early(full)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        branch, skips, full = self.contract(x)
        a_low = self.conv_aux(branch)
        a_high = self.expand(branch, skips, full)
        return {"logits": self.head(a_low), "a_low": a_low, "a_high": a_high,
                "reconstruction": self.main_output(a_high)}

    @torch.no_grad()
    def high_res_cam(self, x: torch.Tensor, classes: Any = None) -> torch.Tensor:
        """A_high · W[:, c]: (N, S, S), ≥ 0 up to W's sign, not normalised. classes=None: predicted."""
        return self.generate_cams(x, classes)["high"]

    def expansion_parameters(self) -> list[nn.Parameter]:
        """The parameters stage 2 trains (everything the HalfModel does not have)."""
        keep = half_keys(self)
        return [p for k, p in self.named_parameters() if k not in keep]

    def freeze_classifier(self, frozen: bool = True) -> FullModel:
        """Stage 2 (the original's freezing of layers[:121] + conv_aux, GAP, Dense): no gradients for
        the HalfModel part, and its BatchNorms stay in eval mode under .train(), so neither its
        parameters nor its running statistics change and classification equals the half model's."""
        self.classifier_frozen = frozen
        keep = half_keys(self)
        for k, p in self.named_parameters():
            if k in keep:
                p.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> FullModel:
        super().train(mode)
        if mode and getattr(self, "classifier_frozen", False):
            for name, child in self.named_children():
                if name not in EXPANSION_MODULES:
                    child.eval()
        return self


# --- config in the state dict -----------------------------------------------------------------
def encode_config(cfg: HRCAMConfig, kind: str) -> torch.Tensor:
    data = json.dumps({"kind": kind, **cfg.to_json()}, sort_keys=True).encode()
    return torch.tensor(list(data), dtype=torch.uint8)


def decode_config(state: dict[str, torch.Tensor], source: str = "checkpoint") -> tuple[HRCAMConfig, str]:
    """(config, "half" | "full") recorded in an HR-CAM state dict."""
    raw = state.get(CONFIG_KEY)
    if raw is None:
        raise CheckpointError(f"{source} is not an HR-CAM checkpoint written by vizlab (no {CONFIG_KEY!r} entry); "
                              "train one with `python run.py task=train_half` / `task=train_full`.")
    try:
        d = json.loads(bytes(raw.to(torch.uint8).tolist()).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{source}: unreadable {CONFIG_KEY!r} entry ({exc}).") from exc
    kind = d.pop("kind", "half")
    return HRCAMConfig.from_json(d), kind


EXPANSION_MODULES = ("up", "dense_up", "tr_up_early", "main_output")


def half_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the HalfModel part (trunk up to the branch point, conv_aux, fc, config)."""
    return {k for k in model.state_dict() if k.split(".", 1)[0] not in EXPANSION_MODULES}


def build_from_state(state: dict[str, torch.Tensor], kind: str, num_classes: int | None = None,
                     source: str = "checkpoint") -> HalfModel:
    """A HalfModel or FullModel (`kind`) rebuilt from an HR-CAM state dict and loaded with it.

    A full checkpoint loads into a HalfModel (its classifier part); a half checkpoint cannot
    make a FullModel (its expansion path is untrained). num_classes, if given, must match.
    """
    from vizlab.models.zoo import load_state

    cfg, saved_kind = decode_config(state, source)
    if num_classes is not None and num_classes != cfg.num_classes:
        raise CheckpointError(f"{source} has {cfg.num_classes} classes but model.num_classes={num_classes}; "
                              "set model.num_classes=null (the checkpoint's) or pass the matching checkpoint.")
    if kind == "full" and saved_kind != "full":
        raise CheckpointError(f"{source} holds a HalfModel (classifier only); hrcam_full needs the expansion path: "
                              "train it with `python run.py task=train_full`, or use model=hrcam_half.")
    net = (FullModel if kind == "full" else HalfModel)(cfg).eval()
    own = net.state_dict()
    state = {k: v for k, v in state.items() if k in own}
    state[CONFIG_KEY] = own[CONFIG_KEY]  # half ← full: the kind differs, the architecture is the same
    load_state(net, state, source)
    return net


def transfer_half_weights(half: HalfModel, full: FullModel) -> list[str]:
    """Copy every HalfModel tensor into `full` by name and verify the copy (the original's
    `check_weights`). Returns the copied keys; raises CheckpointError on any mismatch."""
    if half.config.arch() != full.config.arch():
        diff = {k: (v, full.config.arch()[k]) for k, v in half.config.arch().items() if full.config.arch()[k] != v}
        raise CheckpointError("half checkpoint and full model differ in architecture: "
                              + ", ".join(f"{k}: half {a} vs config {b}" for k, (a, b) in diff.items())
                              + ". Set the model.* keys to the half model's (or omit them).")
    src = {k: v for k, v in half.state_dict().items() if k != CONFIG_KEY}
    own = full.state_dict()
    keys = sorted(half_keys(full) - {CONFIG_KEY})
    missing = [k for k in keys if k not in src]
    if missing or set(src) - set(keys):
        raise CheckpointError(f"weight transfer: half and full models do not line up (missing {missing[:5]}, "
                              f"extra {sorted(set(src) - set(keys))[:5]}).")
    with torch.no_grad():
        for k in keys:
            own[k].copy_(src[k])
    check_weights(half, full)
    return keys


def check_weights(half: HalfModel, full: FullModel) -> None:
    """Every HalfModel parameter and buffer equals the full model's (bit for bit); CheckpointError if not."""
    src, dst = half.state_dict(), full.state_dict()
    bad = [k for k in half_keys(full) - {CONFIG_KEY}
           if k not in src or src[k].shape != dst[k].shape or not torch.equal(src[k].cpu(), dst[k].cpu())]
    if bad:
        raise CheckpointError(f"weight transfer check failed: {len(bad)} tensor(s) differ between the half and the "
                              f"full model, e.g. {bad[:5]}.")


def stage_shapes(config: HRCAMConfig | None = None) -> dict[str, tuple[int, ...]]:
    """Output shape (C, H, W) (logits: (M,)) of every stage, from one real forward pass of a FullModel.

    Keys, in the spec table's order: init, tr_early, dense_k / dense_k_new / dense_k_in (a dense
    block's full output, new maps only and input; k counts blocks as keras-contrib does: 0..B-1 down,
    B the bottleneck, B+1 the first up block whose new maps are the branch point, then the
    expansion), tr_k, up_k (ConvT outputs), branch, a_low, logits, a_high, reconstruction.
    """
    cfg = config or HRCAMConfig()
    net = FullModel(cfg).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    named: list[tuple[str, nn.Module]] = [("init", net.stem), ("tr_early", net.tr_early)]
    dense = [*net.down, net.bottleneck, net.dense_up0, *net.dense_up]
    named += [(f"dense_{k}", block) for k, block in enumerate(dense)]
    named += [(f"tr_{k}", tr) for k, tr in enumerate(net.tr)]
    named += [(f"up_{k}", up) for k, up in enumerate([net.up0, *net.up])]
    named += [("branch", net.branch), ("a_low", net.conv_aux), ("logits", net.fc), ("a_high", net.tr_up_early),
              ("reconstruction", net.main_output)]

    def hook(name: str):
        def record(_m, args, out):
            if isinstance(out, tuple):  # dense block: (full, new)
                shapes[name], shapes[f"{name}_new"] = tuple(out[0].shape[1:]), tuple(out[1].shape[1:])
                shapes[f"{name}_in"] = tuple(args[0].shape[1:])
            else:
                shapes[name] = tuple(out.shape[1:])
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in named]
    try:
        with torch.no_grad():
            net.features(torch.zeros(1, 3, cfg.input_size, cfg.input_size))
    finally:
        for h in handles:
            h.remove()
    return shapes


# --- memory estimate (the original's get_model_memory_usage) --------------------------------
@dataclass(frozen=True)
class MemoryUsage:
    """Bytes for one forward pass at `batch_size`: parameters (+ buffers) and activations.

    activations: the distinct tensors every module outputs in one forward pass (measured with
    forward hooks; in-place outputs counted once), × batch size. Like the original's Keras
    estimate, it counts one copy of each layer output, not autograd's saved tensors, gradients
    or optimiser state (training needs roughly 2-3× this).
    """

    batch_size: int
    parameter_bytes: int
    activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.parameter_bytes + self.activation_bytes

    @property
    def total_gib(self) -> float:
        return self.total_bytes / 2**30


def model_memory_usage(model: nn.Module, batch_size: int, input_shape: Sequence[int] | None = None,
                       dtype: torch.dtype = torch.float32) -> MemoryUsage:
    """Measure parameters + activations of `model` for `batch_size` inputs of `input_shape` (C, H, W).

    input_shape defaults to (3, S, S) with S = model.config.input_size (HR-CAM models). Runs one
    forward pass at batch 1 on the model's device without gradients; activations scale linearly.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    if input_shape is None:
        cfg = getattr(model, "config", None) or getattr(getattr(model, "net", None), "config", None)
        if cfg is None:
            raise ConfigError("input_shape is needed for a model without an HR-CAM config, e.g. (3, 224, 224).")
        input_shape = (3, cfg.input_size, cfg.input_size)
    param_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    seen: dict[int, int] = {}
    alive: list[torch.Tensor] = []  # kept until the end, so no storage is freed and reused mid-pass

    def hook(_m, _i, out):
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                alive.append(t)
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()

    leaves = [m for m in model.modules() if not list(m.children()) or isinstance(m, DenseBlock)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, *input_shape, device=device, dtype=dtype)
            net = getattr(model, "net", model)
            net.features(x) if isinstance(net, HalfModel) else model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
        alive.clear()
    return MemoryUsage(batch_size, param_bytes, sum(seen.values()) * batch_size)


# --- zoo entries: hrcam_half, hrcam_full ------------------------------------------------------
TRAIN_COMMANDS = {"half": "python run.py task=train_half", "full": "python run.py task=train_full"}


def cache_path(kind: str) -> Path:
    """Where task=train_half / task=train_full cache their checkpoint: <cache>/hrcam_<kind>.pt."""
    from vizlab.models.synthetic import default_cache_dir

    return default_cache_dir() / f"hrcam_{kind}.pt"


def _builder(kind: str):
    def build(num_classes: int, pretrained: bool) -> nn.Module:
        if not pretrained:
            return (FullModel if kind == "full" else HalfModel)(HRCAMConfig(num_classes=num_classes)).eval()
        from vizlab.models.zoo import read_checkpoint

        path = cache_path(kind)
        if not path.is_file():
            raise CheckpointError(
                f"no trained hrcam_{kind} checkpoint at {path}; train one with `{TRAIN_COMMANDS['half']}` "
                + ("" if kind == "half" else f"then `{TRAIN_COMMANDS['full']}` ")
                + "(add experiment=hrcam_shapes for the CPU recipe), or pass model.checkpoint=PATH."
            )
        wanted = None if num_classes == HRCAMConfig().num_classes else num_classes
        return build_from_state(read_checkpoint(path), kind, wanted, str(path))

    return build


def _from_state(kind: str):
    def build(state: dict[str, torch.Tensor], num_classes: int | None, source: str) -> nn.Module:
        return build_from_state(state, kind, num_classes, source)

    return build


def _spec(kind: str):
    from vizlab.models.wrapper import ModelInfo
    from vizlab.models.zoo import ModelSpec

    cfg = HRCAMConfig()
    info = ModelInfo(f"hrcam_{kind}", cfg.input_size, cfg.mean, cfg.std, "conv_aux", "fc", cfg.num_classes)
    return ModelSpec(_builder(kind), info, "custom", has_embedded_weights=True, from_state=_from_state(kind))


HRCAM_HALF_SPEC = _spec("half")
HRCAM_FULL_SPEC = _spec("full")


__all__ = ["CONFIG_KEY", "HRCAM_FULL_SPEC", "HRCAM_HALF_SPEC", "cache_path", "FullModel", "HRCAMConfig", "HalfModel", "MemoryUsage", "build_from_state", "check_weights",
           "decode_config", "half_keys", "model_memory_usage", "stage_shapes", "transfer_half_weights"]

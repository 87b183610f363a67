"""Console script `vizlab`.

    vizlab [hydra overrides ...]     same as `python run.py ...` (e.g. vizlab method=integrated_gradients)
    vizlab models                    list the model zoo
    vizlab methods                   list methods and their options
    vizlab methods --sweep KIND [FAMILY,...]
                                     comma-separated methods for a sweep (KIND: image | video), from the registry
    vizlab layers MODEL [FILTER]     list a model's layer names (for method.layer=...)
    vizlab pack-frames SRC... --out store.sqlite [--format jpg|png]
                                     pack videos or frame folders into one SQLite frame store
"""

from __future__ import annotations

import sys
import warnings


def _print_models() -> None:
    """One line per zoo model: name, input kind and size, default layer, where its weights come from."""
    from vizlab.models import ZOO
    from vizlab.models.synthetic import TRAIN_COMMANDS

    for name, spec in sorted(ZOO.items()):
        i = spec.info
        kind = f"video T={i.frames}" if i.is_video else "image"
        if name.startswith("hrcam_"):
            weights = "trained by vizlab (task=train_half, then task=train_full), cached"
        elif name in TRAIN_COMMANDS:
            weights = f"trained by vizlab ({TRAIN_COMMANDS[name][0]}), cached"
        elif spec.dataset == "custom":
            weights = "trained by vizlab, cached"
        elif spec.has_embedded_weights:
            weights = "embedded ImageNet weights"
        else:
            weights = "random init or model.checkpoint"
        print(f"{name:20s} {kind:12s} {i.input_size:4d}px  layer={i.default_layer:12s} {weights}")


def _print_methods(args: list[str]) -> None:
    from vizlab.methods import available_methods, method_parameters
    from vizlab.methods.registry import sweep_methods

    if args[:1] == ["--sweep"]:
        families = args[2].split(",") if len(args) > 2 else []
        print(",".join(sweep_methods(args[1] if len(args) > 1 else "image", families)))
        return
    for name in available_methods():
        opts = ", ".join(f"{k}={v!r}" for k, v in method_parameters(name).items())
        print(f"{name:22s} {opts}")


def _print_layers(model_name: str, pattern: str = "") -> None:
    from vizlab.layers import list_layers, wrapper_prefix
    from vizlab.models import load_model

    with warnings.catch_warnings():  # "using random weights" does not matter for a list of layer names
        warnings.simplefilter("ignore", UserWarning)
        model = load_model(model_name, pretrained=False)
    prefix = wrapper_prefix(model)
    for name in list_layers(model):
        if pattern in name or pattern in prefix + name:
            print(name)
    if prefix:
        print(f"(layer= takes these names; {prefix}NAME, as model.named_modules() spells them, works too)",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    from vizlab.errors import VizlabError

    if argv[:1] == ["pack-frames"]:
        from vizlab.data.frame_store import pack_main

        sys.exit(pack_main(argv[1:]))
    try:
        if argv[:1] == ["models"]:
            return _print_models()
        if argv[:1] == ["methods"]:
            return _print_methods(argv[1:])
        if argv[:1] == ["layers"]:
            if len(argv) < 2:
                sys.exit("usage: vizlab layers MODEL [FILTER]")
            return _print_layers(argv[1], argv[2] if len(argv) > 2 else "")
    except VizlabError as exc:
        print(f"vizlab: error: {exc}", file=sys.stderr)
        sys.exit(2)
    from vizlab.entry import conf_dir, hydra_main

    hydra_main(conf_dir(), argv)


if __name__ == "__main__":
    main()

"""OmegaConf resolvers that config files may use; `register_resolvers()` runs before Hydra composes.

    ${vizlab.methods:image}               every registered method that runs on any image network
    ${vizlab.methods:image,cam,gradient}  ... of the families cam and gradient only
    ${vizlab.methods:video}               ... on any clip network
    ${vizlab_run_stamp:}, ${vizlab_gpus_per_node:...}  see vizlab.lit.hardware

They return a comma-separated list, so `hydra.sweeper.params.method: ${vizlab.methods:image}`
sweeps over the registry (vizlab.methods.registry.sweep_methods): a new method joins the ready
sweeps by registering itself, without editing any list.
"""

from __future__ import annotations

from omegaconf import OmegaConf


def methods_list(kind: str = "image", *families: str) -> str:
    import vizlab.methods  # noqa: F401  (fills the registry)
    from vizlab.methods.registry import sweep_methods

    return ",".join(sweep_methods(kind, families))


def register_resolvers() -> None:
    """Register vizlab's resolvers once (idempotent), with vizlab.lit.hardware's vizlab_run_stamp
    (hydra.run.dir) and vizlab_gpus_per_node (hardware=slurm)."""
    from vizlab.lit.hardware import register_resolvers as register_hardware_resolvers

    register_hardware_resolvers()
    if not OmegaConf.has_resolver("vizlab.methods"):
        OmegaConf.register_new_resolver("vizlab.methods", methods_list)

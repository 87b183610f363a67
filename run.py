"""Hydra entry point: `python run.py task=explain model=resnet50 method=gradcam` (also `-m` sweeps)."""

import hydra
from omegaconf import DictConfig

from vizlab.resolvers import register_resolvers

register_resolvers()  # ${vizlab.methods:...} (experiment sweeps), vizlab_* (hydra.run.dir, hardware=slurm)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from vizlab.tasks import run_task

    run_task(cfg)


if __name__ == "__main__":
    main()

"""Packaging (metadata in setup.cfg). conf/ stays at the top of the source tree, where run.py reads
it; wheels ship it inside the package as vizlab/conf, so an installed `vizlab` finds its configs
from any directory (vizlab.entry.conf_dir)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["vizlab", "vizlab.*"]), "vizlab.conf"],
    package_dir={"vizlab.conf": "conf"},
    package_data={"vizlab.conf": ["*.yaml", "*/*.yaml", "*/*/*.yaml"]},  # also conf/hydra/launcher/
)

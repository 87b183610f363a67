"""The GPU benchmark driver (experiments/bench_gpu.py, `make bench-gpu`): its pinned command lines parse
with every script's own options, and the whole driver runs end to end on CPU at tiny sizes."""

from __future__ import annotations

import importlib
import re
import sys

import pytest
import torch
from conftest import PYTHON, ROOT, run_cli, synthetic_model

sys.path.insert(0, str(ROOT / "experiments"))
bench_gpu = importlib.import_module("bench_gpu")


@pytest.mark.parametrize("device,tiny", [("cuda", False), ("cpu", True)])
def test_every_planned_run_parses_with_its_script(device, tiny):
    """What `make bench-gpu` would run on a GPU (never run here) is checked against each script's
    argument parser, in float32 and in fast mode with --compile."""
    argv = ["--device", device, "--compile", *(["--tiny"] if tiny else [])]
    runs = bench_gpu.plan(bench_gpu.parse_args(argv))
    assert {b.name for b, _, _ in runs} == {b.name for b in bench_gpu.BENCHES}
    for bench, mode, command in runs:
        script = importlib.import_module(bench.script.removesuffix(".py"))
        args = script.parse_args(command[2:])
        assert args.device == device
        if mode == "fast":
            assert args.precision == "bf16-mixed" and args.channels_last
            assert getattr(args, "compile", False) == bench.compile
    names = [f"{b.name}:{m}" for b, m, _ in runs]
    assert "gradient_methods:fp32" in names and "gradient_methods:fast" in names and "fast_mode:side by side" in names


def test_driver_refuses_cuda_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert bench_gpu.main(["--only", "gradient_methods"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is visible" in err and "--device cpu --tiny" in err


@pytest.mark.slow
def test_bench_gpu_runs_on_cpu_at_tiny_sizes(request, monkeypatch):
    """`make bench-gpu ARGS="--device cpu --tiny"`: every benchmark, float32 and fast mode (bf16, channels-last)."""
    synthetic_model(request, monkeypatch, "shapes_cnn")  # the tiny sizes use it where a script takes --model
    proc = run_cli(PYTHON, "experiments/bench_gpu.py", "--device", "cpu", "--tiny", "--budget", "3600",
                   "--limit-scale", "8", timeout=3700)
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-3000:]
    summary = out[out.index("## summary"):]
    rows = re.findall(r"^\| (\w+) \| ([\w ]+) \| [\d.]+ \| (\w+) \|", summary, re.M)
    assert len(rows) == 11 and all(status == "ok" for _, _, status in rows), summary
    for marker in ("× limit", "vizlab Grad-CAM", "vizlab DeletionInsertion", "vizlab extremal", "STEP, batched",
                   "train stage 1", "map Pearson", "fast mode: precision bf16-mixed, channels-last"):
        assert marker in out, marker

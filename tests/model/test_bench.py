"""The benchmark command runs and reports consistent numbers (it asserts no speed)."""

from __future__ import annotations

import argparse

import pytest
import torch

from var_model import ConfigError, bench, counting
from var_model.config import VARConfig


def test_benchmark_reports_flops_consistently():
    result = bench.benchmark(depth=1, batch=1, steps=1, warmup=0)
    config = VARConfig(depth=1)
    assert result["flops_per_image"] == counting.flops_per_image(config, training=True)
    assert result["flops_per_image_6nl"] == counting.six_n_l(config)
    assert result["achieved_flops"] == pytest.approx(result["flops_per_image"] * result["images_per_second"])
    assert result["ms_per_image"] > 0
    text = bench.format_result(result, "cpu", "float32")
    assert "ms/image" in text and "TFLOP/s exact" in text


def test_register_adds_bench_subcommand():
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--depth", "8", "--dtype", "bfloat16"])
    assert args.handler is bench.run and args.depth == 8 and args.batch == 4 and args.steps == 5


def test_bad_benchmark_arguments():
    with pytest.raises(ConfigError, match="dtype='float16'"):
        bench.benchmark(depth=1, dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            bench.benchmark(depth=1, device="cuda")

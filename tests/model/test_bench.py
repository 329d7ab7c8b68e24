"""The benchmark command runs and reports consistent numbers (it asserts no speed)."""

from __future__ import annotations

import argparse

import pytest
import torch

from var_model import VAR, ConfigError, bench, counting
from var_model.config import VARConfig
from var_model.throughput import ThroughputTable
from var_model.training.optimizer import build_optimizer
from var_model.var import loss_per_token


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


def test_register_parses_the_execution_flags(tmp_path):
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "bench",
            "--depth",
            "2",
            "--attention",
            "flex",
            "--compile",
            "--activation-checkpointing",
            "--save",
            str(tmp_path / "t.json"),
        ]
    )
    assert (args.attention, args.compile, args.activation_checkpointing) == ("flex", True, True)
    assert args.save == tmp_path / "t.json"
    assert parser.parse_args(["bench", "--depth", "2"]).attention == "sdpa"
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--depth", "2", "--attention", "xformers"])


def test_benchmark_reports_the_execution_choices():
    result = bench.benchmark(depth=1, batch=1, steps=1, warmup=0, activation_checkpointing=True)
    assert result["activation_checkpointing"] is True and result["attention"] == "sdpa"
    assert result["compile"] is False and result["precision"] == "float32"
    assert result["seconds_per_step"] > 0 and result["device_name"].endswith("(1 thread)")
    assert "peak_memory_bytes" not in result  # CUDA only
    assert "activation checkpointing" in bench.format_result(result, "cpu", "float32")


def test_bad_attention_arguments():
    with pytest.raises(ConfigError, match="attention='xformers'"):
        bench.benchmark(depth=1, attention="xformers")
    with pytest.raises(ConfigError, match="attention='flex' cannot train on cpu"):
        bench.benchmark(depth=1, attention="flex")
    with pytest.raises(ConfigError, match="warmup=0 with compile"):
        bench.benchmark(depth=1, compile=True, warmup=0)


def test_save_writes_a_throughput_record(tmp_path, capsys):
    path = tmp_path / "throughput.json"
    assert bench.main(["--depth", "1", "--batch", "1", "--steps", "1", "--warmup", "0", "--save", str(path)]) == 0
    assert "steady-state step" in capsys.readouterr().out
    table = ThroughputTable.load(path)
    (record,) = table.records
    assert (record.depth, record.micro_batch, record.attention, record.compile) == (1, 1, "sdpa", False)
    looked_up = table.flops_per_second(record.device_name, 1, precision="float32", compile=False, attention="sdpa")
    assert looked_up == record.flops_per_second
    assert record.flops_per_second == pytest.approx(
        counting.flops_per_image(VARConfig(depth=1), training=True) * record.images_per_second
    )


def _train_three_steps(fused: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    var = VAR(VARConfig.debug(drop_path_rate=0.0, class_dropout=0.0)).train()
    optimizer = build_optimizer(var, lr=1e-3, fused=fused)
    generator = torch.Generator().manual_seed(1)
    config = var.config
    for _ in range(3):
        x_BLC = torch.randn(
            2, config.sequence_length - config.first_length, config.latent_channels, generator=generator
        )
        label_B = torch.randint(0, config.num_classes, (2,), generator=generator)
        target_BL = torch.randint(0, config.codebook_size, (2, config.sequence_length), generator=generator)
        loss_per_token(var(label_B, x_BLC), target_BL).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {name: p.detach().clone() for name, p in var.named_parameters()}


def test_fused_adamw_on_cpu_is_bit_identical_run_to_run_and_matches_the_loop():
    """The CPU fused kernel (the bench's --fused-adamw) is deterministic, and its update is the
    per-parameter loop's up to float32 rounding (it is another summation, not another rule)."""
    first, again, loop = _train_three_steps(True), _train_three_steps(True), _train_three_steps(False)
    assert all(torch.equal(first[name], again[name]) for name in first)
    for name, reference in loop.items():
        assert (first[name] - reference).abs().max() <= 1e-5 * reference.abs().max() + 1e-7, name


def test_benchmark_runs_scalewise_with_fused_adamw():
    result = bench.benchmark(depth=1, batch=1, steps=1, warmup=0, attention="scalewise", fused_adamw=True)
    assert result["attention"] == "scalewise" and result["fused_adamw"] is True
    assert "attention scalewise" in bench.format_result(result, "cpu", "float32")
    assert "fused AdamW" in bench.format_result(result, "cpu", "float32")
    assert bench.benchmark(depth=1, batch=1, steps=1, warmup=0)["fused_adamw"] is False  # CPU default

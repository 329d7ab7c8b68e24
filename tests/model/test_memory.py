"""The memory plan against peaks measured through the CPU allocator, and the execution choice."""

from __future__ import annotations

import pathlib

import pytest
import torch
import yaml

from var_model import counting
from var_model.config import PATCH_NUMS_256, VARConfig
from var_model.errors import ConfigError
from var_model.memory import PART_NAMES, choose_execution, format_bytes, training_memory
from var_model.memory_measurement import (
    CpuMemoryRecording,
    measure_cpu_ddp_training_peak,
    measure_cpu_training_peak,
)

STUDY = pathlib.Path(__file__).resolve().parents[2] / "studies" / "var_imagenet256.yaml"
TOLERANCE = 0.15
GB = 10**9


def tiny(depth: int, **fields) -> VARConfig:
    """The debug tokenizer's geometry (V 64, Cvae 8, scales (1, 2, 4)) at width 64."""
    return VARConfig.debug(depth=depth, **fields)


def tiny_256px(depth: int) -> VARConfig:
    """The 256px sequence (680 tokens) and codebook (4096) at width 64."""
    return VARConfig.debug(depth=depth, patch_nums=PATCH_NUMS_256, codebook_size=4096)


def assert_close_to_measured(
    config: VARConfig, micro_batch_size: int, checkpointing: str, accumulation_steps: int, attention: str = "sdpa"
) -> None:
    measured = measure_cpu_training_peak(
        config, micro_batch_size, checkpointing, attention=attention, accumulation_steps=accumulation_steps
    )
    plan = training_memory(
        config,
        micro_batch_size,
        "fp32",
        checkpointing,
        shards=1,
        attention=attention,
        device="cpu",
        accumulation_steps=accumulation_steps,
    )
    error = plan.total_bytes / measured - 1
    assert abs(error) <= TOLERANCE, f"plan {plan} vs measured {format_bytes(measured)}: {error:+.1%}"


# ---------------------------------------------------------------- the plan vs measured peaks
@pytest.mark.parametrize("checkpointing", ["none", "blocks"])
@pytest.mark.parametrize("micro_batch_size", [2, 8])
@pytest.mark.parametrize(
    "depth",
    [
        2,
        pytest.param(3, marks=pytest.mark.slow),
        4,
        pytest.param(5, marks=pytest.mark.slow),
        6,
        pytest.param(7, marks=pytest.mark.slow),
        8,
    ],
)
def test_plan_is_within_15_percent_of_the_measured_cpu_peak(depth, micro_batch_size, checkpointing):
    # two micro-batches: the second runs with every gradient live, the plan's default case
    assert_close_to_measured(tiny(depth), micro_batch_size, checkpointing, accumulation_steps=2)


@pytest.mark.parametrize("checkpointing", ["none", "blocks"])
@pytest.mark.parametrize("depth", [2, 8])
def test_plan_follows_a_single_micro_batch_step_whose_backward_starts_without_gradients(depth, checkpointing):
    assert_close_to_measured(tiny(depth), 8, checkpointing, accumulation_steps=1)


@pytest.mark.parametrize("checkpointing", ["none", "blocks"])
@pytest.mark.parametrize("depth", [2, 6])
def test_plan_of_the_scalewise_kernel_is_within_15_percent_of_the_measured_cpu_peak(depth, checkpointing):
    # the CPU default kernel: one unmasked SDPA per scale keeps each scale's output too
    assert_close_to_measured(tiny(depth), 8, checkpointing, accumulation_steps=2, attention="scalewise")


@pytest.mark.parametrize("checkpointing", ["none", "blocks"])
@pytest.mark.parametrize("micro_batch_size", [1, 2])
def test_plan_is_within_15_percent_at_the_256px_sequence(micro_batch_size, checkpointing):
    assert_close_to_measured(tiny_256px(2), micro_batch_size, checkpointing, accumulation_steps=2)


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", ["none", "blocks"])
@pytest.mark.parametrize("depth", [4, 8])
def test_plan_is_within_15_percent_at_the_256px_sequence_deeper(depth, checkpointing):
    assert_close_to_measured(tiny_256px(depth), 2, checkpointing, accumulation_steps=2)


def test_recording_sees_a_known_allocation_and_its_free():
    with CpuMemoryRecording() as recording, recording.region():
        held = torch.empty(1000, dtype=torch.float32)
        transient = torch.empty(250, dtype=torch.float64)
        del transient
    assert recording.region_peak_bytes() == 4000 + 2000
    assert held.numel() == 1000


# ---------------------------------------------------------------- the plan's shape and units
def test_parts_are_named_and_sum_to_the_total():
    plan = training_memory(VARConfig(depth=16), 32, "bf16", "none", shards=1)
    assert tuple(plan.parts) == PART_NAMES
    assert plan.total_bytes == sum(plan.parts.values())
    assert all(value >= 0 for value in plan.parts.values())


def test_format_uses_decimal_units_and_says_so():
    assert format_bytes(61_200_000_000) == "61.2 GB"
    assert format_bytes(3_400_000) == "3.4 MB"
    assert format_bytes(512) == "512 B"
    text = str(training_memory(VARConfig(depth=16), 32, "bf16", "none", shards=1))
    assert "GB" in text and "1 GB = 1e9 bytes" in text and "activations" in text


def test_weights_gradients_and_adam_states_are_4_4_and_8_bytes_per_parameter_in_fp32():
    config = VARConfig(depth=12)
    params = counting.param_counts(config)["total"]
    plan = training_memory(config, 1, "fp32", "none", shards=1, device="cpu")
    assert plan.parts["gradients"] == 4 * params
    assert 8 * params <= plan.parts["optimizer_states"] < 8 * params + 4096
    assert 4 * params <= plan.parts["weights"] < 4 * params + 4 * config.sequence_length**2 + 8192


def test_activations_grow_linearly_with_micro_batch_and_depth():
    def activations(depth: int, batch: int) -> int:
        return training_memory(VARConfig(depth=depth), batch, "bf16", "none", shards=1).parts["activations"]

    per_image = activations(16, 2) - activations(16, 1)
    assert activations(16, 9) - activations(16, 1) == 8 * per_image
    assert activations(18, 4) > activations(16, 4)


def test_checkpointing_keeps_only_block_inputs():
    config = VARConfig(depth=20)
    full = training_memory(config, 32, "bf16", "none", shards=1)
    recomputed = training_memory(config, 32, "bf16", "blocks", shards=1)
    assert recomputed.parts["activations"] < full.parts["activations"] / 10
    assert recomputed.total_bytes < full.total_bytes


def test_sharding_divides_parameter_state_but_keeps_activations():
    config = VARConfig(depth=30)
    single = training_memory(config, 4, "bf16", "none", shards=1)
    sharded = training_memory(config, 4, "bf16", "none", shards=8)
    assert sharded.parts["optimizer_states"] < single.parts["optimizer_states"] / 7
    assert sharded.parts["activations"] == single.parts["activations"]


def test_ddp_adds_gradient_buckets():
    config = VARConfig(depth=16)
    alone = training_memory(config, 4, "bf16", "none", shards=1)
    replicated = training_memory(config, 4, "bf16", "none", shards=1, ddp=True)
    assert replicated.parts["gradients"] - alone.parts["gradients"] == 4 * counting.param_counts(config)["total"]


def test_math_attention_holds_the_l_by_l_softmax():
    config = VARConfig(depth=16)
    fused = training_memory(config, 8, "bf16", "none", shards=1, attention="sdpa")
    math = training_memory(config, 8, "bf16", "none", shards=1, attention="math")
    L, H = config.sequence_length, config.num_heads
    assert math.parts["activations"] - fused.parts["activations"] == 16 * (4 + 2) * 8 * H * L * L


@pytest.mark.parametrize(
    ("field", "arguments"),
    [
        ("precision", {"precision": "fp8"}),
        ("activation_checkpointing", {"activation_checkpointing": "selective"}),
        ("attention", {"attention": "xformers"}),
        ("micro_batch_size", {"micro_batch_size": 0}),
        ("shards", {"shards": 0}),
    ],
)
def test_bad_plan_arguments_name_their_field(field, arguments):
    call = {
        "var_config": VARConfig(depth=6),
        "micro_batch_size": 4,
        "precision": "bf16",
        "activation_checkpointing": "none",
        "shards": 1,
    }
    call.update(arguments)
    with pytest.raises(ConfigError, match=field):
        training_memory(**call)


# ---------------------------------------------------------------- facts from the paper's study
def test_d20_at_96_images_per_gpu_without_checkpointing_exceeds_80_gb():
    # users of the reference code ran out of memory on 8 H100s at batch 768 (VAR issue #142)
    plan = training_memory(VARConfig(depth=20), 96, "bf16", "none", shards=1, ddp=True)
    assert VARConfig(depth=20).width == 1280 and VARConfig(depth=20).sequence_length == 680
    assert plan.total_bytes > 80 * GB, plan


def _study_rule(rule, depth: int):
    """A study file's depth rule: a number, or {start depth: value} steps (the value of the
    deepest start at or below `depth`), as orchestration.study.depth_rule reads it."""
    if not isinstance(rule, dict):
        return rule
    return rule[max(start for start in rule if start <= depth)]


def test_every_depth_of_the_paper_study_fits_80_gb_gpus():
    study = yaml.safe_load(STUDY.read_text())
    depths = study["model"]["depths"]
    assert depths == [6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 30]
    for depth in depths:
        batch = _study_rule(study["recipe"]["batch_size"], depth)
        gpus = _study_rule(study["resources"]["gpus"], depth)
        plan = choose_execution(
            VARConfig(depth=depth, patch_nums=tuple(study["model"]["patch_nums"])),
            batch,
            gpus,
            80 * GB,
            study["trial"]["precision"],
        )
        assert plan.memory.total_bytes <= 0.9 * 80 * GB, f"d{depth}: {plan}"
        assert plan.micro_batch_size * plan.accumulation_steps * gpus == batch


# ---------------------------------------------------------------- choose_execution
def test_auto_takes_the_largest_micro_batch_that_fits():
    config = VARConfig(depth=16)
    plan = choose_execution(config, 768, 4, 80 * GB, "bf16")
    per_rank = 768 // 4
    assert plan.memory.total_bytes <= plan.usable_bytes
    larger = [size for size in range(plan.micro_batch_size + 1, per_rank + 1) if per_rank % size == 0]
    assert larger, "the whole share fits: pick a smaller GPU for this test"
    too_big = training_memory(
        config,
        larger[0],
        "bf16",
        plan.activation_checkpointing,
        shards=1,
        ddp=True,
        accumulation_steps=per_rank // larger[0],
    )
    assert too_big.total_bytes > plan.usable_bytes
    assert (plan.activation_checkpointing, plan.sharding) == ("none", "ddp")


def _budget_between(low: int, high: int, margin: float = 0.10) -> float:
    """GPU memory whose usable part lies halfway between two plans' totals."""
    return (low + high) / 2 / (1 - margin)


def test_checkpointing_turns_on_when_micro_batch_1_does_not_fit_without_it():
    config = VARConfig(depth=24)
    without = training_memory(config, 1, "bf16", "none", shards=1, accumulation_steps=96)
    with_it = training_memory(config, 1, "bf16", "blocks", shards=1, accumulation_steps=96)
    plan = choose_execution(config, 96, 1, _budget_between(with_it.total_bytes, without.total_bytes), "bf16")
    assert plan.activation_checkpointing == "blocks" and plan.sharding == "ddp"


def test_fsdp_turns_on_when_checkpointing_is_not_enough():
    config = VARConfig(depth=30)
    replicated = training_memory(config, 1, "bf16", "blocks", shards=1, ddp=True, accumulation_steps=128)
    plan = choose_execution(config, 1024, 8, replicated.total_bytes / 2 / 0.9, "bf16")
    assert plan.sharding == "fsdp"
    assert plan.memory.shards == 8 and plan.memory.total_bytes <= plan.usable_bytes


def test_fixed_choices_are_respected():
    config = VARConfig(depth=16)
    plan = choose_execution(
        config, 768, 4, 80 * GB, "bf16", micro_batch_size=8, activation_checkpointing="blocks", sharding="fsdp"
    )
    assert (plan.micro_batch_size, plan.accumulation_steps) == (8, 24)
    assert (plan.activation_checkpointing, plan.sharding) == ("blocks", "fsdp")
    # a fixed "none" is not overridden even where checkpointing would have fitted
    without = training_memory(config, 1, "bf16", "none", shards=1, accumulation_steps=768)
    with pytest.raises(ConfigError, match="checkpointing none"):
        choose_execution(
            config, 768, 1, without.total_bytes * 0.95 / 0.9, "bf16", activation_checkpointing="none", sharding="ddp"
        )


def test_a_trial_that_cannot_fit_names_the_numbers():
    with pytest.raises(ConfigError) as raised:
        choose_execution(VARConfig(depth=30), 1024, 1, 20 * GB, "bf16")
    message = str(raised.value)
    assert "micro-batch 1" in message and "18.0 GB available" in message and "20.0 GB" in message
    assert "checkpointing none + ddp: 38.8 GB" in message and "checkpointing blocks + ddp" in message


def test_a_micro_batch_that_does_not_divide_the_share_is_named():
    with pytest.raises(ConfigError, match="micro_batch_size=7 .*96 images"):
        choose_execution(VARConfig(depth=16), 768, 8, 80 * GB, "bf16", micro_batch_size=7)


@pytest.mark.parametrize("memory", [0, -80 * GB])
def test_gpu_memory_must_be_positive(memory):
    with pytest.raises(ConfigError, match="gpu_memory_gb"):
        choose_execution(VARConfig(depth=16), 768, 8, memory, "bf16")


@pytest.mark.parametrize(
    ("field", "arguments"),
    [
        ("batch_size", {"global_batch": 770, "world_size": 8}),
        ("margin", {"margin": 1.0}),
        ("sharding", {"sharding": "zero3"}),
        ("activation_checkpointing", {"activation_checkpointing": "all"}),
    ],
)
def test_bad_execution_arguments_name_their_field(field, arguments):
    call = {
        "var_config": VARConfig(depth=6),
        "global_batch": 768,
        "world_size": 8,
        "gpu_memory_bytes": 80 * GB,
        "precision": "bf16",
    }
    call.update(arguments)
    with pytest.raises(ConfigError, match=field):
        choose_execution(**call)


@pytest.mark.slow
@pytest.mark.parametrize(("config", "micro_batch_size"), [(tiny(4), 8), (tiny(4, width=256, num_heads=4), 2)])
def test_plan_counts_ddp_gradient_buckets_as_measured_on_two_gloo_ranks(config, micro_batch_size):
    measured = measure_cpu_ddp_training_peak(config, micro_batch_size, world_size=2)
    plan = training_memory(config, micro_batch_size, "fp32", "none", shards=1, ddp=True, device="cpu")
    error = plan.total_bytes / measured - 1
    assert abs(error) <= TOLERANCE, f"plan {plan} vs measured {format_bytes(measured)}: {error:+.1%}"

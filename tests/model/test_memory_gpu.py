"""The memory plan against `torch.cuda.max_memory_allocated` of real bf16 training steps."""

from __future__ import annotations

import pytest
import torch

from var_model.config import VARConfig
from var_model.memory import format_bytes, training_memory
from var_model.memory_measurement import measure_cuda_training_peak

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TOLERANCE = 0.15
AUTOCAST = {"bf16": torch.bfloat16, "fp32": None}


@pytest.mark.parametrize(
    ("depth", "micro_batch_size", "precision", "checkpointing", "attention"),
    [
        (8, 8, "bf16", "none", "sdpa"),
        (8, 32, "bf16", "none", "sdpa"),
        (8, 32, "bf16", "blocks", "sdpa"),
        (16, 8, "bf16", "none", "sdpa"),
        (16, 8, "bf16", "blocks", "sdpa"),
        (8, 8, "fp32", "none", "sdpa"),
        (8, 32, "bf16", "none", "flex"),
    ],
)
def test_plan_is_within_15_percent_of_the_cuda_peak(depth, micro_batch_size, precision, checkpointing, attention):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    config = VARConfig(depth=depth)  # the 256px model: 680 tokens, 4096 codes
    measured = measure_cuda_training_peak(
        config, micro_batch_size, AUTOCAST[precision], checkpointing, attention=attention, accumulation_steps=2
    )
    plan = training_memory(
        config,
        micro_batch_size,
        precision,
        checkpointing,
        shards=1,
        attention=attention,
        accumulation_steps=2,
        device="cuda",
    )
    error = plan.total_bytes / measured - 1
    assert abs(error) <= TOLERANCE, f"plan {plan} vs measured {format_bytes(measured)}: {error:+.1%}"

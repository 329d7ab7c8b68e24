"""The trial's execution switches reach the model: activation checkpointing, the attention
kernel and torch.compile. They change speed and memory, never the update."""

import pytest
import torch

from var_model.errors import ConfigError
from var_model.training import run_trial
from var_model.training.distributed import DistributedContext
from var_model.training.setup import ExecutionChoices, build_trial

CPU = DistributedContext.single(torch.device("cpu"))
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_auto_choices_on_cpu_are_sdpa_eager_and_plain(tiny_trial):
    parts = build_trial(tiny_trial, CPU, verify_cache=False)
    assert parts.execution == ExecutionChoices(
        attention="sdpa", compile=False, activation_checkpointing=False, sharding="single"
    )
    assert parts.var.attention_kernel == "sdpa" and not parts.var.activation_checkpointing
    assert parts.model is parts.var  # one process: neither DDP nor FSDP
    assert parts.info["attention"] == "sdpa" and parts.info["compile"] is False


def test_activation_checkpointing_trains_the_same_trial(tiny_trial, tmp_path):
    # drop-path and class dropout on: the recompute must replay the same random draws
    model = {"depth": 2, "width": 32, "num_heads": 2, "class_dropout": 0.5, "drop_path_rate": 0.2}
    plain = tiny_trial.replace(model=model, output_dir=str(tmp_path / "plain"))
    recomputed = plain.replace(output_dir=str(tmp_path / "blocks"), activation_checkpointing="blocks")
    assert build_trial(recomputed, CPU, verify_cache=False).var.activation_checkpointing
    first, second = run_trial(plain, resume=False), run_trial(recomputed, resume=False)
    assert second.status == "completed" and second.info["activation_checkpointing"] == "blocks"
    for key, value in first.metrics.items():
        assert second.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


def test_flex_attention_where_it_cannot_train_names_the_field(tiny_trial):
    with pytest.raises(ConfigError, match="attention is 'flex'.*use attention: auto or sdpa"):
        run_trial(tiny_trial.replace(attention="flex"), resume=False)


def test_compile_compiles_every_block_in_place(tiny_trial):
    parts = build_trial(tiny_trial.replace(compile=True), CPU, verify_cache=False)
    assert all(block._compiled_call_impl is not None for block in parts.var.blocks)
    assert parts.execution.attention == "scalewise"  # auto on CPU, compiled: the faster exact kernel
    # in place: parameter names (and so checkpoints) are those of the plain module
    assert not any("_orig_mod" in name for name in parts.var.state_dict())


@pytest.mark.slow
def test_compiled_trial_matches_the_eager_one(tiny_trial, tmp_path):
    model = {"depth": 1, "width": 32, "num_heads": 2, "class_dropout": 0.0, "drop_path_rate": 0.0}
    eager = tiny_trial.replace(
        model=model,
        output_dir=str(tmp_path / "eager"),
        budget_value=16 * 4,
        eval_every=0,
        checkpoint_every=0,
        eval_images=16,
    )
    compiled = eager.replace(output_dir=str(tmp_path / "compiled"), compile=True)
    first, second = run_trial(eager, resume=False), run_trial(compiled, resume=False)
    assert second.info["compile"] is True
    for key in ("final_train_loss", "final_test_loss_avg", "final_test_error_avg"):
        assert second.metrics[key] == pytest.approx(first.metrics[key], rel=1e-4), key


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_flex_compiled_micro_batched_trial_runs_on_cuda(tiny_trial, tmp_path, precision):
    base = tiny_trial.replace(device="cuda", precision=precision, micro_batch_size=4, activation_checkpointing="blocks")
    sdpa = run_trial(base.replace(output_dir=str(tmp_path / "sdpa"), attention="sdpa", compile=False), resume=False)
    flex = run_trial(base.replace(output_dir=str(tmp_path / "flex"), attention="flex", compile=True), resume=False)
    assert flex.status == sdpa.status == "completed"
    assert flex.info["attention"] == "flex" and flex.info["compile"] is True
    assert flex.info["accumulation_steps"] == 4
    # the same trial up to kernel rounding in half precision
    assert flex.metrics["final_test_loss_avg"] == pytest.approx(sdpa.metrics["final_test_loss_avg"], rel=0.05)

"""Gradients per layout: micro-batches accumulate the full-batch gradient; on several CPU
processes (gloo) DDP and FSDP2 give the one-process update, and FSDP checkpoints resume under
any layout and convert to the released format. Multi-process tests are `slow` (two processes
start per test)."""

import dataclasses
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from torch import multiprocessing
from torch.distributed.tensor import DTensor

from var_model.official import load_official, save_official
from var_model.tokenizer.cache import TokenCache
from var_model.training import TrialCallback, TrialConfig, TrialResult, run_trial
from var_model.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from var_model.training.distributed import DistributedContext
from var_model.training.setup import build_trial
from var_model.training.step import train_step

# class dropout and drop-path draw per batch shape and rank: off where weights are compared
NO_RANDOM_DRAWS = {"depth": 2, "width": 32, "num_heads": 2, "class_dropout": 0.0, "drop_path_rate": 0.0}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _join_ranks(rank: int, world_size: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)


def one_step_gradients(config: TrialConfig, context: DistributedContext) -> dict[str, torch.Tensor]:
    """The gradients of the first update (unclipped), unsharded, by parameter name."""
    parts = build_trial(config, context, verify_cache=False)
    indices_BL, label_B = parts.batches.next_batch()
    shard = context.shard(config.batch_size)
    train_step(parts, indices_BL[shard], label_B[shard], grad_clip=0.0)
    gradients = {}
    for name, parameter in parts.var.named_parameters():
        gradient = parameter.grad
        gradients[name] = (gradient.full_tensor() if isinstance(gradient, DTensor) else gradient).detach().clone()
    return gradients


def _gradients_rank(rank: int, world_size: int, port: int, config: TrialConfig, path: str) -> None:
    _join_ranks(rank, world_size, port)
    context = DistributedContext.from_environment("cpu")
    try:
        gradients = one_step_gradients(config, context)
        if context.is_main:
            torch.save(gradients, path)
    finally:
        context.shutdown()


def test_micro_batches_accumulate_the_full_batch_gradient(tiny_trial):
    config = tiny_trial.replace(model=NO_RANDOM_DRAWS)
    cpu = DistributedContext.single(torch.device("cpu"))
    full = one_step_gradients(config, cpu)
    split = one_step_gradients(config.replace(micro_batch_size=4), cpu)
    for name, gradient in full.items():
        torch.testing.assert_close(split[name], gradient, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
def test_two_ranks_in_micro_batches_accumulate_the_global_mean_gradient(tiny_trial, tmp_path, sharding):
    config = tiny_trial.replace(model=NO_RANDOM_DRAWS)
    single = one_step_gradients(config, DistributedContext.single(torch.device("cpu")))
    path = str(tmp_path / "gradients.pt")
    # 16 images over 2 ranks in micro-batches of 2: 4 passes per rank per update
    split = config.replace(micro_batch_size=2, sharding=sharding)
    multiprocessing.spawn(_gradients_rank, args=(2, _free_port(), split, path), nprocs=2, join=True)
    ranks = torch.load(path, weights_only=True)
    assert ranks.keys() == single.keys()
    for name, gradient in single.items():
        # a mean over the wrong number of tokens would be off by a factor (2 or 4), not 1e-6
        torch.testing.assert_close(ranks[name], gradient, rtol=1e-5, atol=1e-7, msg=name)


class SnapshotAt(TrialCallback):
    """Copies the checkpoint of one step elsewhere (rank 0 alone runs callbacks, so a trial
    of several ranks cannot be interrupted from here without leaving the others waiting)."""

    def __init__(self, step: int, directory: str):
        self.step, self.directory = step, directory

    def on_checkpoint(self, step, path):
        if step == self.step:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(self.directory) / CHECKPOINT_FILE)


class Interrupt(Exception):
    pass


class InterruptAt(TrialCallback):
    def __init__(self, step: int):
        self.step = step

    def on_checkpoint(self, step, path):
        if step == self.step:
            raise Interrupt


def _trial_rank(
    rank: int, world_size: int, port: int, config: TrialConfig, resume: bool, callback: TrialCallback | None
) -> None:
    _join_ranks(rank, world_size, port)
    run_trial(config, callback=callback, resume=resume)


def _two_ranks(config: TrialConfig, resume: bool, callback: TrialCallback | None = None) -> TrialResult:
    multiprocessing.spawn(_trial_rank, args=(2, _free_port(), config, resume, callback), nprocs=2, join=True)
    return TrialResult.load(config.output_dir)


def _weights(directory: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(Path(directory) / CHECKPOINT_FILE)["model"]


def _assert_weights_close(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        torch.testing.assert_close(tensor, second[name], rtol=0, atol=1e-5, msg=name)


@pytest.mark.slow
def test_fsdp_trial_matches_one_process_and_its_checkpoints_resume_under_any_layout(tiny_trial, tmp_path):
    # 21 test rows in batches of 5 over 2 ranks: 11 rows (3 forwards) on rank 0, 10 (2) on
    # rank 1, so evaluation must not need every rank in each forward; clip at 0.5 so it acts
    config = tiny_trial.replace(model=NO_RANDOM_DRAWS, eval_images=21, eval_batch_size=5, grad_clip=0.5)
    fsdp = config.replace(sharding="fsdp", micro_batch_size=4)

    single = run_trial(config.replace(output_dir=str(tmp_path / "single")), resume=False)
    sharded = _two_ranks(
        fsdp.replace(output_dir=str(tmp_path / "fsdp")),
        resume=False,
        callback=SnapshotAt(6, str(tmp_path / "from_fsdp")),
    )
    assert sharded.status == "completed" and sharded.info["sharding"] == "fsdp"
    _assert_weights_close(_weights(str(tmp_path / "fsdp")), _weights(str(tmp_path / "single")))
    for key in ("final_test_loss_avg", "final_test_error_avg", "final_test_loss_last", "final_train_loss"):
        assert sharded.metrics[key] == pytest.approx(single.metrics[key], rel=1e-4), key

    # FSDP's step-6 checkpoint resumes in one process ...
    resumed_alone = run_trial(config.replace(output_dir=str(tmp_path / "from_fsdp")))
    assert resumed_alone.status == "completed"
    _assert_weights_close(_weights(str(tmp_path / "from_fsdp")), _weights(str(tmp_path / "single")))

    # ... and one process's step-6 checkpoint resumes under FSDP
    interrupted = config.replace(output_dir=str(tmp_path / "to_fsdp"))
    with pytest.raises(Interrupt):
        run_trial(interrupted, callback=InterruptAt(6), resume=False)
    resumed_sharded = _two_ranks(fsdp.replace(output_dir=interrupted.output_dir), resume=True)
    assert resumed_sharded.status == "completed"
    _assert_weights_close(_weights(interrupted.output_dir), _weights(str(tmp_path / "single")))

    # the FSDP checkpoint's weights are a released-format state dict
    cache = TokenCache.open(config.token_cache, verify=False)
    vqvae = cache.load_tokenizer(torch.device("cpu"))
    state = _weights(str(tmp_path / "fsdp"))
    var_path, vae_path = tmp_path / "var.pth", tmp_path / "vae.pth"
    _, var = load_official(
        state, vqvae.state_dict(), patch_nums=vqvae.config.patch_nums, vqvae_overrides=_vqvae_fields(vqvae)
    )
    save_official(vqvae, var, var_path, vae_path)
    _, reloaded = load_official(
        var_path, vae_path, patch_nums=vqvae.config.patch_nums, vqvae_overrides=_vqvae_fields(vqvae)
    )
    for name, tensor in state.items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name


def _vqvae_fields(vqvae) -> dict:
    # the released VQVAE file cannot tell a few training-only fields (beta, quant_resi): pass all
    fields = dataclasses.asdict(vqvae.config)
    del fields["patch_nums"]  # passed on its own
    return fields

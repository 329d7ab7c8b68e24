"""CUDA and multi-process paths of the trainer. GPU tests skip without CUDA; the 2-process
gloo test is `slow` (process start-up dominates on a small box)."""

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as multiprocessing

from var_model.training import TrialResult, run_trial

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_trial_runs_on_cuda_with_each_precision(tiny_trial, precision):
    config = tiny_trial.replace(device="cuda", precision=precision)
    result = run_trial(config, resume=False)
    assert result.status == "completed" and result.info["device"].startswith("cuda")
    assert result.info["precision"] == precision
    assert math.isfinite(result.metrics["final_test_loss_avg"])
    assert result.metrics["final_test_loss_avg"] < math.log(64)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, config) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    run_trial(config, resume=False)


@pytest.mark.slow
def test_two_gloo_processes_train_one_trial(tiny_trial):
    config = tiny_trial.replace(device="cpu")
    multiprocessing.spawn(_worker, args=(2, _free_port(), config), nprocs=2, join=True)
    result = TrialResult.load(config.output_dir)
    assert result.status == "completed" and result.info["world_size"] == 2
    assert result.metrics["final_images"] == 16 * 12
    assert math.isfinite(result.metrics["final_test_loss_avg"])

"""Cooldown branches (one wsd trunk + a cooldown per budget) vs an independent paper-schedule run
per budget: final test losses side by side, and the training images each strategy ran (issue 12).

Both strategies come from the demo study, studies/smoke.yaml (embedded synthetic data, its
tokenizer, its recipe), planned by orchestration.study.trial_config.plan_study:

  branches  the study as written (budgets.strategy branches, wsd, its decay_fraction and
            decay_shape, the warm-up in steps its trunk shares): per depth one trunk to the
            largest budget's fork, then one branch per budget from the trunk's fork file.
  paper     the same study under budgets.strategy independent with recipe.schedule paper: one
            run per budget from step 0, with its own warm-up (warmup_fraction of its own steps).

Same seed, batch, lr, depth and data for both. Every trial runs in this process through
var_model.training.run_trial on the CPU with one torch thread: no Ray, no MLflow. The
token cache is built once, with var_model.tokenizer.run_tokenizer_stage, in
<storage>/token_cache (reused by a rerun); the trials are trained from scratch on every run.
The smoke study's `trial:` section is kept except sample_grid (off: a PNG of samples changes
no loss) and eval_every (0: only the final test evaluation, the one compared here).

    python benchmarks/branches_vs_paper.py                 # depths 1 and 2 (minutes on one core)
    python benchmarks/branches_vs_paper.py --depths 2 4    # the run in docs/BRANCHES.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import torch

from orchestration.execution.tokenizer_task import tokenizer_stage_config
from orchestration.study.branches import BRANCH, TRUNK
from orchestration.study.loading import load_study
from orchestration.study.trial_config import build_trial_config, plan_study
from orchestration.study.trials import TrialSpec
from var_model.errors import TrialError
from var_model.files import atomic_write_json
from var_model.tokenizer import run_tokenizer_stage
from var_model.training import TrialConfig, TrialResult, run_trial
from var_model.training.forks import read_forks

STUDY_FILE = "studies/smoke.yaml"
# run bookkeeping only: neither changes a trained weight or the final test loss
BENCHMARK_OVERRIDES = ["trial.sample_grid=false", "trial.eval_every=0"]
RESULTS_FILE = "results.json"


def load_strategy(study_file: str, storage: str, depths: list[int], strategy_overrides: list[str]):
    overrides = [
        f"storage={storage}",
        f"model.depths=[{','.join(str(depth) for depth in depths)}]",
        *BENCHMARK_OVERRIDES,
        *strategy_overrides,
    ]
    spec = load_study(study_file, overrides=overrides)
    return spec, plan_study(spec)


def on_cpu(config: TrialConfig) -> TrialConfig:
    # one shared core: the benchmark's numbers are for one thread, whatever the study asks
    return config.replace(device="cpu", threads=1)


def completed(result: TrialResult, key: str) -> TrialResult:
    if result.status != "completed":
        raise TrialError(f"trial {key} ended {result.status!r} ({result.message}); its losses cannot be compared")
    return result


def run_branches(spec, trials: list[TrialSpec], token_cache: str, depth: int) -> dict:
    """The trunk of `depth`, then each branch from the fork its trunk wrote."""
    trunk_trial = next(trial for trial in trials if trial.depth == depth and trial.role == TRUNK)
    trunk_config = on_cpu(build_trial_config(spec, trunk_trial, token_cache))
    started = time.perf_counter()
    trunk_result = completed(run_trial(trunk_config), trunk_trial.key)
    trunk_seconds = time.perf_counter() - started
    trunk_images = trunk_result.steps * trunk_config.batch_size
    forks = {fork.budget_value: fork for fork in read_forks(trunk_config.output_dir, trunk_config.to_dict())}
    rows = {}
    for trial in (trial for trial in trials if trial.depth == depth and trial.role == BRANCH):
        if trial.budget_value not in forks:
            raise TrialError(
                f"trunk {trunk_trial.key} wrote forks for budgets {sorted(forks)}, none for the "
                f"branch {trial.key} (budget {trial.budget_value:g})"
            )
        config = on_cpu(build_trial_config(spec, trial, token_cache, fork=forks[trial.budget_value]))
        started = time.perf_counter()
        result = completed(run_trial(config), trial.key)
        rows[trial.budget_value] = {
            "loss_last": result.metrics["final_test_loss_last"],
            "loss_avg": result.metrics["final_test_loss_avg"],
            "fork_step": config.fork_step,
            "steps": result.steps,
            "cooldown_images": result.info["steps_trained"] * config.batch_size,
            "seconds": time.perf_counter() - started,
        }
    return {
        "trunk_images": trunk_images,
        "trunk_steps": trunk_result.steps,
        "trunk_seconds": trunk_seconds,
        "budgets": rows,
    }


def run_paper(spec, trials: list[TrialSpec], token_cache: str, depth: int) -> dict[float, dict]:
    rows = {}
    for trial in (trial for trial in trials if trial.depth == depth):
        config = on_cpu(build_trial_config(spec, trial, token_cache))
        started = time.perf_counter()
        result = completed(run_trial(config), trial.key)
        rows[trial.budget_value] = {
            "loss_last": result.metrics["final_test_loss_last"],
            "loss_avg": result.metrics["final_test_loss_avg"],
            "steps": result.steps,
            "images": result.steps * config.batch_size,
            "seconds": time.perf_counter() - started,
        }
    return rows


def print_depth(depth: int, branches: dict, paper: dict[float, dict]) -> None:
    print(
        f"\ndepth {depth}: trunk {branches['trunk_steps']} steps ({branches['trunk_images']} images, "
        f"{branches['trunk_seconds']:.0f}s)"
    )
    print(
        f"{'budget':>7} {'fork':>5} | {'branch last':>11} {'paper last':>10} {'diff':>7} | "
        f"{'branch avg':>10} {'paper avg':>9} {'diff':>7} | {'cooldown img':>12} {'paper img':>9}"
    )
    for budget, branch in branches["budgets"].items():
        independent = paper[budget]
        print(
            f"{budget:>7g} {branch['fork_step']:>5} | {branch['loss_last']:>11.4f} {independent['loss_last']:>10.4f} "
            f"{branch['loss_last'] - independent['loss_last']:>+7.4f} | {branch['loss_avg']:>10.4f} "
            f"{independent['loss_avg']:>9.4f} {branch['loss_avg'] - independent['loss_avg']:>+7.4f} | "
            f"{branch['cooldown_images']:>12} {independent['images']:>9}"
        )
    branch_images = branches["trunk_images"] + sum(row["cooldown_images"] for row in branches["budgets"].values())
    paper_images = sum(row["images"] for row in paper.values())
    branch_seconds = branches["trunk_seconds"] + sum(row["seconds"] for row in branches["budgets"].values())
    paper_seconds = sum(row["seconds"] for row in paper.values())
    print(
        f"images trained: branches {branch_images} (trunk {branches['trunk_images']} + cooldowns "
        f"{branch_images - branches['trunk_images']}), paper {paper_images} (sum of budgets): branches train "
        f"{1 - branch_images / paper_images:.1%} fewer; wall {branch_seconds:.0f}s vs {paper_seconds:.0f}s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 1 and 2, not the issue's 2 and 4: on 2 shared CPU cores depths 2 and 4 took 14 minutes (docs/BRANCHES.md)
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2], help="VAR depths (default: 1 2)")
    parser.add_argument(
        "--storage", default="runs/branches_vs_paper", help="folder for the token cache, the trials and results.json"
    )
    parser.add_argument("--study", default=STUDY_FILE, help="the study whose data, tokenizer and recipe are used")
    args = parser.parse_args()
    torch.set_num_threads(1)
    began = time.perf_counter()
    storage = Path(args.storage).absolute()
    branch_spec, branch_trials = load_strategy(args.study, str(storage / "branches"), args.depths, [])
    if branch_spec.budgets.strategy != "branches":
        raise SystemExit(
            f"{args.study}: budgets.strategy is {branch_spec.budgets.strategy!r}; this benchmark "
            "compares a study written with budgets.strategy branches against the paper schedule"
        )
    paper_spec, paper_trials = load_strategy(
        args.study, str(storage / "paper"), args.depths, ["budgets.strategy=independent", "recipe.schedule=paper"]
    )
    # trained from scratch on every run: a leftover trial would resume and its time would not count
    for spec in (branch_spec, paper_spec):
        shutil.rmtree(os.path.join(spec.storage, "trials"), ignore_errors=True)
    stage = dataclasses.replace(
        tokenizer_stage_config(branch_spec, threads=1), cache_root=str(storage / "token_cache"), device="cpu"
    )
    started = time.perf_counter()
    token_cache = run_tokenizer_stage(stage).cache_path
    cache_seconds = time.perf_counter() - started
    recipe = branch_spec.recipe
    print(
        f"{args.study}: {branch_spec.data.train_images} synthetic train images, budgets "
        f"{', '.join(f'{budget:g}' for budget in branch_spec.budgets.values)} {branch_spec.budgets.kind}, "
        f"batch {recipe.batch_size.at(args.depths[0])}, seed {branch_spec.seeds[0]}; branches: wsd, "
        f"decay_fraction {recipe.decay_fraction}, decay_shape {recipe.decay_shape}, warm-up "
        f"{branch_trials[0].warmup_steps} steps; paper: warmup_fraction {recipe.warmup_fraction} of each run's "
        f"steps; CPU, 1 thread; token cache {cache_seconds:.0f}s"
    )
    print(
        "losses: final test loss (nats/token) on the study's eval_images test rows; last = last scale, "
        "avg = all scales; diff = branch - paper (negative: branches lower)"
    )
    results = {}
    for depth in args.depths:
        branches = run_branches(branch_spec, branch_trials, token_cache, depth)
        paper = run_paper(paper_spec, paper_trials, token_cache, depth)
        print_depth(depth, branches, paper)
        results[depth] = {"branches": branches, "paper": paper}
        atomic_write_json(storage / RESULTS_FILE, json.loads(json.dumps(results)))
    print(f"\nwall {time.perf_counter() - began:.0f}s; results in {storage / RESULTS_FILE}")


if __name__ == "__main__":
    main()

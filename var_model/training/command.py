"""`varscale train | tokenizer | sample`: one trial, one tokenizer stage, one sample grid.

Tiny CPU walk-through (about a minute):

    varscale tokenizer var_model/training/examples/tiny_tokenizer.yaml
    varscale train var_model/training/examples/tiny_trial.yaml
    varscale sample runs/tiny_trial/checkpoint.pt --labels 0 1 2 --out grid.png

`register(subparsers)` adds the three subcommands to the `varscale` parser
(orchestration/cli.py); each sets `handler(args) -> exit code`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from var_model.errors import CheckpointError, ConfigError
from var_model.overrides import apply_overrides
from var_model.tokenizer.cache import TokenCache
from var_model.tokenizer.stage import TokenizerStageConfig, run_tokenizer_stage
from var_model.training.checkpoint import load_checkpoint
from var_model.training.config import TrialConfig
from var_model.training.sampling import sample_grid, save_png
from var_model.training.trainer import run_trial, unigram_reference
from var_model.var import VAR

# what a malformed `--set` of `varscale train` shows as the example (a trial field)
TRIAL_OVERRIDE_EXAMPLE = "budget_value=2e4"


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="run one trial from a TrialConfig YAML (resumes if it can)")
    train.add_argument("trial", help="trial YAML, e.g. var_model/training/examples/tiny_trial.yaml")
    train.add_argument("--no-resume", action="store_true", help="start over, deleting the trial's checkpoint")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TrialConfig field (YAML value), e.g. --set budget_value=2e4; repeatable",
    )
    train.set_defaults(handler=train_command)

    tokenizer = subparsers.add_parser(
        "tokenizer", help="train or load the VQVAE and build the token cache (reused when it exists)"
    )
    tokenizer.add_argument("config", nargs="?", help="tokenizer stage YAML (TokenizerStageConfig fields)")
    tokenizer.add_argument("--cache-root", help="where tokenizers and caches live (overrides the YAML)")
    tokenizer.add_argument("--steps", type=int, help="tokenizer training steps (overrides the YAML)")
    tokenizer.add_argument("--device", help="auto, cpu or cuda (overrides the YAML)")
    tokenizer.add_argument("--json", action="store_true", help="print the result as JSON")
    tokenizer.set_defaults(handler=tokenizer_command)

    sample = subparsers.add_parser("sample", help="sample an image grid from a trial checkpoint")
    sample.add_argument("checkpoint", help="a trial's checkpoint.pt")
    sample.add_argument("--labels", type=int, nargs="+", required=True, help="one grid row per label")
    sample.add_argument("--out", required=True, help="PNG path to write")
    sample.add_argument("--per-label", type=int, default=4, help="samples per label (grid columns)")
    sample.add_argument("--cfg", type=float, default=1.5, help="classifier-free guidance weight")
    sample.add_argument("--top-k", type=int, default=0, help="top-k filter (0 = off)")
    sample.add_argument("--top-p", type=float, default=0.96, help="nucleus filter (0 = off)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--token-cache", help="token cache to take the tokenizer from (default: the trial's)")
    sample.set_defaults(handler=sample_command)


def train_command(args: argparse.Namespace) -> int:
    config = TrialConfig.from_yaml(args.trial)
    if args.overrides:
        config = TrialConfig.from_dict(apply_overrides(config.to_dict(), args.overrides, TRIAL_OVERRIDE_EXAMPLE))
    result = run_trial(config, resume=not args.no_resume)
    print(f"{result.status} after {result.steps} steps: {config.output_dir}")
    if result.message:
        print(result.message)
    for key in sorted(result.metrics):
        if not key.startswith(("final_test_loss_scale", "final_test_error_scale")):
            print(f"  {key:24s} {result.metrics[key]:.6g}")
    if result.status == "completed":
        baselines = unigram_reference(config)
        print(f"  {'unigram_test_loss_avg':24s} {baselines['unigram_test_loss_avg']:.6g}  (frequency baseline)")
        print(f"  {'unigram_test_loss_last':24s} {baselines['unigram_test_loss_last']:.6g}")
    return 0 if result.status == "completed" else 1


def tokenizer_command(args: argparse.Namespace) -> int:
    if args.config is None:
        raise ConfigError("give a tokenizer stage YAML, e.g. var_model/training/examples/tiny_tokenizer.yaml")
    config = TokenizerStageConfig.from_yaml(args.config)
    changes: dict[str, Any] = {}
    if args.cache_root:
        changes["cache_root"] = args.cache_root
    if args.device:
        changes["device"] = args.device
    if args.steps is not None:
        changes["training"] = dataclasses.replace(config.training, steps=args.steps)
    config = dataclasses.replace(config, **changes)

    def log(record: dict[str, float]) -> None:
        if not args.json:
            usage = " ".join(f"{value:.2f}" for key, value in record.items() if key.startswith("batch_usage"))
            print(
                f"  step {int(record['step']):6d}  mse {record['reconstruction_mse']:.4f}  "
                f"quantizer {record['quantizer_loss']:.4f}  usage/scale {usage}  "
                f"re-seeded {int(record['reseeded_codes'])}",
                flush=True,
            )

    result = run_tokenizer_stage(config, log=log)
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        return 0
    report = result.report
    print(f"tokenizer: {result.tokenizer_path}{' (reused)' if result.reused_tokenizer else ''}")
    print(
        f"  test reconstruction mse {report['reconstruction_mse']:.5f} (images in [-1, 1]), "
        f"psnr {report['psnr']:.2f} dB"
    )
    print(
        "  codebook usage per scale: "
        + " ".join(f"{u:.3f}" for u in report["codebook_usage"])
        + f" (any scale {report['codebook_usage_any_scale']:.3f})"
    )
    print(f"token cache: {result.cache_path}{' (reused)' if result.reused_cache else ''}")
    for key, value in result.baselines.items():
        print(f"  {key:34s} {value:.4f}")
    return 0


def load_trained_var(checkpoint: str, token_cache: str | None = None) -> tuple[VAR, TokenCache, TrialConfig]:
    """A trial's VAR in eval mode on the CPU, with the tokenizer of the token cache it was trained
    on (`varscale sample` and `varscale edit`)."""
    state = load_checkpoint(checkpoint)
    config = TrialConfig.from_dict(state["trial_config"])
    cache = TokenCache.open(token_cache or config.token_cache, verify=False)
    if cache.key != state.get("cache_key"):
        raise CheckpointError(f"token cache {cache.path} is not the one {checkpoint} was trained on")
    var = VAR(config.var_config(cache.tokenizer_config, cache.num_classes), vqvae=cache.load_tokenizer("cpu"))
    var.load_state_dict(state["model"])
    return var.eval(), cache, config


def sample_command(args: argparse.Namespace) -> int:
    var, _, config = load_trained_var(args.checkpoint, args.token_cache)
    torch.set_num_threads(max(1, config.threads))
    grid = sample_grid(var, args.labels, args.per_label, args.cfg, args.top_k, args.top_p, args.seed)
    path = save_png(grid, Path(args.out))
    print(f"wrote {path} ({len(args.labels)} rows x {args.per_label} samples)", file=sys.stdout)
    return 0

"""The tokenizer stage of a study, run once as a Ray task before any trial.

It maps the study's `data` and `tokenizer` sections onto var_model's TokenizerStageConfig and
runs var_model.tokenizer.run_tokenizer_stage, which trains (or loads) the VQVAE and builds the
token cache under `<storage>/token_cache/`. Both products are content-addressed there, so a
relaunch reuses them, and every node's trials read the same cache from the shared storage.

With an `evaluation:` section it then prepares the sample metrics (var_model.evaluation's
study stage): the built-in feature network or the Inception reference statistics, beside the
cache, and the floors of each metric (real images, tokenizer reconstructions), which go into
the stage's report and so onto the study's parent run as `tokenizer_floor_*` metrics.

The builtin feature network needs only the real images, so with two or more CPUs it trains in
a thread on one of them while the tokenizer trains and tokenises on the rest; the floors, which
need both, follow.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import torch

from orchestration.study.evaluation_section import check_evaluation_files
from orchestration.study.spec import StudySpec
from orchestration.study.trial_config import token_cache_dir
from orchestration.study.trials import tokenizer_config
from var_model.data.source import ImageSource
from var_model.evaluation import EvaluationConfig, prepare_study_evaluation
from var_model.evaluation.features import REPORT_FILE, feature_network_dir
from var_model.evaluation.study_stage import prepare_study_reference
from var_model.tokenizer import TokenCache, TokenizerStageConfig, load_tokenizer
from var_model.tokenizer import run_tokenizer_stage as run_stage
from var_model.tokenizer.training import TokenizerTrainingConfig
from var_model.training.distributed import resolve_device


def tokenizer_stage_config(spec: StudySpec, threads: int = 1) -> TokenizerStageConfig:
    return TokenizerStageConfig(
        data=spec.data,
        vqvae=tokenizer_config(spec),
        cache_root=token_cache_dir(spec),
        kind=spec.tokenizer.kind,
        training=TokenizerTrainingConfig(**spec.tokenizer.training),
        vqvae_path=spec.tokenizer.vqvae_path,
        encode_batch_size=spec.tokenizer.encode_batch_size,
        device="auto",
        threads=threads,
    )


def run_tokenizer_stage(spec: StudySpec) -> dict:
    """Returns {cache_path, cache_key, tokenizer_hash, report, baselines, reused_tokenizer,
    reused_cache, seconds, num_classes}."""
    # Ray sets OMP_NUM_THREADS to the task's CPU share; torch threads follow it.
    threads = max(1, int(float(os.environ.get("OMP_NUM_THREADS", "1"))))
    check_evaluation_files(spec.evaluation, spec.data.kind)  # fails before the tokenizer trains
    config = tokenizer_stage_config(spec, threads)
    evaluation_config = spec.evaluation.evaluation_config() if spec.evaluation is not None else None
    device = resolve_device(config.device)
    source = ImageSource(spec.data)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="feature network") as pool:
        before_encoding = None
        if _train_alongside(evaluation_config, source, config.cache_root, threads, device):
            source.arrays("train"), source.arrays("test")  # generated once, before two threads read them
            reference = pool.submit(
                _on_one_thread, prepare_study_reference, evaluation_config, source, config.cache_root, device
            )
            config = dataclasses.replace(config, threads=threads - 1)

            def before_encoding() -> None:
                # the network is done (it trains in less time than the tokenizer): all CPUs encode
                reference.result()
                torch.set_num_threads(threads)

        result = run_stage(config, source=source, before_encoding=before_encoding)
    torch.set_num_threads(threads)
    evaluation = {}
    if evaluation_config is not None:
        evaluation = prepare_study_evaluation(
            evaluation_config, source, load_tokenizer(result.tokenizer_path, device), config.cache_root, device
        )
    return {
        "cache_path": result.cache_path,
        # the cache's content key: a study refuses to mix caches (execution.study_checks)
        "cache_key": result.cache_key,
        "tokenizer_hash": result.tokenizer_hash,
        # feature_test_accuracy and the floor_* numbers join the tokenizer's report (parent metrics)
        "report": {**result.report, **evaluation},
        "baselines": result.baselines,
        "reused_tokenizer": result.reused_tokenizer,
        "reused_cache": result.reused_cache,
        "seconds": result.cache_build_seconds,
        # The trainer sizes the VAR's class embedding from the cache, not from the spec.
        "num_classes": TokenCache.open(result.cache_path, verify=False).num_classes,
    }


def _train_alongside(
    config: EvaluationConfig | None, source: ImageSource, cache_root: str, threads: int, device: torch.device
) -> bool:
    """Whether the builtin feature network is still to be trained and a CPU is free for it."""
    if config is None or config.feature != "builtin" or threads < 2 or device.type != "cpu":
        return False
    return not (feature_network_dir(cache_root, source.identity(), config.network) / REPORT_FILE).is_file()


def _on_one_thread(function, *arguments):
    # a thread's torch ops use its own intra-op thread count (set here), the stage's main thread
    # keeps the count run_stage sets: one CPU each, not two threads oversubscribing two CPUs
    torch.set_num_threads(1)
    return function(*arguments)

"""A small REAL MLflow study store written with plain mlflow client calls following
docs/ARCHITECTURE.md's schema: synthetic trials whose final last-scale loss follows a known law.

Kept out of conftest.py so tests can import its constants by a unique module name.
"""

from __future__ import annotations

import time

import numpy as np

STUDY_NAME = "synthetic-var-study"
# Truth of the synthetic study: final last-scale loss = (BETA_TRUE * N[billions])^ALPHA_TRUE.
ALPHA_TRUE, BETA_TRUE = -0.23, 2.0
DEPTHS = (6, 8, 10, 12, 16, 20, 24)
N_SCALES = 4
IMAGES_PER_STEP = 256
STEPS = 8
TOKENS_PER_IMAGE = 680
FINAL_EVAL_FACTOR = 0.99


def params_total_for(depth: int) -> int:
    # Roughly VAR's count: ~ 12 d w^2 + AdaLN, with width 64 d; only its monotone growth matters here.
    width = 64 * depth
    return int(18 * depth * width**2 + 4 * 4096 * width)


def _metric_batch(values: dict[str, float], step: int, timestamp: int):
    from mlflow.entities import Metric

    return [Metric(key, float(value), timestamp, step) for key, value in values.items()]


def build_synthetic_study(tracking_uri: str, artifact_location: str, study: str = STUDY_NAME, seed: int = 0) -> dict:
    """Writes a parent run and one child run per depth (plus a failed and a diverged trial) whose
    final losses follow the known law with 1% multiplicative noise. Returns the truth.

    artifact_location: a file URI; without it MLflow would put artifacts under the current folder."""
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    generator = np.random.default_rng(seed)
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(study, artifact_location=artifact_location)
    parent = client.create_run(experiment_id, run_name=study, tags={"varscale.kind": "study", "varscale.study": study})
    finals = {}
    statuses = {depth: "completed" for depth in DEPTHS} | {4: "failed", 30: "diverged"}
    clock = int(time.time() * 1000)
    for depth, status in sorted(statuses.items()):
        key = f"d{depth}-b1e12-s0"
        params_total = params_total_for(depth)
        flops_per_image = 6 * params_total * TOKENS_PER_IMAGE * 11 // 10  # attention adds ~10% here
        run = client.create_run(
            experiment_id,
            run_name=key,
            tags={
                "varscale.kind": "trial",
                "varscale.study": study,
                "varscale.trial_key": key,
                "varscale.status": status,
                "mlflow.parentRunId": parent.info.run_id,
            },
        )
        params = {
            "depth": depth,
            "width": 64 * depth,
            "heads": depth,
            "params_total": params_total,
            "params_per_token": int(params_total * 0.8),
            "flops_per_image": flops_per_image,
            "flops_per_image_6n": 6 * params_total * TOKENS_PER_IMAGE,
            "budget_kind": "images",
            "budget_value": float(IMAGES_PER_STEP * STEPS),
            "steps": STEPS,
            "batch_size": IMAGES_PER_STEP,
            "lr": 1e-4,
            "base_lr": 1e-4,
            "seed": 0,
            "schedule": "cosine",
            "git_revision": "test",
        }
        final_last = (BETA_TRUE * params_total / 1e9) ** ALPHA_TRUE * np.exp(generator.normal(0, 0.01))
        finals[key] = final_last
        metrics = []
        logged_steps = STEPS if status != "failed" else STEPS // 2
        for step in range(1, logged_steps + 1):
            images = step * IMAGES_PER_STEP
            # The curve falls from 3x its final value; only its end point is the law's.
            loss_last = final_last * (1 + 2 * (1 - step / STEPS) ** 2)
            values = {
                "images": images,
                "tokens": images * TOKENS_PER_IMAGE,
                "flops": images * flops_per_image,
                "train_loss": loss_last * 1.05,
                "lr": 1e-4,
                "test_loss_last": loss_last,
                "test_loss_avg": loss_last * 0.9,
                "test_error_last": 0.9 * loss_last**0.05,
                "test_error_avg": 0.8 * loss_last**0.05,
            }
            values |= {f"test_loss_scale_{scale:02d}": loss_last * (0.5 + 0.2 * scale) for scale in range(N_SCALES)}
            metrics += _metric_batch(values, step, clock + step)
        if depth == DEPTHS[0]:
            # A crash after logging step 3 and a resume re-logs it later: readers keep the last value.
            metrics += _metric_batch({"test_loss_last": 123.0}, 3, clock)
        if status == "completed":
            metrics += _metric_batch(
                {
                    "final_test_loss_last": final_last,
                    "final_test_loss_avg": final_last * 0.9,
                    "final_test_error_last": 0.9 * final_last**0.05,
                    "final_test_error_avg": 0.8 * final_last**0.05,
                    "final_images": STEPS * IMAGES_PER_STEP,
                    "final_tokens": STEPS * IMAGES_PER_STEP * TOKENS_PER_IMAGE,
                    "final_flops": STEPS * IMAGES_PER_STEP * flops_per_image,
                }
                # The final eval (on the whole test split) differs from the last periodic one.
                | {
                    f"final_test_loss_scale_{scale:02d}": FINAL_EVAL_FACTOR * final_last * (0.5 + 0.2 * scale)
                    for scale in range(N_SCALES)
                },
                STEPS,
                clock + 100,
            )
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(name, str(value)) for name, value in params.items()],
            tags=[RunTag("varscale.status", status)],
        )
        client.set_terminated(run.info.run_id, "FAILED" if status == "failed" else "FINISHED")
    client.set_terminated(parent.info.run_id, "FINISHED")
    return {
        "study": study,
        "tracking_uri": tracking_uri,
        "finals": finals,
        "alpha": ALPHA_TRUE,
        "beta": BETA_TRUE,
        "parent_run_id": parent.info.run_id,
    }

"""A StudySpec written back as plain YAML data, every default filled in.

It is saved as `<storage>/study.resolved.yaml` and as an artifact of the MLflow parent run, so a
result always carries the exact study that produced it, and `load_study` on the saved file
gives back an equal spec.
"""

from __future__ import annotations

from typing import Any

import yaml

from orchestration.study_spec import StudySpec
from orchestration.tracking import redact_uri


def spec_to_mapping(spec: StudySpec) -> dict[str, Any]:
    model, recipe, resources, tokenizer = spec.model, spec.recipe, spec.resources, spec.tokenizer
    budgets_values = (list(spec.budgets.grid) if spec.budgets.grid is not None
                      else {depth: list(values) for depth, values in spec.budgets.per_depth.items()})
    tokenizer_mapping = {"kind": tokenizer.kind, "preset": tokenizer.preset, "overrides": dict(tokenizer.overrides),
                         "training": dict(tokenizer.training), "vqvae_path": tokenizer.vqvae_path,
                         "encode_batch_size": tokenizer.encode_batch_size}
    return {
        "name": spec.name,
        "storage": spec.storage,
        # Saved to disk and MLflow: never with credentials (they belong in MLFLOW_TRACKING_* env vars).
        "tracking_uri": redact_uri(spec.tracking_uri),
        "data": spec.data.to_dict(),
        "tokenizer": tokenizer_mapping,
        "model": {
            "depths": list(model.depths), "width_per_depth": model.width_per_depth,
            "head_dim": model.head_dim, "patch_nums": list(model.patch_nums),
            "num_classes": model.num_classes, "overrides": dict(model.overrides),
        },
        "budgets": {"kind": spec.budgets.kind, "values": budgets_values},
        "seeds": list(spec.seeds),
        "recipe": {
            "batch_size": recipe.batch_size.to_yaml(), "base_lr": recipe.base_lr.to_yaml(),
"warmup_fraction": recipe.warmup_fraction,
            "schedule": recipe.schedule, "final_lr_fraction": recipe.final_lr_fraction.to_yaml(),
            "weight_decay": recipe.weight_decay, "grad_clip": recipe.grad_clip,
        },
        "trial": dict(spec.trial_settings),
        "resources": {
            "cpus": resources.cpus.to_yaml(), "gpus": resources.gpus.to_yaml(),
            "custom": {name: rule.to_yaml() for name, rule in resources.custom.items()},
            "device": resources.device, "max_retries": resources.max_retries,
            "flops_per_second": resources.flops_per_second,
            "cpu_flops_per_second": resources.cpu_flops_per_second,
        },
    }


def spec_to_yaml(spec: StudySpec) -> str:
    return yaml.safe_dump(spec.source or spec_to_mapping(spec), sort_keys=False)

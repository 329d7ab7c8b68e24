"""AdamW with the paper's decay groups.

Weight decay (0.05) applies to matrices only. Not decayed, as in the VAR release: every 1-D
parameter (LayerNorm-free AdaLN biases, q/v biases), every bias, the learned positions
(`pos_1LC`, `pos_start`), the scale embedding (`lvl_embed`, an Embedding, hence a name rule)
and the per-head attention temperature (4-D, hence a name rule too). The rules key on name
fragments so that they survive wrapping (DDP adds a `module.` prefix).
"""

from __future__ import annotations

import torch

from var_model.errors import ConfigError

NO_DECAY_NAME_FRAGMENTS = ("pos_1LC", "pos_start", "lvl_embed", "scale_mul", "attention_scale")


def decays(name: str, parameter: torch.Tensor) -> bool:
    """Whether weight decay applies to this parameter."""
    if parameter.ndim <= 1 or name.endswith(".bias") or name == "bias":
        return False
    return not any(fragment in name for fragment in NO_DECAY_NAME_FRAGMENTS)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Two AdamW groups (decayed, not decayed) of the trainable parameters, each with the
    names of its members (kept for tests and for logging, ignored by torch)."""
    decayed: list[torch.Tensor] = []
    decayed_names: list[str] = []
    kept: list[torch.Tensor] = []
    kept_names: list[str] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if decays(name, parameter):
            decayed.append(parameter)
            decayed_names.append(name)
        else:
            kept.append(parameter)
            kept_names.append(name)
    if not decayed and not kept:
        raise ConfigError("the model has no trainable parameters")
    return [
        {"params": decayed, "weight_decay": weight_decay, "names": decayed_names},
        {"params": kept, "weight_decay": 0.0, "names": kept_names},
    ]


def build_optimizer(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.95),
    fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW(betas (0.9, 0.95), eps 1e-8) over `parameter_groups`.

    `fused`: torch's fused kernel, on CUDA and (torch >= 2.4) CPU. Without it torch picks
    foreach on CUDA and the per-parameter loop on CPU. On CPU the fused update is bit-identical
    run to run and equals the loop's to float32 rounding (tests/model/test_bench.py)."""
    groups = parameter_groups(model, weight_decay)
    options: dict[str, object] = {"lr": lr, "betas": betas, "eps": 1e-8}
    if fused:
        options["fused"] = True
    return torch.optim.AdamW(groups, **options)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

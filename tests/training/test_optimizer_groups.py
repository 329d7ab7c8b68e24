import torch

from var_model import VAR, VARConfig
from var_model.training.optimizer import build_optimizer, parameter_groups


def test_no_decay_on_biases_vectors_positions_level_embedding_and_attention_scale():
    var = VAR(VARConfig.debug())
    decayed, kept = parameter_groups(var, weight_decay=0.05)
    assert decayed["weight_decay"] == 0.05 and kept["weight_decay"] == 0.0
    for name in (
        "pos_1LC",
        "pos_start",
        "lvl_embed.weight",
        "word_embed.bias",
        "blocks.0.attn.scale_mul_1H11",
        "blocks.0.attn.q_bias",
    ):
        assert name in kept["names"], name
    for name in (
        "word_embed.weight",
        "class_emb.weight",
        "blocks.0.attn.mat_qkv.weight",
        "blocks.0.ffn.fc1.weight",
        "head.weight",
    ):
        assert name in decayed["names"], name
    counted = sum(p.numel() for group in (decayed, kept) for p in group["params"])
    assert counted == sum(p.numel() for p in var.parameters())


def test_optimizer_matches_torch_adamw_with_the_same_groups():
    torch.manual_seed(0)
    var = VAR(VARConfig.debug())
    reference = VAR(VARConfig.debug())
    reference.load_state_dict(var.state_dict())
    ours = build_optimizer(var, lr=1e-3)
    groups = parameter_groups(reference, 0.05)
    theirs = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k != "names"} for g in groups], lr=1e-3, betas=(0.9, 0.95)
    )
    for model in (var, reference):
        sum(p.square().sum() for p in model.parameters()).backward()
    ours.step()
    theirs.step()
    for (name, a), b in zip(var.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b), name

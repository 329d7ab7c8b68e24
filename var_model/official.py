"""Read and write checkpoints in the released format (`var_d16.pth`, `vae_ch160v4096z32.pth`).

Our modules use the released key names, so loading is a strict key-by-key check plus the
inference of sizes from shapes. Checkpoints are untrusted input: they are read with
`torch.load(weights_only=True)`, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import nn

from var_model.config import PATCH_NUMS_256, VARConfig, VQVAEConfig, sequence_length
from var_model.errors import CheckpointError
from var_model.files import atomic_write
from var_model.var import VAR, block_causal_bias, scale_ids
from var_model.vqvae import VQVAE

StateDict = Mapping[str, torch.Tensor]


def read_state_dict(source, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a path (weights_only load) or a mapping of name -> tensor."""
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise CheckpointError(f"{what} checkpoint {os.fspath(source)!r} does not exist")
        try:
            source = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as error:  # a corrupt file or one that needs unpickling of code
            raise CheckpointError(
                f"cannot read {what} checkpoint {os.fspath(source)!r} as plain tensors (weights_only=True): {error}"
            ) from error
    if not isinstance(source, Mapping):
        raise CheckpointError(f"{what} checkpoint must be a state dict (name -> tensor); got {type(source).__name__}")
    bad = [key for key, value in source.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{what} checkpoint holds non-tensor entries, e.g. {bad[:3]}; expected a flat state dict as released"
        )
    return dict(source)


def _need(state: StateDict, key: str, what: str, purpose: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{what} checkpoint is missing key {key!r} (needed to infer {purpose})")
    return state[key]


def _count_indexed(state: StateDict, pattern: str) -> int:
    """Number of distinct i in keys matching pattern (a regex with one group for i)."""
    found = {int(m.group(1)) for key in state if (m := re.match(pattern, key))}
    return max(found) + 1 if found else 0


def infer_vqvae_config(state: StateDict, patch_nums=PATCH_NUMS_256, **overrides) -> VQVAEConfig:
    what = "VQVAE"
    conv_in = _need(state, "encoder.conv_in.weight", what, "ch and input channels")
    channels, in_channels = int(conv_in.shape[0]), int(conv_in.shape[1])
    codebook_size, latent_channels = (
        int(s) for s in _need(state, "quantize.embedding.weight", what, "V and Cvae").shape
    )
    levels = _count_indexed(state, r"encoder\.down\.(\d+)\.")
    if levels == 0:
        raise CheckpointError(f"{what} checkpoint has no 'encoder.down.<i>.' keys (needed to infer ch_mult)")
    multipliers = tuple(
        int(_need(state, f"encoder.down.{i}.block.0.conv2.weight", what, "ch_mult").shape[0]) // channels
        for i in range(levels)
    )
    num_res_blocks = _count_indexed(state, r"encoder\.down\.0\.block\.(\d+)\.")
    if _count_indexed(state, r"quantize\.quant_resi\.qresi_ls\.(\d+)\."):
        share = _count_indexed(state, r"quantize\.quant_resi\.qresi_ls\.(\d+)\.")
    elif "quantize.quant_resi.qresi.weight" in state:
        share = 1
    else:
        share = 0
    fields = dict(
        image_size=patch_nums[-1] * 2 ** (levels - 1),
        channels=channels,
        channel_multipliers=multipliers,
        num_res_blocks=num_res_blocks,
        codebook_size=codebook_size,
        latent_channels=latent_channels,
        patch_nums=tuple(patch_nums),
        share_quant_resi=share,
        in_channels=in_channels,
        use_attention=any(k.startswith(f"encoder.down.{levels - 1}.attn.") for k in state),
        use_mid_attention="encoder.mid.attn_1.norm.weight" in state,
    )
    fields.update(overrides)
    return VQVAEConfig(**fields)


def infer_var_config(state: StateDict, patch_nums=PATCH_NUMS_256, **overrides) -> VARConfig:
    what = "VAR"
    num_classes_plus_null, width = (int(s) for s in _need(state, "class_emb.weight", what, "width and classes").shape)
    depth = _count_indexed(state, r"blocks\.(\d+)\.")
    if depth == 0:
        raise CheckpointError(f"{what} checkpoint has no 'blocks.<i>.' keys (needed to infer depth)")
    codebook_size = int(_need(state, "head.weight", what, "V").shape[0])
    latent_channels = int(_need(state, "word_embed.weight", what, "Cvae").shape[1])
    hidden = int(_need(state, "blocks.0.ffn.fc1.weight", what, "the MLP ratio").shape[0])
    attn_l2_norm = "blocks.0.attn.scale_mul_1H11" in state
    # heads are only visible through the per-head attention scales; else head dim 64
    num_heads = int(state["blocks.0.attn.scale_mul_1H11"].shape[1]) if attn_l2_norm else max(width // 64, 1)
    pos = _need(state, "pos_1LC", what, "the sequence length")
    length = sequence_length(patch_nums)
    if pos.shape[1] != length:
        raise CheckpointError(
            f"VAR checkpoint key 'pos_1LC' has shape {tuple(pos.shape)}: {pos.shape[1]} tokens, "
            f"but patch_nums {tuple(patch_nums)} give L = {length}; pass the matching patch_nums"
        )
    fields = dict(
        depth=depth,
        width=width,
        num_heads=num_heads,
        num_classes=num_classes_plus_null - 1,
        codebook_size=codebook_size,
        latent_channels=latent_channels,
        patch_nums=tuple(patch_nums),
        mlp_ratio=hidden / width,
        attn_l2_norm=attn_l2_norm,
        shared_adaln="shared_ada_lin.1.weight" in state,
    )
    fields.update(overrides)
    return VARConfig(**fields)


def check_state_dict(model: nn.Module, state: StateDict, what: str) -> None:
    """Strict: every key of the model present with the same shape, and no extra keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k}: checkpoint shape {tuple(state[k].shape)} vs model shape {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:10]}" + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""))
    if unexpected:
        problems.append(
            f"unexpected keys {unexpected[:10]}" + (f" (+{len(unexpected) - 10} more)" if len(unexpected) > 10 else "")
        )
    if mis_shaped:
        problems.append("mis-shaped: " + "; ".join(mis_shaped[:10]))
    if problems:
        raise CheckpointError(f"{what} checkpoint does not match the model: " + " | ".join(problems))


def _load_into(model: nn.Module, state: StateDict, what: str, copy: bool) -> None:
    check_state_dict(model, state, what)
    # float tensors in float32 (a checkpoint saved in half precision trains and samples in fp32
    # here); tensors handed in as a dict are copied so the new modules never share storage
    # with the caller's tensors (or with another model's parameters)
    converted = {}
    for key, value in state.items():
        value = value.float() if value.is_floating_point() else value.long() if key == "lvl_1L" else value
        converted[key] = value.clone() if copy and not value.is_meta else value
    model.load_state_dict(converted, strict=True, assign=True)


def load_official(
    var_ckpt,
    vae_ckpt,
    patch_nums=PATCH_NUMS_256,
    device: str | torch.device = "cpu",
    vqvae_overrides: dict | None = None,
    var_overrides: dict | None = None,
) -> tuple[VQVAE, VAR]:
    """Build (vqvae, var) from released-format state dicts (paths or dicts).

    Sizes (depth, width, heads, V, Cvae, ch, ch_mult, classes, phi sharing) are inferred from
    the shapes; every key, buffers included, must be present with the right shape. The
    modules are built on the meta device and take the checkpoint's tensors (no wasted init).
    """
    var_state = read_state_dict(var_ckpt, "VAR")
    var_config = infer_var_config(var_state, patch_nums, **(var_overrides or {}))
    vqvae = load_official_vqvae(vae_ckpt, patch_nums, device=device, **(vqvae_overrides or {}))
    with torch.device("meta"):
        var = VAR(var_config)
    _load_into(var, var_state, "VAR", copy=isinstance(var_ckpt, Mapping))
    lvl_1L, mask = var.lvl_1L, var.attn_bias_for_masking
    if not lvl_1L.is_meta and not torch.equal(lvl_1L.cpu(), scale_ids(var_config.patch_nums).view(1, -1)):
        raise CheckpointError(f"VAR checkpoint buffer 'lvl_1L' does not match patch_nums {var_config.patch_nums}")
    # the loaded mask is what attention uses: a wrong one would silently leak future scales
    if not mask.is_meta and not torch.equal(mask.cpu(), block_causal_bias(var_config.patch_nums)):
        raise CheckpointError(
            f"VAR checkpoint buffer 'attn_bias_for_masking' is not the block-causal mask of "
            f"patch_nums {var_config.patch_nums} (0 where scale(i) >= scale(j), else -inf)"
        )
    vqvae, var = vqvae.to(device), var.to(device)
    var.set_vqvae(vqvae)
    return vqvae.eval(), var.eval()


def load_official_vqvae(vae_ckpt, patch_nums=PATCH_NUMS_256, device: str | torch.device = "cpu", **overrides) -> VQVAE:
    """The released VQVAE alone (for the tokenizer stage), strict as `load_official`."""
    vae_state = read_state_dict(vae_ckpt, "VQVAE")
    with torch.device("meta"):
        vqvae = VQVAE(infer_vqvae_config(vae_state, patch_nums, **overrides))
    _load_into(vqvae, vae_state, "VQVAE", copy=isinstance(vae_ckpt, Mapping))
    return vqvae.to(device).eval()


def official_state_dicts(vqvae: VQVAE, var: VAR) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(VAR state dict, VQVAE state dict) in the released format (CPU tensors)."""

    def plain(module: nn.Module) -> dict[str, torch.Tensor]:
        return {
            k: v.detach().to("cpu").contiguous() if not v.is_meta else v.detach()
            for k, v in module.state_dict().items()
        }

    return plain(var), plain(vqvae)


def save_official(vqvae: VQVAE, var: VAR, var_path, vae_path) -> None:
    """Write the two checkpoints so that the reference code (and `load_official`) reads them."""
    var_state, vae_state = official_state_dicts(vqvae, var)
    for state, path in ((var_state, var_path), (vae_state, vae_path)):
        # atomic (var_model/files.py): a crash never leaves a half-written checkpoint
        atomic_write(path, lambda handle, state=state: torch.save(state, handle))

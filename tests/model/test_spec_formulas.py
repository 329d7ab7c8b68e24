"""The model against a plain re-statement of docs/MODEL.md, fact by fact.

Each reference below is written from the spec's formulas with explicit tensor maths (no
module of ours is called inside it), then compared with the model on random weights, so a
wrong chunk order, norm, scale, bias, mask or resize shows up as a numeric difference.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from var_model import VAR, VQVAE, VARConfig, VQVAEConfig, generation
from var_model.var import loss_per_token


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Give every parameter non-trivial values (init zeros would hide a missing bias)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine, eps 1e-6."""
    mean = x.mean(-1, keepdim=True)
    variance = (x - mean).square().mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + 1e-6)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _reference_logits(var: VAR, label_B: torch.Tensor, x_BLC: torch.Tensor) -> torch.Tensor:
    """docs/MODEL.md §2 written out: sos, embeddings, AdaLN blocks, block-causal attention, head."""
    cfg = var.config
    C, H = cfg.width, cfg.num_heads
    B = label_B.shape[0]
    cond_BC = var.class_emb.weight[label_B]
    sos_B1C = cond_BC[:, None, :] + var.pos_start
    h_BLC = torch.cat((sos_B1C, x_BLC @ var.word_embed.weight.T + var.word_embed.bias), dim=1)
    ids_L = torch.tensor([k for k, pn in enumerate(cfg.patch_nums) for _ in range(pn * pn)])
    h_BLC = h_BLC + var.lvl_embed.weight[ids_L] + var.pos_1LC
    allowed_LL = ids_L[:, None] >= ids_L[None, :]
    silu_cond = cond_BC * torch.sigmoid(cond_BC)
    if cfg.shared_adaln:
        shared = silu_cond @ var.shared_ada_lin[1].weight.T + var.shared_ada_lin[1].bias
    for block in var.blocks:
        if cfg.shared_adaln:
            modulation = shared.view(B, 6, C) + block.ada_gss.view(1, 6, C)
        else:
            modulation = (silu_cond @ block.ada_lin[1].weight.T + block.ada_lin[1].bias).view(B, 6, C)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = (modulation[:, i, None, :] for i in range(6))
        a = _layer_norm(h_BLC) * (1 + scale1) + shift1
        w_q, w_k, w_v = block.attn.mat_qkv.weight.chunk(3, dim=0)
        q = (a @ w_q.T + block.attn.q_bias).view(B, -1, H, C // H).transpose(1, 2)
        k = (a @ w_k.T).view(B, -1, H, C // H).transpose(1, 2)  # k bias is zero
        v = (a @ w_v.T + block.attn.v_bias).view(B, -1, H, C // H).transpose(1, 2)
        if cfg.attn_l2_norm:
            s_h = block.attn.scale_mul_1H11.view(1, H, 1, 1)
            q = q / q.norm(dim=-1, keepdim=True) * torch.exp(torch.clamp(s_h, max=math.log(100)))
            k = k / k.norm(dim=-1, keepdim=True)
            scores = q @ k.transpose(-1, -2)  # softmax scale 1
        else:
            scores = q @ k.transpose(-1, -2) * (0.25 / math.sqrt(C // H))
        scores = scores.masked_fill(~allowed_LL, -math.inf)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, -1, C)
        h_BLC = h_BLC + (out @ block.attn.proj.weight.T + block.attn.proj.bias) * gamma1
        f = _layer_norm(h_BLC) * (1 + scale2) + shift2
        f = _gelu_tanh(f @ block.ffn.fc1.weight.T + block.ffn.fc1.bias)
        h_BLC = h_BLC + (f @ block.ffn.fc2.weight.T + block.ffn.fc2.bias) * gamma2
    scale, shift = (silu_cond @ var.head_nm.ada_lin[1].weight.T + var.head_nm.ada_lin[1].bias).view(B, 2, C).unbind(1)
    h_BLC = _layer_norm(h_BLC) * (1 + scale[:, None]) + shift[:, None]
    return h_BLC @ var.head.weight.T + var.head.bias


@pytest.mark.parametrize("fields", [dict(), dict(shared_adaln=True), dict(attn_l2_norm=False)])
def test_forward_equals_the_spec_written_out(fields):
    torch.manual_seed(0)
    var = VAR(VARConfig.debug(**fields)).eval()
    _randomise(var, seed=1)
    if var.config.attn_l2_norm:
        with torch.no_grad():  # one head above ln(100) exercises the clamp
            var.blocks[0].attn.scale_mul_1H11[0, 0] = math.log(100) + 1.0
    generator = torch.Generator().manual_seed(2)
    label_B = torch.tensor([0, 3, 10])  # 10 is the null class
    x_BLC = torch.randn(3, var.L - 1, var.config.latent_channels, generator=generator)
    with torch.no_grad():
        ours = var(label_B, x_BLC)
        reference = _reference_logits(var, label_B, x_BLC)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, atol=2e-4, rtol=2e-4)


def test_class_dropout_turns_ten_percent_of_labels_into_the_null_class():
    torch.manual_seed(0)
    var = VAR(VARConfig.debug(drop_path_rate=0.0))
    _randomise(var, seed=3)
    label_B = torch.arange(400) % 10
    x_BLC = torch.randn(400, var.L - 1, 8)
    with torch.no_grad():
        var.eval()
        conditional = var(label_B, x_BLC)
        unconditional = var(torch.full_like(label_B, 10), x_BLC)
        var.train()
        trained = var(label_B, x_BLC)
    as_null = (trained - unconditional).abs().amax(dim=(1, 2)) < 1e-5
    as_label = (trained - conditional).abs().amax(dim=(1, 2)) < 1e-5
    assert bool((as_null ^ as_label).all())  # each sample is exactly one of the two
    assert 20 <= int(as_null.sum()) <= 65  # Binomial(400, 0.1): mean 40, sd 6


@torch.no_grad()
def test_initialisation_follows_the_spec():
    torch.manual_seed(0)
    depth, C = 4, 256
    var = VAR(VARConfig(depth=depth, width=C, num_heads=4, num_classes=10, codebook_size=512))
    std = math.sqrt(1 / (3 * C))

    def assert_std(tensor: torch.Tensor, expected: float, name: str) -> None:
        measured = float(tensor.detach().float().std())
        assert abs(measured / expected - 1) < 0.08, f"{name}: std {measured:.3g}, spec {expected:.3g}"

    for name in ("word_embed.weight", "class_emb.weight", "lvl_embed.weight", "pos_1LC"):
        assert_std(dict(var.named_parameters())[name], std, name)
    assert_std(var.head.weight, std * 0.02, "head.weight")
    assert_std(var.head_nm.ada_lin[1].weight, std * 0.5, "head_nm.ada_lin.1.weight")
    assert float(var.head.bias.abs().max()) == 0 and float(var.head_nm.ada_lin[1].bias.abs().max()) == 0
    for block in var.blocks:
        assert_std(block.attn.mat_qkv.weight, std, "mat_qkv")
        assert_std(block.ffn.fc1.weight, std, "fc1")
        assert_std(block.attn.proj.weight, std / math.sqrt(2 * depth), "proj")
        assert_std(block.ffn.fc2.weight, std / math.sqrt(2 * depth), "fc2")
        ada = block.ada_lin[1].weight
        assert_std(ada[: 2 * C], std * 1e-3, "ada_lin gamma rows")  # init_adaln_gamma 1e-3 at depth 4
        assert_std(ada[2 * C :], std * 0.5, "ada_lin scale/shift rows")
        for bias in (
            block.ada_lin[1].bias,
            block.attn.q_bias,
            block.attn.v_bias,
            block.attn.zero_k_bias,
            block.attn.proj.bias,
            block.ffn.fc1.bias,
            block.ffn.fc2.bias,
        ):
            assert float(bias.abs().max()) == 0
        torch.testing.assert_close(block.attn.scale_mul_1H11, torch.full((1, 4, 1, 1), math.log(4.0)))
        assert block.attn.mat_qkv.bias is None and "zero_k_bias" in dict(block.attn.named_buffers())
        assert not block.ln_wo_grad.elementwise_affine and block.ln_wo_grad.eps == 1e-6
        assert block.ffn.act.approximate == "tanh"
    assert not var.head_nm.ln_wo_grad.elementwise_affine and var.head_nm.ln_wo_grad.eps == 1e-6
    top = 0.1 * depth / 24
    rates = [block.drop_path.drop_prob for block in var.blocks]
    assert rates == pytest.approx([top * i / (depth - 1) for i in range(depth)])


# ---------------------------------------------------------------- tokenizer (docs/MODEL.md §1)
# nearest tick of linspace(1/12, 11/12, 4) to k/9 (scales 2 and 7 are ties, resolved as released)
SPEC_PHI_MAP_10_SCALES = [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]


def _reference_phi(quantizer, k: int, h: torch.Tensor) -> torch.Tensor:
    """phi_k(h) = 0.5 h + 0.5 conv3x3(h), conv chosen by the nearest tick to k/(K-1)."""
    conv = quantizer.quant_resi.qresi_ls[SPEC_PHI_MAP_10_SCALES[k]]
    return 0.5 * h + 0.5 * F.conv2d(h, conv.weight, conv.bias, padding=1)


def _reference_encode(quantizer, f: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """Residual quantization, the f_hat it builds and the teacher-forcing inputs (spec §1)."""
    B, C, side, _ = f.shape
    patch_nums, codebook = quantizer.patch_nums, quantizer.embedding.weight
    residual, f_hat, indices, partial_sums = f.clone(), torch.zeros_like(f), [], []
    for k, pn in enumerate(patch_nums):
        last = k == len(patch_nums) - 1
        z = residual if last else F.adaptive_avg_pool2d(residual, pn)  # area downsample
        z_NC = z.permute(0, 2, 3, 1).reshape(-1, C)
        idx = torch.cdist(z_NC.double(), codebook.double()).argmin(1).view(B, pn * pn)
        h = codebook[idx].transpose(1, 2).reshape(B, C, pn, pn)
        if not last:
            h = F.interpolate(h, size=(side, side), mode="bicubic")
        h = _reference_phi(quantizer, k, h)
        indices.append(idx)
        f_hat, residual = f_hat + h, residual - h
        partial_sums.append(f_hat)
    return indices, f_hat, partial_sums


def _spec_quantizer(seed: int):
    from var_model.vqvae import MultiScaleQuantizer

    torch.manual_seed(seed)
    # 10 scales to 16x16 as released, tiny channels and codebook
    quantizer = MultiScaleQuantizer(VQVAEConfig(image_size=256, channels=32, codebook_size=48, latent_channels=4))
    _randomise(quantizer, seed)
    return quantizer


def test_residual_quantization_and_teacher_forcing_follow_the_spec():
    quantizer = _spec_quantizer(seed=4)
    f = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected_indices, expected_f_hat, partial_sums = _reference_encode(quantizer, f)
        indices = quantizer.latent_to_indices(f)
        assert all(torch.equal(a, b) for a, b in zip(indices, expected_indices, strict=True))
        torch.testing.assert_close(quantizer.indices_to_latent(indices), expected_f_hat, atol=1e-5, rtol=1e-5)
        expected_input = torch.cat(
            [
                F.adaptive_avg_pool2d(partial_sums[k], pn).flatten(2).transpose(1, 2)
                for k, pn in enumerate(quantizer.patch_nums[1:])
            ],
            dim=1,
        )
        torch.testing.assert_close(quantizer.teacher_forcing_input(indices), expected_input, atol=1e-5, rtol=1e-5)


def test_quantizer_loss_is_the_spec_formula_with_straight_through():
    quantizer = _spec_quantizer(seed=6).train()
    f = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(7), requires_grad=True)
    f_hat_st, loss, _ = quantizer(f)
    with torch.no_grad():
        _, _, partial_sums = _reference_encode(quantizer, f.detach())
        expected = sum(0.25 * F.mse_loss(s, f) + F.mse_loss(s, f) for s in partial_sums) / len(partial_sums)
    torch.testing.assert_close(loss.detach(), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(f_hat_st.detach(), partial_sums[-1], atol=1e-5, rtol=1e-5)
    # straight-through: d f_hat / d f is the identity; the commitment term adds 2*beta*(f - f_hat)/(N*K)
    (f_hat_st.sum() + loss).backward()
    commitment = 2 * 0.25 * sum(f.detach() - s for s in partial_sums) / (f.numel() * len(partial_sums))
    torch.testing.assert_close(f.grad, 1 + commitment, atol=1e-6, rtol=1e-5)


def test_conv_net_structure_follows_ldm_vq_f16():
    with torch.device("meta"):
        vqvae = VQVAE(VQVAEConfig())
    norms = [m for m in vqvae.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_groups == 32 and m.eps == 1e-6 for m in norms)
    assert [len(stage.block) for stage in vqvae.encoder.down] == [2] * 5
    assert [len(stage.block) for stage in vqvae.decoder.up] == [3] * 5
    assert [len(stage.attn) for stage in vqvae.encoder.down] == [0, 0, 0, 0, 2]
    assert [len(stage.attn) for stage in vqvae.decoder.up] == [0, 0, 0, 0, 3]
    assert type(vqvae.encoder.mid.attn_1).__name__ == "AttnBlock"
    for conv in (vqvae.quant_conv, vqvae.post_quant_conv):
        assert conv.weight.shape == (32, 32, 3, 3)


def test_resamplers_and_decoder_clamp():
    from var_model.vqvae.convnets import Downsample, Upsample

    torch.manual_seed(0)
    x = torch.randn(1, 32, 6, 6)
    down, up = Downsample(32), Upsample(32)
    with torch.no_grad():
        torch.testing.assert_close(
            down(x), F.conv2d(F.pad(x, (0, 1, 0, 1)), down.conv.weight, down.conv.bias, stride=2)
        )
        nearest = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        torch.testing.assert_close(up(x), F.conv2d(nearest, up.conv.weight, up.conv.bias, padding=1))
        vqvae = VQVAE(VQVAEConfig.debug())
        image = vqvae.latent_to_image(torch.randn(2, 8, 4, 4) * 100)
    assert float(image.abs().max()) <= 1.0


# ---------------------------------------------------------------- sampling (docs/MODEL.md §3)
def test_cfg_logits_are_the_ramped_mix_of_conditional_and_null(tiny_vqvae, monkeypatch):
    torch.manual_seed(0)
    var = VAR(VARConfig.debug(init_adaln_gamma=0.5, init_head=3.0), vqvae=tiny_vqvae)
    seen = []
    original = generation.sample_tokens

    def recording(logits_BlV, top_k, top_p, generator):
        seen.append(logits_BlV.clone())
        return original(logits_BlV, top_k, top_p, generator)

    monkeypatch.setattr(generation, "sample_tokens", recording)
    label_B, cfg = torch.tensor([2, 7]), 4.0
    _, tokens = var.generate(label_B, cfg=cfg, top_k=0, top_p=0, seed=0, return_indices=True)
    var.eval()
    with torch.no_grad():
        x_BLC = tiny_vqvae.teacher_forcing_input(tokens)
        conditional = var(label_B, x_BLC)
        null = var(torch.full_like(label_B, 10), x_BLC)
    K, start = len(var.patch_nums), 0
    for k, pn in enumerate(var.patch_nums):
        t = cfg * k / (K - 1)
        end = start + pn * pn
        expected = (1 + t) * conditional[:, start:end] - t * null[:, start:end]
        torch.testing.assert_close(seen[k], expected, atol=1e-4, rtol=1e-4)
        start = end


@pytest.mark.parametrize("fields", [dict(shared_adaln=True), dict(attn_l2_norm=False)])
def test_kv_cache_is_exact_for_the_other_variants(tiny_vqvae, tiny_images, fields):
    torch.manual_seed(0)
    var = VAR(VARConfig.debug(**fields), vqvae=tiny_vqvae).eval()
    _randomise(var, seed=10)
    indices = tiny_vqvae.encode_indices(tiny_images)
    labels = torch.tensor([1, 2, 3, 10])
    with torch.no_grad():
        teacher = var(labels, tiny_vqvae.teacher_forcing_input(indices))
    cached = generation.cached_teacher_forcing_logits(var, labels, indices)
    torch.testing.assert_close(torch.cat(cached, dim=1), teacher, atol=1e-4, rtol=1e-4)


def test_top_k_is_applied_before_top_p():
    # probabilities 0.4, 0.3, 0.2, 0.1: top-k 2 renormalises to 4/7, 3/7, and a 0.5 nucleus then
    # keeps only the first; nucleus-first would keep two tokens
    logits = torch.tensor([0.4, 0.3, 0.2, 0.1]).log().view(1, 1, 4)
    kept = torch.isfinite(generation.filter_top_k_top_p(logits, top_k=2, top_p=0.5)).view(-1)
    assert kept.tolist() == [True, False, False, False]


def test_sampling_is_seeded_by_a_private_generator(tiny_var):
    torch.manual_seed(123)
    first = tiny_var.generate([1, 2], seed=5, top_k=0, top_p=0)
    torch.manual_seed(456)  # the global RNG must not matter
    second = tiny_var.generate([1, 2], seed=5, top_k=0, top_p=0)
    assert torch.equal(first, second)


def test_keep_mask_is_resized_per_scale_with_threshold_half():
    keep = torch.zeros(32, 32)
    keep[:, :20] = 1.0  # 62.5% of the image: kept at 1x1; at 2x2 the right half holds 25%
    masks = generation.keep_masks_per_scale(keep, (1, 2, 4), batch_size=2)
    assert masks[0].tolist() == [[True]] * 2
    assert masks[1].tolist() == [[True, False, True, False]] * 2
    assert masks[2].view(2, 4, 4)[0, 0].tolist() == [True, True, True, False]  # column 2: 4/8 = 0.5


# ---------------------------------------------------------------- training-step performance
def test_training_step_inputs_and_forward_never_sync_with_the_host():
    """On the meta device any read of a value (.item(), bool(), int()) raises, the same reads
    that stall a GPU's launch queue every step; a d16-sized step on meta costs nothing."""
    with torch.device("meta"):
        vqvae = VQVAE(VQVAEConfig())
        var = VAR(VARConfig(depth=16), vqvae=vqvae).train()
        indices = [torch.zeros(2, pn * pn, dtype=torch.long) for pn in vqvae.patch_nums]
        x_BLC = vqvae.teacher_forcing_input(indices)
        logits_BLV = var(torch.zeros(2, dtype=torch.long), x_BLC)
        loss_per_token(logits_BLV, torch.cat(indices, dim=1)).mean().backward()
    assert logits_BLV.shape == (2, 680, 4096)


def test_loss_per_token_is_the_cross_entropy_of_every_token():
    generator = torch.Generator().manual_seed(0)
    logits_BLV = torch.randn(3, 21, 64, generator=generator)
    target_BL = torch.randint(0, 64, (3, 21), generator=generator)
    expected = -logits_BLV.log_softmax(-1).gather(-1, target_BL[..., None])[..., 0]
    torch.testing.assert_close(loss_per_token(logits_BLV, target_BL), expected)


def test_quantizer_runs_in_float32_under_autocast():
    """As released, residual quantization ignores autocast: a bf16 phi conv would change
    which codes the residuals pick and the loss."""
    quantizer = _spec_quantizer(seed=8).train()
    f = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(9))
    _, loss, usage = quantizer(f)
    indices = quantizer.latent_to_indices(f)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss_low, usage_low = quantizer(f)
        indices_low = quantizer.latent_to_indices(f)
        teacher_low = quantizer.teacher_forcing_input(indices)
        f_hat_from_bf16, _, _ = quantizer(f.bfloat16())  # a bf16 encoder output
    assert teacher_low.dtype == torch.float32 and f_hat_from_bf16.dtype == torch.float32
    torch.testing.assert_close(loss_low, loss)
    torch.testing.assert_close(usage_low, usage)
    torch.testing.assert_close(teacher_low, quantizer.teacher_forcing_input(indices))
    assert all(torch.equal(a, b) for a, b in zip(indices_low, indices, strict=True))


# ---------------------------------------------------------------- released checkpoints
def test_a_checkpoint_with_a_wrong_mask_buffer_is_refused(tiny_var, tiny_vqvae):
    from var_model import CheckpointError
    from var_model.official import load_official, official_state_dicts

    var_state, vae_state = official_state_dicts(tiny_vqvae, tiny_var)
    leaky = dict(var_state, attn_bias_for_masking=torch.zeros_like(var_state["attn_bias_for_masking"]))
    with pytest.raises(CheckpointError, match="attn_bias_for_masking"):
        load_official(leaky, vae_state, patch_nums=(1, 2, 4))
    _, var = load_official(var_state, vae_state, patch_nums=(1, 2, 4))
    assert torch.equal(var.attn_bias_for_masking, tiny_var.attn_bias_for_masking)


def test_generation_batch_mismatches_are_clear_errors(tiny_var, tiny_vqvae, tiny_images):
    from var_model import DataError

    with pytest.raises(DataError, match="got 2 labels but batch_size=3"):
        tiny_var.generate([1, 2], batch_size=3)
    reference = [idx[:2] for idx in tiny_vqvae.encode_indices(tiny_images)]
    with pytest.raises(DataError, match=r"batch sizes \[2\]; each must be 1 .* or 3"):
        tiny_var.generate([1, 2, 3], reference_indices=reference, keep_mask=torch.ones(32, 32))


def test_bf16_autocast_forward_and_backward_on_cpu():
    """The autocast path (mask cast once per forward, float32 embeddings and logits) on CPU."""
    torch.manual_seed(0)
    var = VAR(VARConfig.debug(init_adaln_gamma=0.5, init_head=1.0)).eval()
    label_B, x_BLC = torch.tensor([0, 5]), torch.randn(2, var.L - 1, 8)
    with torch.no_grad():
        reference = var(label_B, x_BLC)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = var(label_B, x_BLC)
    assert low.dtype == torch.float32
    assert float((low.detach() - reference).abs().max()) < 0.05 * float(reference.abs().max())
    low.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in var.parameters() if p.grad is not None)

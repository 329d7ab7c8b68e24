"""Evaluation's per-token losses and errors against cross-entropy written out."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from var_model.training.evaluation import token_losses


def test_token_losses_match_a_per_token_reference():
    torch.manual_seed(0)
    logits_BLV = torch.randn(3, 14, 11)
    target_BL = torch.randint(0, 11, (3, 14))
    loss_BL, error_BL = token_losses(logits_BLV, target_BL)
    reference_BL = -F.log_softmax(logits_BLV, dim=-1).gather(-1, target_BL.unsqueeze(-1)).squeeze(-1)
    assert loss_BL.shape == (3, 14)
    torch.testing.assert_close(loss_BL, reference_BL)
    assert torch.equal(error_BL, (logits_BLV.argmax(-1) != target_BL).float())

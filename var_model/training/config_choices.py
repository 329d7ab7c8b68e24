"""The values a `TrialConfig` field may take, and the divergence default.

They live below config.py so that both the dataclass and its checks (config_checks.py) read
them without importing each other; the study layer reads them to offer the same choices.
"""

from __future__ import annotations

from var_model.attention import ATTENTION_KERNELS

FROM_TOKEN_CACHE = ("codebook_size", "latent_channels", "patch_nums", "num_classes")
PRECISIONS = ("bf16", "fp16", "fp32")
# Execution choices: where and how fast a trial runs, never what it computes ("auto" is
# resolved against the device at build time, see training/setup.py).
ACTIVATION_CHECKPOINTING = ("none", "blocks")
SHARDINGS = ("ddp", "fsdp")
ATTENTION_CHOICES = ("auto", *ATTENTION_KERNELS)
TRIAL_ROLES = ("independent", "trunk", "branch")
# The default divergence bound, as a multiple of ln(codebook size). A uniform guess over the V
# codes costs ln V nats per token, and a freshly initialised VAR starts there; learning only
# brings the loss down. A train-loss window averaging 2 ln V means the right token got, on
# average, a probability below 1/V^2: confidently wrong, which only an unstable update does
# (a probe's lr-1000 trials sat at ~180x ln V and were reported completed). Twice, not just
# ln V: a healthy run's first window and its loss spikes may pass ln V for a moment.
DIVERGENCE_MULTIPLE_OF_UNIFORM_LOSS = 2.0
SHA256_HEX_DIGITS = 64

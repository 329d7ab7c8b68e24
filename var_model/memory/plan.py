"""Peak memory of one VAR training step per device, from the config alone: `training_memory`.

Counted, not fitted: every tensor autograd saves in this VAR's forward (blocks.py, var.py,
training/evaluation.token_losses), the parameter state of training/step.py's update, and the
transients of the backward. No term depends on depth except through the counts below.
Legend: B micro-batch, L tokens, N = B*L, C width, F ffn hidden, H heads, V codebook size,
Cvae latent channels, d depth, P parameters (counting.param_counts), P_block one block's,
P_root the rest. Bytes: f = 4 (float32); a = 2 for the matmul outputs under bf16/fp16
autocast on CUDA, else 4 (CPU trials run float32). Decimal units: 1 GB = 1e9 bytes.

weights           f P / shards (fp32 master weights, also under autocast) + buffers f L^2 + 8L
                  (block-causal mask, scale ids). Autocast: + a (P - embeddings), the cached
                  cast of every matmul weight but word_embed (which runs in fp32), saved by
                  each linear for its backward and so never sharded; + a L^2, the mask cast.
                  FSDP2 (fully_shard per block, then the root; no MixedPrecisionPolicy):
                  + f P_root (the root stays gathered from forward to backward) + 2 f P_block
                  (the block in use and the one prefetched).
gradients         f P / shards when live (see the moments); + f P for DDP's buckets (its
                  default gradient_as_bucket_view=False keeps a flat copy all run long);
                  + f P_block under FSDP (one block unsharded before its reduce-scatter).
optimizer_states  AdamW's exp_avg and exp_avg_sq: 2 f P / shards, + a 4-byte step per tensor.
activations       what autograd saves, per block (no checkpointing):
                    f (4N + 2NC)   LN1/LN2 mean and rstd; both LN outputs (saved by the
                                   (1 + scale) muls)
                    a 2NC          mat_qkv and fc1 inputs (autocast's cast copies)
                    a 3NC          qkv (q, k norms and v read views of it)
                    f (4NH + NC)   |q|, |k|, their clamps; q/|q| (saved by the temperature mul)
                    f 2NC          autocast only: the fp32 copies of q, k the norm is cast to
                    a 2NC          q, k as attention takes them
                    a NC + f NH    attention output and logsumexp: SDPA's memory-efficient
                                   kernel on CUDA (an additive mask keeps flash out), its fused
                                   kernel on CPU, and FlexAttention all hold no L x L; the math
                                   fallback ("math") adds the softmax, (f + a) B H L^2 under
                                   autocast, f B H L^2 in fp32; "scalewise" (one unmasked
                                   SDPA per scale) also keeps each scale's output, a NC, beside
                                   their concatenation
                    a (2NC + 2NF)  proj and fc2 outputs (saved by the gamma muls); fc1 output
                                   (saved by GELU) and GELU output (saved by fc2)
                    f 2NC          the residual after attention (saved by LN2), block output
                    a 9BC + f B    AdaLN: SiLU output, six modulation rows, two (1 + scale)
                                   rows; drop-path keep masks
                  With F = 4C in fp32 that is 23 NC + (4 + 5H) N floats per block.
                  Checkpointing "blocks": f NC per block (its input); the block recomputed
                  in the backward holds its own set meanwhile.
                  Outside the blocks: f NC first block input; head AdaLN f (2N + NC) + a NC
                  + a 2BC; class embedding f BC; the batch 8 (B + N) + f B (L - pn0^2) Cvae;
                  token losses f 2N.
logits_and_loss, workspace: the step's peak is the largest of four moments, each a sum of
                  the parts live then (`MemoryPlan.peak_moment` names it):
                    head backward        all activations + 4 f N V: logits (held by the step),
                                         log-softmax output, NLL gradient, log-softmax gradient
                    top block backward   all activations + f N V logits + workspace: the
                                         recomputed block (checkpointing) + a 2NF (fc1/GELU
                                         output gradients) + f NC (residual gradient) - f NC
                                         - a NC - a NF (block output, fc2 output, GELU output
                                         freed by then)
                    first block backward as above, with only the embeddings' and block 0's
                                         activations left and every gradient but block 0's
                                         and the embeddings' allocated
                    optimizer step       all gradients, the batch; CPU AdamW's per-tensor
                                         temporaries 2 f x the largest parameter (CUDA's fused
                                         AdamW has none)
                  CUDA adds 64 MiB of cuBLAS/cuBLASLt workspace to every moment.
Gradients: with accumulation_steps > 1 (the default here, the safe side) later micro-batches
run their whole backward with every gradient live; with 1 the backward starts with none
(training/step.py zeroes them, set to None, before the first micro-batch) and they grow as
it proceeds. Checked against peaks measured through the allocator on CPU within 15% for d2..d8
(tests/model/test_memory.py; within 2.5% when written) and against
`torch.cuda.max_memory_allocated` (tests/model/test_memory_gpu.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from var_model import counting
from var_model.config import VARConfig
from var_model.errors import ConfigError

PRECISIONS = ("bf16", "fp16", "fp32")
ACTIVATION_CHECKPOINTING = ("none", "blocks")
ATTENTION_KERNELS = ("sdpa", "scalewise", "flex", "math")
PART_NAMES = ("weights", "gradients", "optimizer_states", "activations", "logits_and_loss", "workspace")
FLOAT32_BYTES = 4
INT64_BYTES = 8
CUDA_LIBRARY_WORKSPACE_BYTES = 64 * 2**20
BYTES_PER_GB = 10**9  # decimal gigabytes, as GPU memory sizes are quoted


def format_bytes(num_bytes: int) -> str:
    """Decimal units: '61.2 GB', '3.4 MB', '512 B'."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(num_bytes) >= scale:
            return f"{num_bytes / scale:.1f} {unit}"
    return f"{num_bytes} B"


@dataclass(frozen=True)
class MemoryPlan:
    """Peak bytes per device of one training step, by part (see the module docstring)."""

    parts: dict[str, int]
    micro_batch_size: int
    precision: str
    activation_checkpointing: str
    shards: int
    attention: str
    device: str
    peak_moment: str  # the moment of the step whose parts these are (module docstring)
    total_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_bytes", sum(self.parts.values()))

    @property
    def total_gb(self) -> float:
        return self.total_bytes / BYTES_PER_GB

    def format(self) -> str:
        details = ", ".join(f"{name.replace('_', ' ')} {format_bytes(value)}" for name, value in self.parts.items())
        return (
            f"{format_bytes(self.total_bytes)} (1 GB = 1e9 bytes) at micro-batch {self.micro_batch_size}, "
            f"{self.precision}, checkpointing {self.activation_checkpointing}, {self.shards} shard(s): {details}"
        )

    def __str__(self) -> str:
        return self.format()


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed: one of {', '.join(map(repr, allowed))}")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r} is not allowed: a positive integer")


def _block_saved_bytes(config: VARConfig, B: int, a: int, attention: str) -> int:
    """Bytes one block's forward leaves for its backward, not counting its input (the previous
    output, counted there) but counting its output (saved by whatever reads it next)."""
    C, F, H, L = config.width, config.ffn_hidden, config.num_heads, config.sequence_length
    N, f = B * L, FLOAT32_BYTES
    autocast = a != f
    saved = f * (4 * N + 2 * N * C)  # LN1/LN2 mean+rstd; LN outputs, saved by the (1 + scale) muls
    saved += a * 2 * N * C  # inputs of mat_qkv and fc1 (the cast copies under autocast)
    saved += a * 3 * N * C  # qkv: q and k norms and v read views of it
    if config.attn_l2_norm:
        saved += f * 4 * N * H  # |q|, |k| and their clamp_min outputs
        saved += f * N * C  # q / |q|, saved by the learned-temperature mul
        saved += (f * 2 * N * C) if autocast else 0  # the norm's fp32 copies of q and k
    saved += a * 2 * N * C  # q, k as attention takes them (v is a view of qkv)
    saved += a * N * C + f * N * H  # attention output, logsumexp
    if attention == "math":
        saved += (f + (a if autocast else 0)) * B * H * L * L  # softmax (+ its cast copy for attn @ v)
    if attention == "scalewise":
        saved += a * N * C  # every scale's own SDPA output, saved for its backward, beside the concatenation
    saved += a * 2 * N * C  # proj and fc2 outputs, saved by the gamma muls
    saved += a * 2 * N * F  # fc1 output (saved by GELU) and GELU output (saved by fc2)
    saved += f * 2 * N * C  # the residual after attention (saved by LN2), the block output
    if not config.shared_adaln:
        saved += a * B * C + a * 6 * B * C  # ada_lin input (SiLU output) and the six rows
    else:
        saved += a * 6 * B * C  # ada_gss + shared projection
    saved += a * 2 * B * C  # (1 + scale1), (1 + scale2)
    saved += f * B * (1 if config.drop_path_rate > 0 else 0)  # drop-path keep masks
    return saved


def _outside_blocks_saved_bytes(config: VARConfig, B: int, a: int) -> int:
    """Embedding output (first block input), head AdaLN, the batch and the token losses."""
    C, L, f = config.width, config.sequence_length, FLOAT32_BYTES
    N = B * L
    first_input = f * N * C
    head_adaln = f * (2 * N + N * C) + a * N * C + a * 2 * B * C  # LN stats, LN output, head input
    embeddings = f * B * C  # the class embedding, read by every AdaLN's SiLU
    batch = INT64_BYTES * (B + N) + f * B * (L - config.first_length) * config.latent_channels
    losses = f * 2 * N  # loss_BL and the error rate
    return first_input + head_adaln + embeddings + batch + losses


def _parameter_tensors(config: VARConfig) -> int:
    per_block = 12 if not config.shared_adaln else 11
    if not config.attn_l2_norm:
        per_block -= 1
    return config.depth * per_block + 10 + (2 if config.shared_adaln else 0)


def _largest_parameter(config: VARConfig) -> int:
    C = config.width
    return max(
        config.codebook_size * C,
        6 * C * C,
        config.ffn_hidden * C,
        3 * C * C,
        (config.num_classes + 1) * C,
        config.sequence_length * C,
    )


def training_memory(
    var_config: VARConfig,
    micro_batch_size: int,
    precision: str,
    activation_checkpointing: str,
    shards: int,
    attention: str = "sdpa",
    *,
    accumulation_steps: int = 2,
    ddp: bool = False,
    device: str = "cuda",
) -> MemoryPlan:
    """Peak bytes per device of a training step (formula: module docstring).

    `precision` as the trainer reads it: bf16/fp16 autocast on CUDA, float32 on CPU (device
    "cpu" counts every precision as float32). `shards` is the FSDP world size (1: every rank
    holds all weights); `ddp` adds DistributedDataParallel's gradient buckets (shards 1 only).
    `accumulation_steps` > 1 (the default, the safe side) runs later micro-batches with every
    gradient live; with 1 the backward starts with none.
    """
    _positive_int("micro_batch_size", micro_batch_size)
    _positive_int("shards", shards)
    _positive_int("accumulation_steps", accumulation_steps)
    _check_choice("precision", precision, PRECISIONS)
    _check_choice("activation_checkpointing", activation_checkpointing, ACTIVATION_CHECKPOINTING)
    _check_choice("attention", attention, ATTENTION_KERNELS)
    _check_choice("device", device, ("cuda", "cpu"))
    if ddp and shards > 1:
        raise ConfigError(f"ddp=True with shards={shards}: DDP replicates, FSDP shards; choose one")
    f = FLOAT32_BYTES
    a = 2 if (precision != "fp32" and device == "cuda") else f
    B, C, F, L = micro_batch_size, var_config.width, var_config.ffn_hidden, var_config.sequence_length
    N, V = B * L, var_config.codebook_size

    counts = counting.param_counts(var_config)
    P = counts["total"]
    P_block = (counts["attention"] + counts["ffn"] + counts["block_adaln"]) // var_config.depth
    P_root = P - var_config.depth * P_block
    weights = -(-f * P // shards) + f * L * L + INT64_BYTES * L  # + buffers: the mask, scale ids
    if a != f:
        # autocast's cached copies of every matmul weight but word_embed (run in fp32), and the
        # mask cast once per forward; all saved for the backward
        weights += a * (P - counts["embeddings"]) + a * L * L
    all_gradients = -(-f * P // shards)
    gradient_buffers = f * P if ddp else 0  # DDP's buckets live for the whole run
    if shards > 1:
        weights += f * P_root + 2 * f * P_block
        gradient_buffers += f * P_block
    optimizer_states = -(-2 * f * P // shards) + f * _parameter_tensors(var_config)
    library_workspace = CUDA_LIBRARY_WORKSPACE_BYTES if device == "cuda" else 0

    block = _block_saved_bytes(var_config, B, a, attention)
    outside = _outside_blocks_saved_bytes(var_config, B, a)
    if activation_checkpointing == "blocks":
        activations = outside + var_config.depth * f * N * C
        recompute = block - f * N * C  # the recomputed block's set, its output not kept
    else:
        activations = outside + var_config.depth * block
        recompute = 0
    # top block backward, in its FFN: gradients of the fc1 and GELU outputs and of the residual
    # are live while the block output, fc2 output and GELU output have been freed
    ffn_backward = a * 2 * N * F + f * N * C - (f * N * C + a * N * C + a * N * F)
    if accumulation_steps > 1:
        gradients_in_backward = head_gradients = all_gradients
    else:
        gradients_in_backward = 0
        head_gradients = -(-f * (counts["head"] + counts["head_adaln"]) // shards)
    # CPU AdamW is torch's per-tensor loop (sqrt and divide temporaries of one parameter);
    # CUDA's fused AdamW has none
    optimizer_transient = 2 * f * -(-_largest_parameter(var_config) // shards) if device == "cpu" else 0
    batch = INT64_BYTES * (B + N) * accumulation_steps
    moments = {
        "head backward": (gradients_in_backward, activations, 4 * f * N * V, library_workspace),
        "top block backward": (head_gradients, activations, f * N * V, recompute + ffn_backward + library_workspace),
        # the last block the backward reaches: every other gradient allocated, activations
        # down to the embeddings' (its input among them) and this block's (or its recompute)
        "first block backward": (
            all_gradients - -(-f * (P_block + counts["embeddings"]) // shards),
            outside + (block if recompute == 0 else 0),
            f * N * V,
            recompute + ffn_backward + library_workspace,
        ),
        "optimizer step": (all_gradients, batch, 0, optimizer_transient + library_workspace),
    }
    peak_moment = max(moments, key=lambda name: sum(moments[name]))
    gradients, live_activations, logits_and_loss, workspace = moments[peak_moment]
    parts = {
        "weights": weights,
        "gradients": gradients + gradient_buffers,
        "optimizer_states": optimizer_states,
        "activations": live_activations,
        "logits_and_loss": logits_and_loss,
        "workspace": workspace,
    }
    return MemoryPlan(
        parts=parts,
        micro_batch_size=B,
        precision=precision,
        activation_checkpointing=activation_checkpointing,
        shards=shards,
        attention=attention,
        device=device,
        peak_moment=peak_moment,
    )

"""`varscale edit` through the real CLI, on a tiny checkpoint trained here (~5 s for the module).

The debug tokenizer has scales (1, 2, 4) on 32x32 images: a finest token covers 8x8 pixels, so
masks drawn on that grid make some tokens entirely white and others entirely black.
Re-encoding the output PNG is no test of the kept tokens: the tokenizer's decode-encode round
trip is far from the identity (on the demo's tokenizer it keeps about half of the finest tokens
of an unedited image), so the test reads the edit's own token maps (--save-tokens) and checks
that the PNG is their decoding.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from orchestration.cli import main
from var_model.config import VQVAEConfig
from var_model.data import DataConfig
from var_model.data.synthetic import generate_synthetic_images
from var_model.tokenizer import TokenizerStageConfig, TokenizerTrainingConfig, run_tokenizer_stage
from var_model.training import TrialConfig
from var_model.training.command import load_trained_var
from var_model.training.trainer import run_trial

DATA = DataConfig(kind="synthetic", resolution=32, num_classes=4, train_images=96, test_images=16, seed=5)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A depth-1 VAR trained for 6 steps on a debug tokenizer trained for 4."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("edit")
    stage = TokenizerStageConfig(
        data=DATA,
        vqvae=VQVAEConfig.debug(),
        cache_root=str(root / "cache"),
        training=TokenizerTrainingConfig(steps=4, batch_size=8, log_every=2, dead_code_every=2, eval_images=16),
        encode_batch_size=64,
        device="cpu",
    )
    trial = TrialConfig(
        token_cache=run_tokenizer_stage(stage).cache_path,
        output_dir=str(root / "trial"),
        model={"depth": 1, "width": 32, "num_heads": 2},
        budget_kind="images",
        budget_value=16 * 6,
        batch_size=16,
        base_lr=5e-2,
        log_every=3,
        eval_every=6,
        checkpoint_every=6,
        device="cpu",
    )
    assert run_trial(trial).status == "completed"
    return f"{trial.output_dir}/checkpoint.pt"


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> str:
    images_NHWC, _ = generate_synthetic_images(1, 32, 4, seed=9, split="test")
    path = tmp_path_factory.mktemp("image") / "in.png"
    Image.fromarray(images_NHWC[0]).save(path)
    return str(path)


def _mask(tmp_path, white_HW: np.ndarray, name: str = "mask.png") -> str:
    path = tmp_path / name
    Image.fromarray((white_HW * 255).astype(np.uint8)).save(path)
    return str(path)


def _inpaint() -> np.ndarray:
    white_HW = np.zeros((32, 32))
    white_HW[8:24, 8:24] = 1  # the four central finest tokens
    return white_HW


def _outpaint() -> np.ndarray:
    white_HW = np.ones((32, 32))
    white_HW[8:24, 8:24] = 0  # everything but the centre
    return white_HW


@pytest.mark.parametrize(
    "white_HW, label", [(_inpaint(), None), (_outpaint(), "triangle")], ids=["in-painting", "out-painting-as-triangle"]
)
def test_edit_keeps_the_black_region_tokens_and_regenerates_the_white_region(
    checkpoint, image_path, tmp_path, white_HW, label
):
    out, tokens = tmp_path / "out.png", tmp_path / "tokens.npz"
    command = ["edit", checkpoint, "--image", image_path, "--mask", _mask(tmp_path, white_HW), "--out", str(out)]
    command += ["--samples", "3", "--save-tokens", str(tokens), "--top-p", "0"] + (["--label", label] if label else [])
    assert main(command) == 0
    var, _, _ = load_trained_var(checkpoint)
    input_13HW = torch.from_numpy(np.asarray(Image.open(image_path), dtype=np.float32)).permute(2, 0, 1)[None]
    reference = var.vqvae.encode_indices(input_13HW / 127.5 - 1)
    saved = np.load(tokens)
    edits = [torch.from_numpy(saved[f"edit_scale_{k}"]) for k in range(len(var.patch_nums))]
    white_11HW = torch.from_numpy(white_HW).float()[None, None]
    checked = 0
    for k, pn in enumerate(var.patch_nums):
        # a token all of whose pixels are black must be the input's token, at every scale
        entirely_black = F.interpolate(white_11HW, size=(pn, pn), mode="area").view(-1) == 0
        assert torch.equal(edits[k][:, entirely_black], reference[k][:, entirely_black].expand(3, -1)), k
        checked += int(entirely_black.sum())
    assert checked >= 4  # the finest scale has such tokens with either mask
    finest_white = F.interpolate(white_11HW, size=(4, 4), mode="area").view(-1) == 1
    assert (edits[-1][:, finest_white] != reference[-1][:, finest_white]).any()  # some sample drew new tokens
    # the PNG is the decoding of those tokens: 3 edits side by side
    decoded = (var.vqvae.decode_indices(edits).add(1).mul(0.5) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
    written = torch.from_numpy(np.asarray(Image.open(out)).copy())
    assert written.shape == (32, 3 * 32, 3)
    assert (written.int() - torch.cat(list(decoded), dim=1).int()).abs().max() <= 1


def test_another_seed_regenerates_the_white_region_differently(checkpoint, image_path, tmp_path):
    mask = _mask(tmp_path, _inpaint())
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    base = ["edit", checkpoint, "--image", image_path, "--mask", mask, "--top-p", "0"]
    assert main(base + ["--out", str(first), "--seed", "1"]) == 0
    assert main(base + ["--out", str(second), "--seed", "2"]) == 0
    pixels = [np.asarray(Image.open(path), dtype=np.int16) for path in (first, second)]
    assert np.abs(pixels[0] - pixels[1])[8:24, 8:24].max() > 0


@pytest.mark.parametrize(
    "image_side, mask_side, white, label, message",
    [
        (16, 16, 1.0, None, r"is 16x16; this checkpoint's tokenizer takes 32x32 images"),
        (32, 24, 1.0, None, r"is 24x24 but the image is 32x32; give a mask of the image's size"),
        (32, 32, 0.0, None, r"the mask regenerates no token: .* more than half of its pixels are white"),
        (32, 32, 1.0, "4", r"--label 4 is outside the 4 classes: give an index in \[0, 3\] or a name \(disc,"),
        (32, 32, 1.0, "blob", r"--label 'blob' is not a class"),
    ],
    ids=["image-size", "mask-size", "nothing-to-regenerate", "label-out-of-range", "unknown-label-name"],
)
def test_bad_inputs_are_one_line_errors_and_write_nothing(
    checkpoint, tmp_path, capsys, image_side, mask_side, white, label, message
):
    image = tmp_path / "in.png"
    Image.fromarray(np.full((image_side, image_side, 3), 128, dtype=np.uint8)).save(image)
    mask = _mask(tmp_path, np.full((mask_side, mask_side), white))
    out = tmp_path / "out.png"
    command = ["edit", checkpoint, "--image", str(image), "--mask", mask, "--out", str(out)]
    assert main(command + (["--label", label] if label else [])) == 2
    error = capsys.readouterr().err
    assert error.startswith("varscale edit: error: ") and error.count("\n") == 1
    assert re.search(message, error), error
    assert not out.exists()

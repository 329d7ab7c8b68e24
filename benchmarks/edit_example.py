"""The README's editing example, docs/edit_example.png: `varscale edit` on a test image of the
embedded synthetic data, as in-painting, out-painting and class-conditional editing.

It trains its checkpoint first when it is missing: the tiny walk-through's tokenizer stage and
trial (var_model/training/examples/), the trial run three times longer (300 steps, about one
epoch of the 20,000 training images) into runs/edit_example/. On a 2-core machine shared by 8
jobs the tokenizer stage took 33 minutes and the trial 12 (for an idle core the walk-through
quotes 6 minutes for the tokenizer and under one for its 100-step trial). Each edit is a real
`varscale edit` call, printed as it runs. The figure has one row per edit: the input, the
tokenizer's reconstruction of it (what the kept region can at best look like: the output is
decoded from tokens), the mask (white = regenerate), then the edits.

    python benchmarks/edit_example.py                      # writes runs/edit_example/ and the figure
    python benchmarks/edit_example.py --checkpoint runs/branches_vs_paper/paper/trials/d2-b6000-s0/checkpoint.pt
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from orchestration.cli import main as varscale
from var_model.data.synthetic import generate_synthetic_images
from var_model.editing import read_image, to_uint8_row
from var_model.errors import DataError
from var_model.training.command import load_trained_var

TOKENIZER_YAML = "var_model/training/examples/tiny_tokenizer.yaml"
TRIAL_YAML = "var_model/training/examples/tiny_trial.yaml"
TRIAL_OVERRIDES = ["output_dir=runs/edit_example/trial_d2", "budget_value=19200"]
CHECKPOINT = "runs/edit_example/trial_d2/checkpoint.pt"
ZOOM = 4  # 32-pixel images are too small to see; nearest-neighbour keeps the token blocks visible
CAPTION_HEIGHT = 14


def run(command: list[str]) -> None:
    print("$ varscale " + shlex.join(command), flush=True)
    code = varscale(command)
    if code != 0:
        raise SystemExit(code)


def write_inputs(checkpoint: str, out_dir: Path, image_index: int) -> dict[str, Path]:
    """The test image and the masks (white = regenerate) as PNGs."""
    _, cache, _ = load_trained_var(checkpoint)
    data = cache.manifest["data"]
    if data["kind"] != "synthetic":
        raise DataError(f"{checkpoint} was trained on {data['kind']} data; this example needs the embedded data")
    # the whole split: an image depends on the split's size (labels are a permutation over it)
    images_NHWC, labels = generate_synthetic_images(
        data["test_images"], data["resolution"], data["num_classes"], data["seed"], "test", data["pixel_noise"]
    )
    print(
        f"input: test image {image_index} of the embedded data, a {cache.manifest['class_names'][labels[image_index]]}"
    )
    side = data["resolution"]
    centre = np.zeros((side, side), dtype=np.uint8)
    centre[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 255
    paths = {name: out_dir / f"{name}.png" for name in ("input", "centre", "border")}
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(images_NHWC[image_index]).save(paths["input"])
    Image.fromarray(centre).save(paths["centre"])
    Image.fromarray(255 - centre).save(paths["border"])
    return paths


def figure(checkpoint: str, rows: list[tuple[str, Path, Path]], input_path: Path) -> Image.Image:
    """One captioned row per edit: input | reconstruction | mask | edits, each zoomed ZOOM times."""
    var, cache, _ = load_trained_var(checkpoint)
    image_13HW = read_image(input_path, cache.tokenizer_config.image_size)
    reconstruction = to_uint8_row(var.vqvae.decode_indices(var.vqvae.encode_indices(image_13HW)).add(1).mul(0.5))
    strips = []
    for caption, mask_path, edits_path in rows:
        mask = np.asarray(Image.open(mask_path).convert("RGB"))
        pixels = np.concatenate(
            [
                np.asarray(Image.open(input_path).convert("RGB")),
                reconstruction,
                mask,
                np.asarray(Image.open(edits_path)),
            ],
            axis=1,
        )
        zoomed = Image.fromarray(pixels).resize((pixels.shape[1] * ZOOM, pixels.shape[0] * ZOOM), Image.NEAREST)
        strip = Image.new("RGB", (zoomed.width, zoomed.height + CAPTION_HEIGHT), "white")
        ImageDraw.Draw(strip).text((2, 1), caption, fill="black")
        strip.paste(zoomed, (0, CAPTION_HEIGHT))
        strips.append(strip)
    result = Image.new("RGB", (strips[0].width, sum(strip.height for strip in strips)), "white")
    for row, strip in enumerate(strips):
        result.paste(strip, (0, row * strip.height))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=CHECKPOINT, help="a trial checkpoint on the embedded data")
    parser.add_argument("--out-dir", default="runs/edit_example", help="where the input, masks and edits go")
    parser.add_argument("--figure", default="docs/edit_example.png")
    parser.add_argument("--image-index", type=int, default=14, help="which test image of the embedded data")
    parser.add_argument("--label", default="square", help="the class of the class-conditional edit")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not Path(args.checkpoint).is_file():
        if args.checkpoint != CHECKPOINT:
            raise SystemExit(f"no checkpoint at {args.checkpoint}")
        run(["tokenizer", TOKENIZER_YAML])
        run(["train", TRIAL_YAML, *(item for override in TRIAL_OVERRIDES for item in ("--set", override))])
    out_dir = Path(args.out_dir)
    paths = write_inputs(args.checkpoint, out_dir, args.image_index)
    edits = [
        ("in-painting: white centre regenerated, null class", "centre", []),
        ("out-painting: white border regenerated, null class", "border", []),
        (
            f"class-conditional editing: white centre regenerated as --label {args.label}",
            "centre",
            ["--label", args.label],
        ),
    ]
    rows = []
    for number, (caption, mask, label) in enumerate(edits):
        out = out_dir / f"edit_{number}_{mask}{'_' + args.label if label else ''}.png"
        common = ["--samples", str(args.samples), "--seed", str(args.seed)]
        run(
            [
                "edit",
                args.checkpoint,
                "--image",
                str(paths["input"]),
                "--mask",
                str(paths[mask]),
                *label,
                *common,
                "--out",
                str(out),
            ]
        )
        rows.append((caption, paths[mask], out))
    picture = figure(args.checkpoint, rows, paths["input"])
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    picture.save(args.figure)
    print(f"wrote {args.figure}: per row input | reconstruction | mask (white = regenerate) | {args.samples} edits")


if __name__ == "__main__":
    main()

"""`varscale edit`: zero-shot in-painting, out-painting and class-conditional editing of one image.

    varscale edit runs/tiny/trial_d2/checkpoint.pt --image in.png --mask mask.png --out out.png
    varscale edit runs/tiny/trial_d2/checkpoint.pt --image in.png --mask mask.png --label star --out out.png

The mask has the image's size: WHITE pixels are regenerated, BLACK pixels are kept. A token of
any scale is regenerated where more than half of its pixels are white (var_model/editing.py).
Without --label the region is filled under the null class (in-/out-painting); with it, under
that class (a class index or a class name of the checkpoint's data).

`register(subparsers)` adds the subcommand to the `varscale` parser (orchestration/cli.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from var_model.editing import edit_image, read_image, read_mask, resolve_label, to_uint8_row
from var_model.files import atomic_write
from var_model.training.command import load_trained_var
from var_model.training.sampling import save_png


def register(subparsers: argparse._SubParsersAction) -> None:
    edit = subparsers.add_parser(
        "edit", help="in-paint, out-paint or class-edit an image with a trial checkpoint (white mask = regenerate)"
    )
    edit.add_argument("checkpoint", help="a trial's checkpoint.pt")
    edit.add_argument("--image", required=True, help="input PNG, of the tokenizer's image size")
    edit.add_argument("--mask", required=True, help="mask PNG of the same size: white = regenerate, black = keep")
    edit.add_argument("--label", help="class index or name to fill with (default: the null class, for in/out-painting)")
    edit.add_argument("--out", required=True, help="PNG path to write (the edits side by side)")
    edit.add_argument("--samples", type=int, default=1, help="edits to draw (one seeded stream)")
    edit.add_argument(
        "--cfg", type=float, default=1.5, help="classifier-free guidance weight (no effect without --label)"
    )
    edit.add_argument("--top-k", type=int, default=0, help="top-k filter (0 = off)")
    edit.add_argument("--top-p", type=float, default=0.96, help="nucleus filter (0 = off)")
    edit.add_argument("--seed", type=int, default=0)
    edit.add_argument("--token-cache", help="token cache to take the tokenizer from (default: the trial's)")
    edit.add_argument(
        "--save-tokens", help="also write the edited token maps (.npz: edit_scale_K (samples, l), kept_scale_K (l,))"
    )
    edit.set_defaults(handler=edit_command)


def edit_command(args: argparse.Namespace) -> int:
    var, cache, config = load_trained_var(args.checkpoint, args.token_cache)
    # read and check every input before any sampling, so a bad flag fails at once
    size = cache.tokenizer_config.image_size
    image_13HW = read_image(args.image, size)
    regenerate_HW = read_mask(args.mask, size)
    class_names = list(cache.manifest.get("class_names") or [])
    label = resolve_label(args.label, class_names, cache.num_classes)
    torch.set_num_threads(max(1, config.threads))
    result = edit_image(
        var, image_13HW, regenerate_HW, label, args.samples, args.cfg, args.top_k, args.top_p, args.seed
    )
    path = save_png(to_uint8_row(result.images_B3HW), Path(args.out))
    if args.save_tokens:
        arrays = {f"edit_scale_{k}": idx_Bl.cpu().numpy() for k, idx_Bl in enumerate(result.indices)}
        arrays.update({f"kept_scale_{k}": kept_l.cpu().numpy() for k, kept_l in enumerate(result.kept)})
        atomic_write(args.save_tokens, lambda handle: np.savez(handle, **arrays))
    finest = result.kept[-1]
    regenerated = int((~finest).sum())
    what = (
        "null class"
        if label == cache.num_classes
        else f"class {label}" + (f" ({class_names[label]})" if class_names else "")
    )
    print(
        f"wrote {path} ({args.samples} edit{'s' if args.samples > 1 else ''}, {what}; "
        f"{regenerated} of {finest.numel()} finest tokens regenerated)"
    )
    return 0

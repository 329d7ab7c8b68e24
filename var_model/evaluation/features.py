"""The built-in feature network: a small CNN classifier of the data's classes, trained once per
study on the real training images, content-addressed and cached like the tokenizer.

For the embedded synthetic data an ImageNet Inception is the wrong lens (32x32 shapes, upsampled
to 299): a classifier of the data's own classes sees what distinguishes them, its accuracy on
generated samples says whether a sample shows its class, and its penultimate activations are
the features of the Fréchet distance and of k-NN precision/recall.

Shape legend: B batch, H/W image side, F feature_dim, V classes. Images in [-1, 1] (the
VQVAE's input range, var_model.data.source.images_to_model_input).

Layout of `<cache_root>/features-<key[:16]>/` (written into a temporary sibling and renamed):
    network.pt       {"format", "config", "data", "num_classes", "class_names", "state_dict"}
    reference.npz    features (N, F) float32 and labels (N,) of the test images
    report.json      test_accuracy, the data identity, sha256 of both files
The key is the sha256 of (format, data identity, FeatureNetworkConfig): other data or other
settings give another directory.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from var_model.data.source import ImageSource, images_to_model_input
from var_model.errors import ConfigError, DataError
from var_model.evaluation.config import FeatureNetworkConfig
from var_model.files import atomic_write, file_sha256, json_sha256

FEATURES_FORMAT = 2  # 2: BatchNorm, blur augmentation
NETWORK_FILE = "network.pt"
REFERENCE_FILE = "reference.npz"
REPORT_FILE = "report.json"
INFERENCE_BATCH = 512


class FeatureNetwork(nn.Module):
    """Four 3x3 convolutions (w, 2w, 4w, 4w; the first three stride 2), each batch-normalised
    -> max pool -> F features -> V logits."""

    def __init__(self, config: FeatureNetworkConfig, num_classes: int):
        super().__init__()
        width = config.width
        layers: list[nn.Module] = []
        # stride 2 from the first layer: 32x32 -> 16 -> 8 -> 4, so a step costs little on a CPU.
        # BatchNorm, not GroupNorm: 0.83 against 0.78 test accuracy after the same 500 steps,
        # and 0.77 against 0.64 with the blur augmentation (measured on the demo's data)
        for channels_in, channels_out, stride in (
            (3, width, 2),
            (width, 2 * width, 2),
            (2 * width, 4 * width, 2),
            (4 * width, 4 * width, 1),
        ):
            layers += [nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1), nn.BatchNorm2d(channels_out)]
            layers.append(nn.GELU())
        self.body = nn.Sequential(*layers)
        self.project = nn.Linear(4 * width, config.feature_dim)
        self.classify = nn.Linear(config.feature_dim, num_classes)

    @classmethod
    def create(cls, config: FeatureNetworkConfig, num_classes: int, generator: torch.Generator) -> FeatureNetwork:
        """A new network (on the CPU) with PyTorch's default initialisation drawn from `generator`,
        never from the global RNG: the tokenizer stage trains it in a thread beside the tokenizer,
        whose initial weights the global RNG gives, and a draw of either would change the other."""
        with torch.device("meta"):  # built without weights, so nothing is drawn
            network = cls(config, num_classes)
        network = network.to_empty(device="cpu")
        for module in network.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                fan_in = module.weight[0].numel()
                nn.init.uniform_(module.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # ones, zeros and fresh running statistics: no draws
        return network

    def features(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        """(B, F): the penultimate activations, the features of every sample metric."""
        # per-image, per-channel standardisation: the classes are shapes, the colours are random
        # per image, and without it the network spends its steps on colour (measured: 0.21 test
        # accuracy after 400 steps without, 0.85 after 500 with, on the demo's data)
        mean = image_B3HW.mean(dim=(2, 3), keepdim=True)
        standardised = (image_B3HW - mean) / (image_B3HW.std(dim=(2, 3), keepdim=True) + 1e-3)
        # max pool: "is the shape's edge anywhere", not an average over the background
        return F.gelu(self.project(self.body(standardised).amax(dim=(2, 3))))

    def forward(self, image_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (B, F), logits (B, V))."""
        features_BF = self.features(image_B3HW)
        return features_BF, self.classify(features_BF)

    @torch.no_grad()
    def embed(self, image_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and predicted classes of many images, in inference batches (eval mode)."""
        self.eval()
        features, predictions = [], []
        for start in range(0, image_B3HW.shape[0], INFERENCE_BATCH):
            features_BF, logits_BV = self(image_B3HW[start : start + INFERENCE_BATCH])
            features.append(features_BF)
            predictions.append(logits_BV.argmax(dim=-1))
        return torch.cat(features), torch.cat(predictions)


def feature_network_key(data_identity: dict[str, Any], config: FeatureNetworkConfig) -> str:
    return json_sha256({"format": FEATURES_FORMAT, "data": data_identity, "network": config.to_dict()})


def feature_network_dir(cache_root: str | os.PathLike[str], data_identity: dict, config: FeatureNetworkConfig) -> Path:
    """Where the study's feature network lives: the tokenizer stage writes it, trials read it."""
    return Path(cache_root) / f"features-{feature_network_key(data_identity, config)[:16]}"


def split_tensors(source: ImageSource, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole synthetic split as (images (N, 3, H, W) in [-1, 1], labels (N,))."""
    images_NHWC, labels = source.arrays(split)
    return images_to_model_input(images_NHWC, device), torch.from_numpy(labels.astype(np.int64)).to(device)


def blur(image_B3HW: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool by `factor`, then upsample bilinearly: the detail a tokenizer loses."""
    pooled = F.avg_pool2d(image_B3HW, factor)
    return F.interpolate(pooled, size=image_B3HW.shape[-2:], mode="bilinear", align_corners=False)


def augment(image_B3HW: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """Blur each image with `probability` (by 2 or by 4, chosen per batch). The network scores
    tokenizer reconstructions and samples, which are blurrier than the real images it learns
    from: without this it called blurred test images by their class 35% of the time (by 2) and
    20% (by 4), against 78% sharp (measured; with it 70% and 53%, 77% sharp)."""
    if probability <= 0:
        return image_B3HW
    chosen_B = (torch.rand(image_B3HW.shape[0], generator=generator) < probability).to(image_B3HW.device)
    factor = 2 if torch.rand(1, generator=generator).item() < 0.5 else 4
    return torch.where(chosen_B[:, None, None, None], blur(image_B3HW, factor), image_B3HW)


def train_feature_network(
    source: ImageSource, config: FeatureNetworkConfig, device: torch.device
) -> tuple[FeatureNetwork, float]:
    """Train on the train split; returns (network in eval mode, test accuracy)."""
    if source.config.kind != "synthetic":
        raise ConfigError(
            "evaluation.feature builtin is the classifier of the embedded synthetic data; for image folders "
            "(ImageNet) use evaluation.feature: inception with evaluation.inception_weights"
        )
    generator = torch.Generator().manual_seed(config.seed)
    network = FeatureNetwork.create(config, source.num_classes, generator).to(device)
    images, labels = split_tensors(source, "train", device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=0.01)
    network.train()
    for step in range(config.steps):
        # cosine decay to 0: a short fixed schedule that needs no tuning per data set
        for group in optimizer.param_groups:
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        rows = torch.randint(0, images.shape[0], (config.batch_size,), generator=generator).to(device)
        _, logits_BV = network(augment(images[rows], config.augment, generator))
        loss = F.cross_entropy(logits_BV, labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    test_images, test_labels = split_tensors(source, "test", device)
    _, predictions = network.embed(test_images)
    return network.eval(), float((predictions == test_labels).double().mean())


def build_feature_network(
    source: ImageSource, config: FeatureNetworkConfig, cache_root: str | os.PathLike[str], device: torch.device
) -> tuple[Path, bool]:
    """Train and write the study's feature network and its test-image reference, or reuse the
    directory with the same key. Returns (directory, reused)."""
    identity = dict(source.identity())
    directory = feature_network_dir(cache_root, identity, config)
    if (directory / REPORT_FILE).is_file():
        return directory, True
    network, accuracy = train_feature_network(source, config, device)
    test_images, test_labels = split_tensors(source, "test", device)
    features, _ = network.embed(test_images)
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    temporary = Path(cache_root) / f".building-{directory.name}-{uuid.uuid4().hex[:8]}"
    temporary.mkdir()
    try:
        _write_network(temporary, network, config, identity, source, accuracy, features, test_labels)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    try:
        os.rename(temporary, directory)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)  # another process won the rename; same content
    return directory, False


def _write_network(directory, network, config, identity, source, accuracy, features, test_labels) -> None:
    state = {
        "format": FEATURES_FORMAT,
        "config": config.to_dict(),
        "data": identity,
        "num_classes": source.num_classes,
        "class_names": source.class_names,
        "state_dict": {name: tensor.cpu() for name, tensor in network.state_dict().items()},
    }
    atomic_write(directory / NETWORK_FILE, lambda handle: torch.save(state, handle))
    atomic_write(
        directory / REFERENCE_FILE,
        lambda handle: np.savez(
            handle, features=features.cpu().numpy().astype(np.float32), labels=test_labels.cpu().numpy()
        ),
    )
    report = {
        "test_accuracy": accuracy,
        "data": identity,
        "network_sha256": file_sha256(directory / NETWORK_FILE),
        "reference_sha256": file_sha256(directory / REFERENCE_FILE),
    }
    (directory / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")


def load_feature_network(
    directory: str | os.PathLike[str], data_identity: dict, device: torch.device
) -> tuple[FeatureNetwork, dict[str, Any]]:
    """The network of `directory` (eval mode) and its report; a network trained on other data
    than `data_identity` is a ConfigError (its features would measure the wrong classes)."""
    directory = Path(directory)
    if not (directory / REPORT_FILE).is_file():
        raise ConfigError(
            f"no feature network at {directory}; the study's tokenizer stage trains it (varscale launch runs "
            "that stage first)"
        )
    state = torch.load(directory / NETWORK_FILE, map_location="cpu", weights_only=True)
    if state.get("format") != FEATURES_FORMAT:
        raise DataError(f"{directory / NETWORK_FILE} has format {state.get('format')}; expected {FEATURES_FORMAT}")
    if state["data"] != data_identity:
        differing = sorted(
            key for key in set(state["data"]) | set(data_identity) if state["data"].get(key) != data_identity.get(key)
        )
        raise ConfigError(
            f"the feature network at {directory} was trained on another data set (differing: {differing}); "
            "sample metrics need the classifier of the trial's own data: rerun the study's tokenizer stage"
        )
    network = FeatureNetwork(FeatureNetworkConfig(**state["config"]), int(state["num_classes"]))
    network.load_state_dict(state["state_dict"])
    report = json.loads((directory / REPORT_FILE).read_text(encoding="utf-8"))
    return network.to(device).eval(), report


def load_reference(directory: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, F) float32, labels (N,)) of the test images."""
    with np.load(Path(directory) / REFERENCE_FILE) as reference:
        return reference["features"], reference["labels"]

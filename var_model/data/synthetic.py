"""A procedurally generated, class-conditional image dataset that needs no download.

Each image shows one shape (its class) on a textured background. Everything that is not the
class is random per image: position, size, rotation, the shape's colours and shading, the
background's two-colour gradient, pixel noise and a blurry distractor blob. The class is
easy to learn, the pixels are not: a tokenizer sees high-entropy fine scales, and a VAR keeps
gaining from capacity on the coarse-to-fine structure, which is what a scaling study needs
(a dataset that a tiny model memorises shows no scaling at all).

Generation is vectorised over images (numpy, float32), about a second per 10,000 images at
32x32 on one core, and deterministic: the same (seed, split, size, resolution, classes)
gives the same bytes. Train and test come from independent seed streams, so the held-out split
never changes when the training split grows.

Shape legend: images_NHWC is uint8 (N, H, W, 3); masks and distances are (n, R, R) float32.
"""

from __future__ import annotations

import numpy as np

from var_model.errors import ConfigError

SHAPE_NAMES = (
    "disc",
    "square",
    "triangle",
    "ring",
    "cross",
    "star",
    "ellipse",
    "crescent",
    "striped_disc",
    "checkered_square",
    "two_discs",
    "hexagon",
)
SPLIT_STREAMS = {"train": 0, "test": 1}
# Images rendered at once: bounds the float32 work arrays to ~16 MB each at 64x64.
CHUNK_IMAGES = 1024


def generate_synthetic_images(
    num_images: int,
    resolution: int,
    num_classes: int,
    seed: int,
    split: str,
    pixel_noise: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (images_NHWC uint8, labels int64) for one split; labels are balanced."""
    if split not in SPLIT_STREAMS:
        raise ConfigError(f"split is {split!r}; allowed: {sorted(SPLIT_STREAMS)}")
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ConfigError(f"num_classes is {num_classes}; allowed 1..{len(SHAPE_NAMES)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_STREAMS[split]]))
    labels = rng.permutation(np.arange(num_images) % num_classes).astype(np.int64)
    images_NHWC = np.empty((num_images, resolution, resolution, 3), dtype=np.uint8)
    for start in range(0, num_images, CHUNK_IMAGES):
        stop = min(start + CHUNK_IMAGES, num_images)
        images_NHWC[start:stop] = _render(rng, labels[start:stop], resolution, pixel_noise)
    return images_NHWC, labels


def _render(rng: np.random.Generator, labels: np.ndarray, resolution: int, pixel_noise: float) -> np.ndarray:
    n = len(labels)

    def draw(low: float, high: float, *shape: int) -> np.ndarray:
        return rng.uniform(low, high, size=(n, *shape)).astype(np.float32)

    # Per-image parameters, drawn in a fixed order so that generation is reproducible.
    size = draw(0.16, 0.36)  # shape radius, fraction of the side
    centre = draw(0.0, 1.0, 2) * (1 - 1.4 * size[:, None]) + 0.7 * size[:, None]
    angle = draw(0.0, 2 * np.pi)
    background_a, background_b = draw(0.0, 1.0, 3), draw(0.0, 1.0, 3)
    gradient_angle = draw(0.0, 2 * np.pi)
    # Foreground colours are pushed half a unit away from the background in each channel
    # (modulo 1) so that the shape always has contrast, then jittered.
    background_mean = 0.5 * (background_a + background_b)
    foreground = np.mod(background_mean + 0.5 + draw(-0.2, 0.2, 3), 1.0)
    foreground_second = np.mod(foreground + draw(0.25, 0.75, 3), 1.0)
    shading = draw(-0.3, 0.3, 2)
    noise_level = draw(0.0, 1.0) * pixel_noise
    blob_centre, blob_width = draw(0.0, 1.0, 2), draw(0.05, 0.15)
    blob_colour, blob_alpha = draw(0.0, 1.0, 3), draw(0.0, 0.5)
    texture_frequency = draw(2.0, 4.0)
    noise = rng.standard_normal((n, resolution, resolution, 3)).astype(np.float32)

    axis = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    y_RR, x_RR = np.meshgrid(axis, axis, indexing="ij")

    def per_image(values: np.ndarray) -> np.ndarray:
        return values.reshape(-1, 1, 1)

    dx = x_RR[None] - per_image(centre[:, 0])
    dy = y_RR[None] - per_image(centre[:, 1])
    cos, sin = per_image(np.cos(angle)), per_image(np.sin(angle))
    # Shape-local coordinates: rotated, and in units of the shape radius.
    u = (cos * dx + sin * dy) / per_image(size)
    v = (-sin * dx + cos * dy) / per_image(size)

    distance = np.empty_like(u)
    texture = np.ones_like(u)
    for class_index in np.unique(labels):
        chosen = labels == class_index
        distance[chosen], texture[chosen] = _shape(
            SHAPE_NAMES[class_index], u[chosen], v[chosen], per_image(texture_frequency[chosen])
        )
    # Signed distance (shape units) -> pixels -> anti-aliased coverage in [0, 1].
    coverage = np.clip(0.5 - distance * per_image(size) * resolution, 0.0, 1.0)[..., None]

    gradient_position = per_image(np.cos(gradient_angle)) * (x_RR - 0.5) + per_image(np.sin(gradient_angle)) * (
        y_RR - 0.5
    )
    gradient_weight = np.clip(gradient_position + 0.5, 0.0, 1.0)[..., None]
    background = background_a[:, None, None] * (1 - gradient_weight) + background_b[:, None, None] * gradient_weight
    blob_distance = (x_RR - per_image(blob_centre[:, 0])) ** 2 + (y_RR - per_image(blob_centre[:, 1])) ** 2
    blob = per_image(blob_alpha) * np.exp(-blob_distance / (2 * per_image(blob_width) ** 2))
    background = background * (1 - blob[..., None]) + blob_colour[:, None, None] * blob[..., None]

    lighting = 1.0 + 0.5 * (per_image(shading[:, 0]) * u + per_image(shading[:, 1]) * v)
    inside = (
        foreground[:, None, None] * texture[..., None] + foreground_second[:, None, None] * (1 - texture[..., None])
    ) * np.clip(lighting, 0.5, 1.5)[..., None]
    image = background * (1 - coverage) + inside * coverage
    image = image + per_image(noise_level)[..., None] * noise
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _regular_polygon(u: np.ndarray, v: np.ndarray, sides: int, apothem: float) -> np.ndarray:
    """Distance-like field of a regular polygon: the max over its edges' half-planes."""
    angles = 2 * np.pi * np.arange(sides) / sides + np.pi / 2
    edges = [u * np.cos(a) + v * np.sin(a) for a in angles]
    return np.max(np.stack(edges), axis=0) - apothem


def _shape(name: str, u: np.ndarray, v: np.ndarray, frequency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signed distance in shape units, texture weight in [0, 1]) of one shape class."""
    radius = np.sqrt(u * u + v * v)
    plain = np.ones_like(u)
    if name == "disc":
        return radius - 1.0, plain
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8, plain
    if name == "triangle":
        return _regular_polygon(u, v, 3, 0.5), plain
    if name == "ring":
        return np.abs(radius - 0.78) - 0.22, plain
    if name == "cross":
        horizontal = np.maximum(np.abs(u) - 0.95, np.abs(v) - 0.3)
        vertical = np.maximum(np.abs(u) - 0.3, np.abs(v) - 0.95)
        return np.minimum(horizontal, vertical), plain
    if name == "star":
        polar = np.arctan2(v, u)
        return (radius - (0.6 + 0.35 * np.cos(5 * polar))) * 0.6, plain
    if name == "ellipse":
        return (np.sqrt(u * u + (v / 0.5) ** 2) - 1.0) * 0.5, plain
    if name == "crescent":
        bite = np.sqrt((u - 0.45) ** 2 + v * v) - 0.8
        return np.maximum(radius - 1.0, -bite), plain
    if name == "striped_disc":
        stripes = np.clip(0.5 + 2.0 * np.sin(np.pi * frequency * u), 0.0, 1.0)
        return radius - 1.0, stripes
    if name == "checkered_square":
        checks = np.sin(np.pi * frequency * u) * np.sin(np.pi * frequency * v)
        return np.maximum(np.abs(u), np.abs(v)) - 0.8, np.clip(0.5 + 2.0 * checks, 0.0, 1.0)
    if name == "two_discs":
        left = np.sqrt((u + 0.5) ** 2 + v * v) - 0.45
        right = np.sqrt((u - 0.5) ** 2 + v * v) - 0.45
        return np.minimum(left, right), plain
    if name == "hexagon":
        return _regular_polygon(u, v, 6, 0.85), plain
    raise ConfigError(f"unknown synthetic shape {name!r}; known: {', '.join(SHAPE_NAMES)}")

"""Study data: the embedded procedural dataset and ImageNet-layout folders.

from var_model.data import DataConfig, ImageSource
source = ImageSource(DataConfig(kind="synthetic", resolution=32))
for images_NHWC, labels in source.iterate("train", batch_size=256): ...
"""

from var_model.data.config import DataConfig
from var_model.data.source import ImageSource, images_to_model_input
from var_model.data.synthetic import SHAPE_NAMES, generate_synthetic_images

__all__ = [
    "DataConfig",
    "ImageSource",
    "SHAPE_NAMES",
    "generate_synthetic_images",
    "images_to_model_input",
]

"""The `data:` section of a study file: var_model's DataConfig written out.

An image-folder study may leave `data.root` out until it is launched: users price a study
(`varscale dry-run`) before they copy ImageNet to the cluster. Its DataConfig then holds
DATA_ROOT_UNSET, a root that says what is missing wherever it is printed, and planning the
study for a launch refuses it (`data_root_problem`, orchestration.study.trial_config.plan_study).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from orchestration.study.config_values import check_config_values
from orchestration.study.fields import describe, field_error
from var_model.data.config import DataConfig
from var_model.errors import ConfigError

IMAGE_FOLDER = "image_folder"
DATA_ROOT_UNSET = "(data.root not set: launch needs it)"


def _data_config(value: Any) -> DataConfig:
    if isinstance(value, DataConfig):
        return value
    if not isinstance(value, dict):
        raise field_error(f"expected a mapping, got {describe(value)}")
    values = check_config_values(DataConfig, value)
    if values.get("kind") == IMAGE_FOLDER and values.get("root") is None:
        values["root"] = DATA_ROOT_UNSET
    try:
        # DataConfig's own validation names the field as data.<name>
        return DataConfig.from_dict(values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise field_error(f"not a valid DataConfig: {error}") from None


def data_root_problem(data: DataConfig) -> str | None:
    """Why the data cannot be read yet (an image folder with no root), or None."""
    if data.kind == IMAGE_FOLDER and data.root == DATA_ROOT_UNSET:
        return (
            "data.root: not set; launch needs the image folder (ImageNet layout ROOT/train/<class>/*.JPEG, "
            "ROOT/val/<class>/*.JPEG): --set data.root=/datasets/imagenet"
        )
    return None


DataSection = Annotated[DataConfig, PlainValidator(_data_config), PlainSerializer(DataConfig.to_dict)]

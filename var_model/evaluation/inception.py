"""FID and Inception Score features from a maintained implementation: torch-fidelity's
TF-compatible Inception-v3 ("inception-v3-compat", the network torchmetrics' FID wraps and the
FID literature uses), with weights from a local file that the user names.

    extractor = InceptionExtractor(weights_path, device)     # nothing is downloaded
    pool_N2048, logits_N1008 = extractor(images_uint8_B3HW)   # any side: resized to 299 inside

torch-fidelity is installed by `make install` with `--no-deps` (pip install --no-deps
torch-fidelity==0.4.0): its Inception-v3 needs only torch, but its package imports torchvision
for its other extractors and data sets, and the only torchvision for torch 2.13 on a plain index
is a CUDA build that does not load against a CPU torch (it needs libtorch_cuda.so). Where
torchvision is missing or does not load, `fidelity_inception_module()` imports torch-fidelity's
Inception module without running the package's __init__ (see there). The built-in feature path
never imports any of it.

Reference statistics, one of:
- the user's .npz holding `mu` (2048,) and `sigma` (2048, 2048), e.g. the ADM evaluator's
  VIRTUAL_imagenet256_labeled.npz (then precision/recall need its `features`, if any);
- the study's own, computed once by the tokenizer stage from the test (validation) split and
  stored at `inception_reference_path(...)` with mu, sigma and the features.
The Fréchet distance is then evaluation/frechet.py's, and the Inception Score torchmetrics'
`InceptionScore` on the extractor's logits.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from var_model.errors import ConfigError, DataError
from var_model.evaluation.frechet import gaussian_statistics
from var_model.files import atomic_write, file_sha256, json_sha256

POOL_FEATURES = "2048"
LOGITS = "logits_unbiased"
INCEPTION_SCORE_SPLITS = 10
REFERENCE_FEATURES_LIMIT = 50_000  # features kept for precision/recall (50k x 2048 float32 = 400 MB)


FIDELITY_PACKAGE = "torch_fidelity"
FIDELITY_INCEPTION_MODULE = "torch_fidelity.feature_extractor_inceptionv3"


def fidelity_inception_module() -> types.ModuleType:
    """torch-fidelity's `feature_extractor_inceptionv3` module (FeatureExtractorInceptionV3 and
    its building blocks); a ConfigError naming the install command where it cannot be imported."""
    if importlib.util.find_spec(FIDELITY_PACKAGE) is None:
        raise ConfigError(
            "evaluation.feature inception needs torch-fidelity: make install (or pip install --no-deps "
            "torch-fidelity==0.4.0; --no-deps keeps pip from replacing this torch with a CUDA one for torchvision)"
        )
    try:
        return importlib.import_module(FIDELITY_INCEPTION_MODULE)
    except (ImportError, RuntimeError) as error:
        # RuntimeError: a torchvision built for another torch ("operator torchvision::nms does not exist")
        if FIDELITY_PACKAGE in sys.modules:
            raise _fidelity_error(error) from None
        package_error = error
    # The package's __init__ imports every extractor, and the CLIP, VGG and DINOv2 ones import
    # torchvision; the Inception module and what it imports (helpers, defaults, the TF-compatible
    # resize) need only torch. So the package is registered without running its __init__, and
    # the Inception module is imported from it as usual. It stays registered: torchmetrics imports
    # the same module when torch-fidelity is installed (`import torchmetrics` fails without it).
    spec = importlib.util.find_spec(FIDELITY_PACKAGE)
    sys.modules[FIDELITY_PACKAGE] = importlib.util.module_from_spec(spec)
    try:
        return importlib.import_module(FIDELITY_INCEPTION_MODULE)
    except (ImportError, RuntimeError) as error:
        del sys.modules[FIDELITY_PACKAGE]
        raise _fidelity_error(error, package_error) from None


def _fidelity_error(*errors: BaseException) -> ConfigError:
    causes = "; ".join(f"{type(error).__name__}: {error}" for error in errors)
    return ConfigError(
        f"evaluation.feature inception: torch-fidelity's Inception-v3 does not import with this torch "
        f"({torch.__version__}): {causes}"
    )


def _inception_modules():
    # Imported on use, so the built-in feature path never imports torch-fidelity. torch-fidelity's
    # extractor, not torchmetrics' NoTrainInceptionV3: the latter returns only the first of its
    # features, and the pool features and the logits come from one forward here.
    fidelity_inception = fidelity_inception_module()
    try:
        from torchmetrics.image.inception import InceptionScore
    except (ImportError, RuntimeError) as error:
        raise ConfigError(
            f"evaluation.feature inception needs torchmetrics' InceptionScore ({type(error).__name__}: {error})"
        ) from None
    return fidelity_inception.FeatureExtractorInceptionV3, InceptionScore


def check_inception_weights(path: str | os.PathLike[str] | None) -> str:
    """The weights file's sha256; a missing file is a ConfigError naming the key."""
    if not path or not Path(path).is_file():
        raise ConfigError(
            f"evaluation.inception_weights {path!r} is not a file; name the local Inception-v3 weights "
            "(torch-fidelity's pt_inception-2015-12-05-6726825d.pth): nothing is downloaded at run time"
        )
    return file_sha256(path)


def _not_inception_weights(weights_path, error: BaseException) -> ConfigError:
    return ConfigError(
        f"evaluation.inception_weights {str(weights_path)!r} is not an Inception-v3 state dict of "
        f"torch-fidelity's inception-v3-compat network ({type(error).__name__}: {str(error)[:300]})"
    )


class InceptionExtractor(nn.Module):
    """uint8 images (B, 3, H, W) -> (pool features (B, 2048), logits (B, 1008)), float64."""

    def __init__(self, weights_path: str | os.PathLike[str], device: torch.device | str = "cpu"):
        super().__init__()
        check_inception_weights(weights_path)
        fidelity_inception, _ = _inception_modules()
        try:
            # torch-fidelity reads the file with weights_only=False (any pickle runs): read it as
            # data first, so a file that holds more than tensors is refused, never unpickled.
            # Exception: torch's data-only unpickler fails on arbitrary bytes in many ways
            # (UnpicklingError, IndexError, EOFError, ...), each meaning "not a state dict"
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise _not_inception_weights(weights_path, error) from None
        if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
            raise _not_inception_weights(weights_path, TypeError(f"it holds a {type(state).__name__}, not tensors"))
        del state
        try:
            self.network = fidelity_inception(
                name="inception-v3-compat",
                features_list=[POOL_FEATURES, LOGITS],
                feature_extractor_weights_path=str(weights_path),
            )
        except (RuntimeError, KeyError, ValueError, TypeError, OSError, pickle.UnpicklingError) as error:
            raise _not_inception_weights(weights_path, error) from None
        self.network.to(device)

    @torch.no_grad()
    def forward(self, images_B3HW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images_B3HW.dtype != torch.uint8:
            raise DataError(f"the Inception extractor takes uint8 images, got {images_B3HW.dtype}")
        pool_BF, logits_BV = self.network(images_B3HW)
        return pool_BF.double(), logits_BV.double()


def inception_score(logits_NV: torch.Tensor) -> float:
    """torchmetrics' Inception Score (mean over splits) of the extractor's logits."""
    _, inception_score_metric = _inception_modules()
    # feature=Identity: the logits are already computed; torchmetrics applies its IS formula.
    # Its warning that it buffers every feature is moot: the logits are in memory already.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features", category=UserWarning)
        metric = inception_score_metric(feature=nn.Identity(), splits=min(INCEPTION_SCORE_SPLITS, logits_NV.shape[0]))
    metric.update(logits_NV.float())
    mean, _ = metric.compute()
    return float(mean)


def inception_reference_path(cache_root: str | os.PathLike[str], data_identity: dict, weights_sha256: str) -> Path:
    """Where the study's own reference statistics live (the tokenizer stage writes, trials read)."""
    key = json_sha256({"data": data_identity, "inception_weights": weights_sha256})
    return Path(cache_root) / f"inception-reference-{key[:16]}.npz"


def read_reference(path: str | os.PathLike[str]) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
    """((mu, sigma), features or None) of a reference .npz; without mu and sigma a DataError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"evaluation.reference {str(path)!r} is not a file")
    try:
        with np.load(path) as reference:
            missing = [name for name in ("mu", "sigma") if name not in reference.files]
            if missing:
                raise DataError(
                    f"evaluation.reference {str(path)!r} has no {missing} (it holds {reference.files}); a reference "
                    "statistics .npz needs mu (D,) and sigma (D, D), as the ADM evaluator's files do"
                )
            mu, sigma = reference["mu"].astype(np.float64), reference["sigma"].astype(np.float64)
            features = reference["features"] if "features" in reference.files else None
    except (OSError, ValueError) as error:
        raise DataError(f"evaluation.reference {str(path)!r} is not a readable .npz ({error})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise DataError(f"evaluation.reference {str(path)!r}: mu {mu.shape} and sigma {sigma.shape} do not match")
    return (mu, sigma), features


def write_reference(path: str | os.PathLike[str], features_ND: np.ndarray) -> None:
    """mu, sigma and (up to REFERENCE_FEATURES_LIMIT) features of real images, as an .npz."""
    mu, sigma = gaussian_statistics(features_ND)
    kept = np.asarray(features_ND[:REFERENCE_FEATURES_LIMIT], dtype=np.float32)
    atomic_write(path, lambda handle: np.savez(handle, mu=mu, sigma=sigma, features=kept))

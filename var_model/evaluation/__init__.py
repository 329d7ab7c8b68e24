"""Sample quality of a trial: K samples per class under a recorded protocol, scored by the
study's feature network (embedded data) or by Inception-v3 through torch-fidelity and torchmetrics (ImageNet).
docs/SAMPLE_QUALITY.md describes the protocol, the metrics and their floors.

    from var_model.evaluation import EvaluationConfig, SampleEvaluator, prepare_study_evaluation
"""

from var_model.evaluation.config import FEATURES, EvaluationConfig, FeatureNetworkConfig
from var_model.evaluation.evaluator import PROTOCOL_PREFIX, SECONDS_METRIC, SampleEvaluator, generate_samples
from var_model.evaluation.features import FeatureNetwork, build_feature_network, feature_network_dir
from var_model.evaluation.frechet import frechet_distance, gaussian_statistics
from var_model.evaluation.metrics import BUILTIN_METRICS, INCEPTION_METRICS, METRIC_PREFIX
from var_model.evaluation.precision_recall import precision_recall
from var_model.evaluation.study_stage import prepare_study_evaluation

__all__ = [
    "BUILTIN_METRICS",
    "FEATURES",
    "INCEPTION_METRICS",
    "METRIC_PREFIX",
    "PROTOCOL_PREFIX",
    "SECONDS_METRIC",
    "EvaluationConfig",
    "FeatureNetwork",
    "FeatureNetworkConfig",
    "SampleEvaluator",
    "build_feature_network",
    "feature_network_dir",
    "frechet_distance",
    "gaussian_statistics",
    "generate_samples",
    "precision_recall",
    "prepare_study_evaluation",
]

"""Estimated training time per trial for `varscale dry-run`: trial FLOPs / achieved FLOP/s.

A GPU trial's FLOP/s per GPU come from `resources.throughput_file` when the study names one
(records of `varscale bench --save`, looked up by device name, depth, precision, compile,
attention kernel and checkpointing as the trial will run, interpolated across depth, at each
depth's fastest measured micro-batch), else from the stated `resources.flops_per_second`.
A CPU trial takes `resources.cpu_flops_per_second` per thread (CPU records name their thread
count in the device name, which a study's trials do not share).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestration.study.execution_plan import trial_precision
from orchestration.study.spec import StudySpec
from orchestration.study.trials import TrialSpec
from var_model.errors import ConfigError
from var_model.throughput import ThroughputTable, throughput_precision


def _device_name(spec: StudySpec, table: ThroughputTable) -> str:
    path, measured = spec.resources.throughput_file, table.device_names()
    if spec.resources.device_name is None:
        if len(measured) != 1:
            raise ConfigError(
                f"resources.device_name: required, because throughput file {path} holds {len(measured)} devices "
                f"({measured}); name the one the trials run on"
            )
        return measured[0]
    if spec.resources.device_name not in measured:
        raise ConfigError(
            f"resources.throughput_file: {path} was measured on {measured}, not on resources.device_name "
            f"{spec.resources.device_name!r}; measure that device with `varscale bench --save {path}` or name one "
            "of those"
        )
    return spec.resources.device_name


@dataclass(frozen=True)
class TimeEstimates:
    """Where a study's time estimates come from; `seconds(trial)` applies it."""

    spec: StudySpec
    table: ThroughputTable | None
    device_name: str | None

    @classmethod
    def for_study(cls, spec: StudySpec, trials: list[TrialSpec]) -> TimeEstimates:
        path = spec.resources.throughput_file
        if path is None:
            return cls(spec, None, None)
        if not any(trial.execution.device == "cuda" for trial in trials):
            raise ConfigError(
                f"resources.throughput_file: {path} is named, but no trial runs on a GPU (resources.gpus, "
                "resources.device) and CPU trials take resources.cpu_flops_per_second; remove it"
            )
        table = ThroughputTable.load(path)
        return cls(spec, table, _device_name(spec, table))

    def gpu_flops_per_second(self, trial: TrialSpec) -> float:
        if self.table is None or trial.execution.device != "cuda":
            return self.spec.resources.flops_per_second
        try:
            return self.table.flops_per_second(
                self.device_name,
                trial.depth,
                precision=throughput_precision(trial_precision(self.spec)),
                compile=trial.execution.compile,
                attention=trial.execution.attention,
                activation_checkpointing=trial.execution.activation_checkpointing == "blocks",
                image_size=self.spec.data.resolution,
            )
        except ConfigError as error:
            raise ConfigError(f"resources.throughput_file: trial {trial.key}: {error}") from None

    def seconds(self, trial: TrialSpec) -> float:
        return trial.estimated_seconds(self.gpu_flops_per_second(trial), self.spec.resources.cpu_flops_per_second)

    def describe(self) -> str:
        resources = self.spec.resources
        cpu = f"CPU trials at the stated {resources.cpu_flops_per_second:.3g} FLOP/s per CPU thread"
        if self.table is None:
            return (
                f"time at the stated {resources.flops_per_second:.3g} FLOP/s per GPU (resources.flops_per_second; "
                f"measure with `varscale bench --save FILE`, then name it in resources.throughput_file), {cpu}"
            )
        return (
            f"time from throughput file {self.table.source} (device {self.device_name!r}, interpolated across "
            f"depth), {cpu}"
        )

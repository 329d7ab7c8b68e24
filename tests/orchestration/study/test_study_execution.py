"""Each trial's execution is planned before anything launches: the micro-batch, accumulation,
sharding and checkpointing that fit resources.gpu_memory_gb (var_model.memory), the resolved
values in the TrialConfig it runs with, and dry-run's time from a throughput file or the
stated FLOP/s, saying which."""

from pathlib import Path

import pytest

from orchestration.study.dry_run import dry_run_rows, dry_run_table
from orchestration.study.loading import load_study, spec_to_yaml
from orchestration.study.trial_config import build_trial_config, plan_study
from var_model.attention import default_attention_kernel
from var_model.errors import ConfigError
from var_model.memory import choose_execution
from var_model.throughput import ThroughputRecord, save_record
from var_model.training.config_choices import ATTENTION_CHOICES

FIXTURES = Path(__file__).parents[1] / "fixtures"
PAPER_FAMILY = FIXTURES / "var_scaling_d6_d30.yaml"
TINY = FIXTURES / "tiny_study.yaml"
IMAGENET = Path(__file__).parents[3] / "studies" / "var_imagenet256.yaml"
H200 = "NVIDIA H200"
CUDA_ATTENTION = default_attention_kernel("cuda")  # what recipe.attention `auto` runs on a GPU


def paper_family(*overrides: str):
    return load_study(str(PAPER_FAMILY), list(overrides))


def measured(path: Path, device_name: str, flops_by_depth: dict[int, float]) -> Path:
    """A throughput file as `varscale bench --save` writes it, for the fixture's GPU settings
    (bf16, compiled, the CUDA kernel: what `auto` resolves to on a GPU)."""
    for depth, flops in flops_by_depth.items():
        save_record(
            path,
            ThroughputRecord(
                device_name=device_name,
                depth=depth,
                image_size=256,
                precision="bfloat16",
                compile=True,
                attention=CUDA_ATTENTION,
                micro_batch=16,
                activation_checkpointing=False,
                flops_per_second=flops,
                images_per_second=flops / 1e12,
            ),
        )
    return path


def test_dry_run_rows_carry_the_execution_plan_of_every_gpu_trial():
    spec = paper_family()
    rows = dry_run_rows(spec)
    for row in rows:
        assert row["micro_batch_size"] * row["accumulation_steps"] * row["gpus"] == row["batch"], row["trial"]
        assert row["sharding"] in ("ddp", "fsdp") and row["activation_checkpointing"] in ("none", "blocks")
        assert row["gpu_memory_bytes"] == 80e9 and row["peak_bytes"] <= 0.9 * 80e9, row["trial"]
        assert row["peak"] == f"{row['peak_bytes'] / 1e9:.1f} / 80 GB"
    # d6 on one GPU at batch 768: the largest micro-batch that fits, checked against var_model's plan
    d6 = next(row for row in rows if row["depth"] == 6)
    assert d6["micro_batch_size"] < 768
    table = dry_run_table(spec)
    header = table.splitlines()[0]
    for column in ("micro-batch", "accum.", "sharding", "checkpointing", "peak / GPU"):
        assert column in header
    assert "resources.gpu_memory_gb 80 GB" in table


def test_the_paper_study_fits_80_gb_gpus_at_every_depth():
    rows = dry_run_rows(load_study(str(IMAGENET), ["data.root=/datasets/imagenet"]))
    assert len(rows) == 24
    for row in rows:
        assert row["micro_batch_size"] >= 1 and row["peak_bytes"] < 80e9, row["trial"]


def test_the_resolved_execution_reaches_the_trial_config():
    spec = paper_family()
    for trial in plan_study(spec)[::6]:
        config = build_trial_config(spec, trial)
        plan = choose_execution(
            trial.var_config, trial.batch_size, int(trial.gpus), 80e9, "bf16", attention=CUDA_ATTENTION
        )
        assert (config.micro_batch_size, config.activation_checkpointing, config.sharding) == (
            plan.micro_batch_size,
            plan.activation_checkpointing,
            plan.sharding,
        )
        assert config.micro_batch_size < config.batch_size
    # a written micro-batch is checked, not changed
    spec = paper_family("recipe.micro_batch_size={6: 32, 16: 8}")
    by_depth = {trial.depth: build_trial_config(spec, trial).micro_batch_size for trial in plan_study(spec)}
    assert (by_depth[12], by_depth[16], by_depth[30]) == (32, 8, 8)


def test_cpu_trials_run_as_written_without_a_memory_plan(tmp_path):
    spec = load_study(str(TINY), [f"storage={tmp_path}"])
    (trial, *_) = plan_study(spec)
    config = build_trial_config(spec, trial)
    assert trial.execution.plan is None
    assert (config.micro_batch_size, config.activation_checkpointing, config.sharding) == (None, "none", "ddp")
    row = dry_run_rows(spec)[0]
    assert (row["micro_batch_size"], row["accumulation_steps"], row["peak"]) == (None, 1, "none (cpu)")
    spec = load_study(str(TINY), [f"storage={tmp_path}", "recipe.micro_batch_size=4"])
    (trial, *_) = plan_study(spec)
    assert (build_trial_config(spec, trial).micro_batch_size, trial.execution.accumulation_steps) == (4, 2)


def test_a_trial_that_cannot_fit_is_refused_naming_the_trial_and_the_numbers():
    with pytest.raises(
        ConfigError,
        match=r"^trials d6-b1e18-s0, d6-b1e19-s0 \(depth 6, recipe\.batch_size 768 over 1 GPU\(s\) of "
        r"resources\.gpu_memory_gb 0\.2, bf16\): does not fit in GPU memory: at micro-batch 1 it needs at least "
        r"\d+\.\d [MG]B per GPU, 180\.0 MB available \(200\.0 MB less the 10% margin\); tried checkpointing none "
        r"\+ ddp: \d+\.\d [MG]B; checkpointing blocks \+ ddp",
    ):
        plan_study(paper_family("resources.gpu_memory_gb=0.2"))


def test_a_fraction_of_a_gpu_is_planned_against_that_fraction_of_its_memory():
    rows = dry_run_rows(paper_family("resources.gpus={6: 0.5, 16: 4, 24: 8}"))
    assert next(row for row in rows if row["depth"] == 6)["peak"].endswith(" / 40 GB")


def test_a_micro_batch_that_does_not_divide_the_per_gpu_share_names_its_field():
    with pytest.raises(
        ConfigError,
        match=r"^recipe\.micro_batch_size: 5 at depth 6 does not divide the per-GPU share of "
        r"recipe\.batch_size 768 over 1 GPU\(s\) \(768 images\); use auto or one of \[1, 2, 3, 4, 6, 8,",
    ):
        plan_study(paper_family("recipe.micro_batch_size=5"))
    with pytest.raises(ConfigError, match=r"recipe\.micro_batch_size: 256 at depth 30 .* over 8 GPU\(s\) \(128 images"):
        plan_study(paper_family("recipe.micro_batch_size={6: 16, 30: 256}", "resources.gpus={6: 1, 30: 8}"))


@pytest.mark.parametrize("memory", ["0", "-80"])
def test_gpu_memory_must_be_positive(memory):
    with pytest.raises(ConfigError, match=rf"^resources\.gpu_memory_gb: must be > 0, got {float(memory)}$"):
        paper_family(f"resources.gpu_memory_gb={memory}")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "recipe.attention=xformers",
            rf"recipe\.attention: 'xformers' is not allowed; choose one of {', '.join(ATTENTION_CHOICES)}$",
        ),
        ("recipe.micro_batch_size=big", r"recipe\.micro_batch_size: expected a positive integer or auto, got 'big'"),
        ("recipe.micro_batch_size=0", r"recipe\.micro_batch_size: expected a positive integer or auto, got 0"),
        ("recipe.compile=maybe", r"recipe\.compile: expected true, false or auto, got 'maybe' \(str\)"),
        (
            "recipe.sharding={6: ddp, 24: zero3}",
            r"recipe\.sharding\[24\]: 'zero3' is not allowed; choose one of auto, ddp, fsdp",
        ),
        ("recipe.activation_checkpointing=all", r"recipe\.activation_checkpointing: 'all' is not allowed"),
    ],
)
def test_execution_fields_name_their_path_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=rf"^{message}"):
        paper_family(override)


def test_flex_attention_on_a_cpu_trial_is_refused_before_launch(tmp_path):
    with pytest.raises(ConfigError, match=r"^recipe\.attention: 'flex' has no backward on cpu in this torch, and "):
        plan_study(load_study(str(TINY), [f"storage={tmp_path}", "recipe.attention=flex"]))


def test_a_throughput_file_sets_the_time_estimate_and_the_table_says_so(tmp_path):
    stated = paper_family()
    path = measured(tmp_path / "throughput.json", H200, {6: 1e14, 30: 4e14})
    spec = paper_family(f"resources.throughput_file={path}")
    for row, fallback in zip(dry_run_rows(spec), dry_run_rows(stated), strict=True):
        depth = row["depth"]
        flops_per_second = 1e14 + (depth - 6) / 24 * 3e14  # linear in depth between the measured ones
        assert row["seconds"] == pytest.approx(row["flops"] / (flops_per_second * row["gpus"]))
        assert fallback["seconds"] == pytest.approx(row["flops"] / (4e14 * row["gpus"]))
    assert f"time from throughput file {path} (device 'NVIDIA H200', interpolated across depth)" in (
        dry_run_table(spec)
    )
    assert "time at the stated 4e+14 FLOP/s per GPU (resources.flops_per_second" in dry_run_table(stated)


def test_a_throughput_file_of_another_device_is_refused_naming_both(tmp_path):
    path = measured(tmp_path / "throughput.json", "NVIDIA H100 80GB HBM3", {6: 1e14})
    with pytest.raises(
        ConfigError,
        match=r"^resources\.throughput_file: .*throughput\.json was measured on \['NVIDIA H100 80GB HBM3'\], "
        r"not on resources\.device_name 'NVIDIA H200'",
    ):
        dry_run_rows(paper_family(f"resources.throughput_file={path}", f"resources.device_name={H200}"))
    measured(path, H200, {6: 1e14})
    with pytest.raises(ConfigError, match=r"^resources\.device_name: required, because throughput file .* holds 2"):
        dry_run_rows(paper_family(f"resources.throughput_file={path}"))


def test_a_throughput_file_without_the_trials_setting_names_the_trial(tmp_path):
    path = measured(tmp_path / "throughput.json", H200, {6: 1e14})
    with pytest.raises(ConfigError, match=r"^resources\.throughput_file: trial d6-b1e18-s0: .* has no measurement"):
        dry_run_rows(paper_family(f"resources.throughput_file={path}", "recipe.compile=false"))


def test_a_relative_throughput_file_is_taken_from_the_study_directory(tmp_path):
    measured(tmp_path / "throughput.json", H200, {6: 1e14})
    spec = load_study(str(PAPER_FAMILY), ["resources.throughput_file=throughput.json"], base_directory=str(tmp_path))
    assert spec.resources.throughput_file == str(tmp_path / "throughput.json")


def test_the_references_d20_layout_is_refused_before_launch():
    # VAR issue #142: d20 at batch 768 on 8 GPUs, 96 images per GPU in one pass, runs out of
    # memory on 80 GB GPUs; written out, the study says so at plan time.
    spec = load_study(
        str(IMAGENET),
        [
            "data.root=/datasets/imagenet",
            "recipe.micro_batch_size={6: auto, 20: 96, 22: auto}",
            "recipe.activation_checkpointing=none",
            "recipe.sharding=ddp",
        ],
    )
    with pytest.raises(
        ConfigError,
        match=r"^trials d20-b6\.4e7-s0, d20-b2\.56e8-s0 \(depth 20, recipe\.batch_size 768 over 8 GPU\(s\) of "
        r"resources\.gpu_memory_gb 80, bf16\): does not fit in GPU memory: at micro-batch 96 it needs at least "
        r"(8\d|9\d|1\d\d)\.\d GB per GPU, 72\.0 GB available",
    ):
        plan_study(spec)


def test_execution_fields_round_trip_through_the_resolved_spec(tmp_path):
    path = measured(tmp_path / "throughput.json", H200, {6: 1e14})
    overrides = [
        "recipe.micro_batch_size={6: auto, 16: 8}",
        "recipe.sharding={6: ddp, 24: fsdp}",
        "recipe.compile=false",
        "recipe.attention=sdpa",
        f"resources.throughput_file={path}",
        f"resources.device_name={H200}",
        "resources.gpu_memory_gb=141",
    ]
    spec = paper_family(*overrides)
    saved = tmp_path / "study.resolved.yaml"
    saved.write_text(spec_to_yaml(spec))
    again = load_study(str(saved))
    assert again == spec
    assert (again.recipe.micro_batch_size.at(20), again.recipe.sharding.at(30), again.recipe.compile) == (
        8,
        "fsdp",
        False,
    )
    assert [trial.execution for trial in plan_study(again)] == [trial.execution for trial in plan_study(spec)]


def test_a_cpu_micro_batch_that_does_not_divide_the_batch_names_its_field(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"^recipe\.micro_batch_size: 3 at depth 1 does not divide the per-process share of recipe\.batch_size "
        r"8 over 1 process\(es\) on cpu \(8 images\); use auto or one of \[1, 2, 4, 8\]$",
    ):
        plan_study(load_study(str(TINY), [f"storage={tmp_path}", "recipe.micro_batch_size=3"]))

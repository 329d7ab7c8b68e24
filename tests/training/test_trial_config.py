import pytest

from var_model.errors import ConfigError
from var_model.training import TrialConfig
from var_model.training.config_comparison import RESUME_FREE_FIELDS


def test_yaml_round_trip_keeps_every_field(tmp_path):
    config = TrialConfig(
        token_cache="/c",
        output_dir="/o",
        model={"depth": 3},
        budget_kind="flops",
        budget_value=1e12,
        schedule="wsd",
        eval_images=100,
    )
    path = tmp_path / "trial.yaml"
    config.to_yaml(path)
    assert TrialConfig.from_yaml(path) == config
    assert TrialConfig.from_dict(config.to_dict()) == config
    assert config.peak_lr == pytest.approx(1e-4 * 64 / 256)
    assert TrialConfig.from_yaml(path).divergence_loss is None  # 2 ln V of the cache, resolved at build


def test_yaml_numbers_without_a_dot_are_read_as_numbers(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text("token_cache: c\noutput_dir: o\nmodel: {depth: 2}\nbudget_kind: flops\nbudget_value: 1e12\n")
    assert TrialConfig.from_yaml(path).budget_value == 1e12


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"budget_kind": "epochs"}, "budget_kind"),
        ({"budget_value": 0}, "budget_value"),
        ({"schedule": "step"}, "schedule"),
        ({"batch_size": 0}, "batch_size"),
        ({"model": {"depth": 2, "codebook_size": 10}}, "come from the token cache"),
        ({"model": {"depth": 2, "detph": 3}}, "unknown model keys"),
        ({"model": {}}, "model.depth"),
        ({"precision": "fp8"}, "precision"),
        ({"device": "tpu"}, "device"),
        ({"warmup_fraction": 1.5}, "warmup_fraction"),
        ({"micro_batch_size": 5}, "micro_batch_size 5 does not divide batch_size 64"),
        ({"micro_batch_size": 0}, "micro_batch_size"),
        ({"micro_batch_size": "auto"}, "micro_batch_size"),
        ({"sharding": "zero3"}, "sharding is 'zero3'; allowed: ddp, fsdp"),
        ({"attention": "flash"}, "attention is 'flash'; allowed: auto, sdpa, scalewise, flex"),
        ({"activation_checkpointing": "all"}, "activation_checkpointing is 'all'; allowed: none, blocks"),
        ({"compile": "yes"}, "compile is 'yes'; allowed: true, false, auto"),
        ({"compile": 1}, "compile is 1"),
    ],
)
def test_invalid_fields_are_named(changes, fragment):
    values = {"token_cache": "/c", "output_dir": "/o", **changes}
    with pytest.raises(ConfigError, match=fragment):
        TrialConfig(**values)


def test_unknown_and_missing_keys(tmp_path):
    with pytest.raises(ConfigError, match="unknown trial config keys"):
        TrialConfig.from_dict({"token_cache": "c", "output_dir": "o", "lr": 1})
    with pytest.raises(ConfigError, match="lacks required"):
        TrialConfig.from_dict({"token_cache": "c"})
    with pytest.raises(ConfigError, match="does not exist"):
        TrialConfig.from_yaml(tmp_path / "missing.yaml")


def test_execution_choices_round_trip_and_do_not_block_a_resume(tmp_path):
    config = TrialConfig(
        token_cache="/c",
        output_dir="/o",
        batch_size=32,
        micro_batch_size=8,
        activation_checkpointing="blocks",
        sharding="fsdp",
        compile=False,
        attention="sdpa",
    )
    path = tmp_path / "trial.yaml"
    config.to_yaml(path)
    assert TrialConfig.from_yaml(path) == config
    for name in ("micro_batch_size", "activation_checkpointing", "sharding", "compile", "attention"):
        assert name in RESUME_FREE_FIELDS, name


SHA = "ab" * 32
TRUNK = {"schedule": "wsd", "warmup_steps": 2, "budget_value": 300, "fork_budgets": [100, 300]}
BRANCH = {
    "schedule": "wsd",
    "warmup_steps": 2,
    "fork_path": "/t/forks/step_000000008.pt",
    "fork_sha256": SHA,
    "fork_step": 8,
}


def test_roles_round_trip_through_yaml(tmp_path):
    trunk = TrialConfig(token_cache="/c", output_dir="/o", decay_shape="sqrt", **TRUNK)
    branch = TrialConfig(token_cache="/c", output_dir="/b", **BRANCH)
    assert (trunk.role, branch.role, TrialConfig(token_cache="/c", output_dir="/o").role) == (
        "trunk",
        "branch",
        "independent",
    )
    assert trunk.fork_budgets == (100.0, 300.0)
    for config in (trunk, branch):
        path = tmp_path / "trial.yaml"
        config.to_yaml(path)
        assert TrialConfig.from_yaml(path) == config


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"decay_shape": "exponential"}, "decay_shape is 'exponential'; allowed: linear, sqrt, cosine"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({**TRUNK, "schedule": "paper"}, "schedule is 'paper'; a trunk needs schedule wsd"),
        ({**TRUNK, "decay_fraction": 0.0}, "decay_fraction is 0.0; a trunk needs it in \\(0, 1\\)"),
        ({**BRANCH, "decay_fraction": 1.0}, "decay_fraction is 1.0; a branch needs it in \\(0, 1\\)"),
        ({**TRUNK, "warmup_steps": None}, "warmup_steps is None; a trunk needs a warm-up fixed in steps"),
        ({**TRUNK, "budget_value": 100}, "budget_value is 100, but a trunk's budget_value is the largest"),
        ({**TRUNK, "fork_budgets": [300, 300]}, "fork_budgets .* repeats a budget"),
        ({**TRUNK, "fork_budgets": [300, -1]}, "fork_budgets is -1"),
        ({**BRANCH, "fork_sha256": None}, "but not \\['fork_sha256'\\]"),
        ({**BRANCH, "fork_sha256": "AB" * 32}, "fork_sha256 is 'ABAB"),
        ({**BRANCH, "fork_step": 0}, "fork_step is 0"),
        ({**BRANCH, "fork_budgets": [10]}, "both fork_budgets \\(a trunk\\) and fork_path \\(a branch\\)"),
    ],
)
def test_invalid_branching_fields_are_named(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TrialConfig(token_cache="/c", output_dir="/o", **changes)

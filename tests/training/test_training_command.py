import argparse

import pytest
import yaml

from var_model.errors import ConfigError, DataError
from var_model.tokenizer.cache import TokenCache
from var_model.training.command import register


def _parser():
    parser = argparse.ArgumentParser(prog="varscale")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_train_then_sample_through_the_registered_subcommands(tiny_trial, tmp_path, capsys):
    path = tmp_path / "trial.yaml"
    tiny_trial.to_yaml(path)
    args = _parser().parse_args(["train", str(path), "--set", "budget_value=64", "--no-resume"])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "completed after 4 steps" in printed and "unigram_test_loss_avg" in printed
    out = tmp_path / "grid.png"
    args = _parser().parse_args(
        [
            "sample",
            f"{tiny_trial.output_dir}/checkpoint.pt",
            "--labels",
            "0",
            "3",
            "--per-label",
            "2",
            "--out",
            str(out),
        ]
    )
    assert args.handler(args) == 0 and out.is_file()


def test_tokenizer_subcommand_reports_reuse(tiny_stage, tmp_path, capsys):
    config, result = tiny_stage
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    args = _parser().parse_args(["tokenizer", str(path)])
    assert args.handler(args) == 0
    printed = capsys.readouterr().out
    assert "(reused)" in printed and "codebook usage per scale" in printed and result.cache_path in printed


def test_cache_root_with_one_cache_resolves_and_with_two_is_ambiguous(tiny_stage, tmp_path):
    _, result = tiny_stage
    root = TokenCache.open(result.cache_path).path.parent
    assert TokenCache.open(root, verify=False).path == TokenCache.open(result.cache_path).path
    (tmp_path / "tokens-a").mkdir()
    (tmp_path / "tokens-a" / "manifest.json").write_text("{}")
    (tmp_path / "tokens-b").mkdir()
    (tmp_path / "tokens-b" / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match="holds 2 token caches"):
        TokenCache.open(tmp_path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.colour=red", r"unknown model keys \['colour'\]"),  # a sub-key reaches the nested mapping
        ("budget_value", r"--set 'budget_value': expected KEY\.SUB=VALUE, e\.g\. --set budget_value=2e4"),
        ("budget_value=[1", r"--set 'budget_value=\[1': the value is not valid YAML"),
    ],
)
def test_train_set_speaks_the_study_dialect(tiny_trial, tmp_path, override, message):
    path = tmp_path / "trial.yaml"
    tiny_trial.to_yaml(path)
    args = _parser().parse_args(["train", str(path), "--set", override])
    with pytest.raises(ConfigError, match=message):
        args.handler(args)
    assert not (tmp_path / "trial" / "checkpoint.pt").exists()

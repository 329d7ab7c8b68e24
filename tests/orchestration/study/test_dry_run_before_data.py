"""Issue 15: users price a study before they copy ImageNet to the cluster. `varscale dry-run` of
the paper's study works without data.root and says that launch will need it; launch refuses."""

from pathlib import Path

import pytest

from orchestration.cli import main
from orchestration.study.loading import load_study
from orchestration.study.trial_config import plan_study
from var_model.errors import ConfigError

PAPER_STUDY = str(Path(__file__).parents[3] / "studies" / "var_imagenet256.yaml")
NEEDS_ROOT = "data.root: not set; launch needs the image folder"


def test_dry_run_prices_the_paper_study_before_the_data_exists(tmp_path, capsys):
    assert main(["dry-run", PAPER_STUDY, "--set", f"storage={tmp_path}"]) == 0
    output = capsys.readouterr().out
    assert "d30-b2.56e8-s0" in output and "GPU-hours" in output
    assert output.strip().splitlines()[-1].startswith(f"before launch: {NEEDS_ROOT}")


def test_dry_run_with_the_root_set_has_no_such_line(tmp_path, capsys):
    assert main(["dry-run", PAPER_STUDY, "--set", f"storage={tmp_path}", "--set", "data.root=/datasets/imagenet"]) == 0
    assert "before launch" not in capsys.readouterr().out


def test_planning_for_a_launch_refuses_a_study_without_its_data(tmp_path):
    spec = load_study(PAPER_STUDY, [f"storage={tmp_path}"])
    with pytest.raises(ConfigError, match=rf"^{NEEDS_ROOT}"):
        plan_study(spec)
    assert len(plan_study(spec, for_launch=False)) == 24


@pytest.mark.slow  # imports Ray: ~10 s on a loaded machine; plan_study above is the same refusal
def test_launch_refuses_without_data_root(tmp_path, capsys):
    assert main(["launch", PAPER_STUDY, "--set", f"storage={tmp_path}"]) == 2
    assert NEEDS_ROOT in capsys.readouterr().err

"""A trunk's closing work: no sample grid (its weights are a fork's, never a trained run of a budget)."""

from pathlib import Path

from var_model.training import run_trial
from var_model.training.closing import SAMPLES_FILE
from var_model.training.forks import branch_config, read_forks, trunk_config

# batch 16: budgets of 4 and 6 steps fork at steps 3 and 5 (decay_fraction 0.2)
SHORT, LONG = 16 * 4, 16 * 6


def test_a_trunk_writes_no_sample_grid_and_its_branches_do(tiny_trial, tmp_path):
    base = tiny_trial.replace(
        schedule="wsd", warmup_steps=1, decay_fraction=0.2, sample_grid=True, samples_per_class=1, eval_images=16
    )
    trunk = trunk_config(base, [SHORT, LONG], str(tmp_path / "trunk"))
    trunk_result = run_trial(trunk, resume=False)
    assert trunk_result.status == "completed" and trunk_result.info["role"] == "trunk"
    assert not (Path(trunk.output_dir) / SAMPLES_FILE).exists()
    fork = read_forks(trunk.output_dir)[0]
    branch = branch_config(trunk, fork, str(tmp_path / "branch"))
    assert run_trial(branch, resume=False).status == "completed"
    assert (Path(branch.output_dir) / SAMPLES_FILE).is_file()

"""Study files: a good one parses into the expected trials; each kind of mistake is refused
with a message that names the field, the value and what is allowed."""

from pathlib import Path

import pytest
import yaml

from orchestration.study.loading import load_study, parse_study, spec_to_yaml
from orchestration.study.trial_config import build_trial_config, plan_study
from orchestration.study.trials import expand, format_budget, tokenizer_config
from var_model.errors import ConfigError

FIXTURES = Path(__file__).parents[1] / "fixtures"
TINY = FIXTURES / "tiny_study.yaml"


def tiny_mapping() -> dict:
    return yaml.safe_load(TINY.read_text())


def changed_mapping(**changes) -> dict:
    mapping = tiny_mapping()
    for dotted, value in changes.items():
        node = mapping
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return mapping


def parse_with(tmp_path, **changes) -> None:
    """Validate the tiny study with `changes` and plan its trials (every check before a launch)."""
    plan_study(parse_study(changed_mapping(**changes), base_directory=str(tmp_path)))


def test_tiny_study_expands_to_keyed_trials(tmp_path):
    spec = load_study(str(TINY), [f"storage={tmp_path}"])
    trials = expand(spec)
    assert [trial.key for trial in trials] == ["d1-b16-s0", "d1-b32-s0", "d2-b16-s0", "d2-b32-s0"]
    first = trials[0]
    assert (first.width, first.heads, first.steps, first.images) == (32, 2, 2, 16)
    assert first.lr == pytest.approx(0.032 * 8 / 256)
    assert spec.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"


def test_overrides_are_typed_by_yaml(tmp_path):
    spec = load_study(
        str(TINY), [f"storage={tmp_path}", "model.depths=[3]", "recipe.base_lr=1e-2", "budgets.values={3: [64]}"]
    )
    (trial,) = expand(spec)
    assert (trial.depth, trial.key, trial.steps) == (3, "d3-b64-s0", 8)
    assert spec.recipe.base_lr.at(3) == 0.01


def test_resolved_spec_round_trips(tmp_path):
    spec = load_study(str(TINY), [f"storage={tmp_path}"])
    saved = tmp_path / "study.resolved.yaml"
    saved.write_text(spec_to_yaml(spec))
    again = load_study(str(saved))
    assert again == spec
    assert [trial.key for trial in expand(again)] == [trial.key for trial in expand(spec)]


def test_budget_keys_are_short_and_stable():
    assert [format_budget(value) for value in (1e12, 2.5e11, 5000.0, 16.0, 3e-5)] == [
        "1e12",
        "2.5e11",
        "5000",
        "16",
        "3e-5",
    ]
    assert format_budget(12000.0) == "12000" and format_budget(2.5e6) == "2.5e6"


def test_unknown_key_is_named_with_its_path(tmp_path):
    with pytest.raises(
        ConfigError, match=r"model\.widht_per_depth: unknown key 'widht_per_depth'.*allowed keys: depths"
    ):
        parse_with(tmp_path, model__widht_per_depth=64)


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^sedes: unknown key 'sedes' in the study file"):
        parse_with(tmp_path, sedes=[0])


def test_wrong_type_names_field_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.depths\[1\]: expected an integer, got 'two' \(str\)"):
        parse_with(tmp_path, model__depths=[1, "two"])
    with pytest.raises(ConfigError, match=r"recipe\.base_lr: expected a number, got 'fast' \(str\)"):
        parse_with(tmp_path, recipe__base_lr="fast")


def test_empty_depth_list(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.depths: must not be empty"):
        parse_with(tmp_path, model__depths=[])


def test_budget_that_gives_zero_steps(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"budgets\.values: images budget 4 gives 0 steps at depth 1 "
        r"with recipe\.batch_size 8",
    ):
        parse_with(tmp_path, budgets__values=[4, 32])


def test_patch_nums_must_end_at_the_latent_side(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"model\.patch_nums: \[1, 2, 3\] must end at the latent side 4 "
        r"\(data\.resolution 32 / tokenizer downsampling 8\)",
    ):
        parse_with(tmp_path, model__patch_nums=[1, 2, 3])


def test_missing_required_field(tmp_path):
    mapping = tiny_mapping()
    del mapping["recipe"]["batch_size"]
    with pytest.raises(ConfigError, match=r"recipe\.batch_size: required field is missing"):
        parse_study(mapping, base_directory=str(tmp_path))


def test_choice_fields_list_what_is_allowed(tmp_path):
    with pytest.raises(
        ConfigError, match=r"budgets\.kind: 'epochs' is not allowed; choose one of flops, images, tokens"
    ):
        parse_with(tmp_path, budgets__kind="epochs")


def test_per_depth_budgets_must_cover_every_depth(tmp_path):
    with pytest.raises(ConfigError, match=r"budgets\.values: no budgets for depth\(s\) \[2\] of model\.depths"):
        parse_with(tmp_path, budgets__values={1: [16]})


def test_depth_rule_must_start_at_or_below_every_depth(tmp_path):
    with pytest.raises(ConfigError, match=r"recipe\.batch_size: no value for depth 1; the mapping starts at depth 2"):
        parse_with(tmp_path, recipe__batch_size={2: 8})


def test_width_must_split_into_heads(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.width_per_depth: 40 must be a multiple of model\.head_dim \(16\)"):
        parse_with(tmp_path, model__width_per_depth=40)


def test_trial_section_refuses_fields_the_study_sets(tmp_path):
    with pytest.raises(ConfigError, match=r"trial\.batch_size: set by the study"):
        parse_with(tmp_path, trial__batch_size=4)


def test_data_errors_come_from_the_data_config(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.resolution is 30"):
        parse_with(tmp_path, data__resolution=30)


def test_yaml_object_tags_are_refused(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml:1:7: could not determine a constructor for the tag"):
        load_study(str(evil))


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match=r"--set 'model\.depths': expected KEY\.SUB=VALUE"):
        load_study(str(TINY), ["model.depths"])


def test_multi_gpu_trials_take_whole_gpus(tmp_path):
    with pytest.raises(ConfigError, match=r"resources\.gpus: 1\.5 GPUs at depth 2; above 1 use a whole number"):
        parse_with(tmp_path, resources__gpus={1: 0.5, 2: 1.5})


def test_a_file_with_three_mistakes_reports_all_three_with_their_paths(tmp_path):
    mapping = changed_mapping(model__depths=[1, "two"], recipe__base_lr="fast", sedes=[0])
    with pytest.raises(ConfigError) as raised:
        parse_study(mapping, base_directory=str(tmp_path))
    lines = str(raised.value).splitlines()
    assert lines == [
        "model.depths[1]: expected an integer, got 'two' (str)",
        "recipe.base_lr: expected a number, got 'fast' (str)",
        "sedes: unknown key 'sedes' in the study file (allowed keys: budgets, data, evaluation, model, name, recipe, "
        "resources, seeds, storage, tokenizer, tracking_uri, trial)",
    ]


def test_loading_does_not_expand_trials(tmp_path):
    # A budget too small for one step is a property of the plan, not of the file: the file
    # loads, and planning its trials names the problem.
    spec = parse_study(changed_mapping(budgets__values=[4, 32]), base_directory=str(tmp_path))
    assert spec.budgets.for_depth(1) == (4.0, 32.0)
    with pytest.raises(ConfigError, match=r"budgets\.values: images budget 4 gives 0 steps"):
        plan_study(spec)


def test_each_trial_default_is_read_from_the_trial_config():
    from orchestration.study.spec import RecipeSpec
    from var_model.training.config import TrialConfig

    recipe = RecipeSpec(batch_size=8, base_lr=1e-4)
    defaults = TrialConfig(token_cache="c", output_dir="o")
    assert (
        recipe.warmup_fraction,
        recipe.schedule,
        recipe.final_lr_fraction.at(1),
        recipe.weight_decay,
        recipe.grad_clip,
        recipe.compile,
        recipe.attention,
    ) == (
        defaults.warmup_fraction,
        defaults.schedule,
        defaults.final_lr_fraction,
        defaults.weight_decay,
        defaults.grad_clip,
        defaults.compile,
        defaults.attention,
    )


def test_every_recipe_field_reaches_the_trial_config_at_its_depth(tmp_path):
    spec = load_study(str(TINY), [f"storage={tmp_path}", "recipe.final_lr_fraction={1: 0.1, 2: 0.01}"])
    trials = {trial.depth: trial for trial in expand(spec)}
    for depth, trial in trials.items():
        config = build_trial_config(spec, trial)
        # the recipe as written, its execution `auto`s as the plan resolved them
        expected = {**spec.recipe.trial_values(depth), **trial.execution.trial_values()}
        for name in type(spec.recipe).model_fields:
            assert getattr(config, name) == expected[name], name
    assert build_trial_config(spec, trials[2]).final_lr_fraction == 0.01


def test_a_key_written_without_a_value_takes_its_default_or_is_missing(tmp_path):
    spec = parse_study(changed_mapping(recipe__weight_decay=None), base_directory=str(tmp_path))
    assert spec.recipe.weight_decay == 0.05
    with pytest.raises(ConfigError, match=r"^name: required field is missing$"):
        parse_study(changed_mapping(name=None), base_directory=str(tmp_path))


def test_a_list_of_wrong_items_is_reported_once_per_item(tmp_path):
    with pytest.raises(ConfigError) as raised:
        parse_study(changed_mapping(model__depths=[0]), base_directory=str(tmp_path))
    assert str(raised.value) == "model.depths[0]: must be >= 1, got 0"


def test_tokenizer_overrides_take_every_vqvae_field_even_one_left_out_of_its_dict():
    # VQVAEConfig.to_dict leaves out norm_groups at its default (the tokenizer's key is that
    # dict), so the allowed overrides come from the dataclass's fields
    spec = load_study(TINY, ["tokenizer.overrides.norm_groups=8"])
    assert tokenizer_config(spec).norm_groups == 8
    with pytest.raises(ConfigError, match="norm_groups 12"):
        load_study(TINY, ["tokenizer.overrides.norm_groups=12"])

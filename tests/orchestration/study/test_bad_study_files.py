"""Bad study files (issue 14's held-out probe): each is refused through the real loader with one
line that names where the problem is, and `varscale dry-run` exits 2 with that line, no traceback."""

import random
import time
from pathlib import Path

import pytest

from orchestration.cli import main
from orchestration.study.loading import load_study
from var_model.errors import ConfigError
from var_model.yaml_input import MAX_EXPANDED_VALUES

TINY = Path(__file__).parents[1] / "fixtures" / "tiny_study.yaml"


def tiny_text() -> str:
    return TINY.read_text()


def write(tmp_path, text: str | bytes, name: str = "study.yaml") -> str:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def edited(old: str, new: str) -> str:
    text = tiny_text()
    assert old in text, old
    return text.replace(old, new, 1)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """'Billion laughs': each anchor a list of `width` aliases of the one before (9^9 values in 1 KB)."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]" for level in range(1, levels)]
    return "\n".join(lines) + "\n"


def refused(path: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as raised:
        load_study(path, overrides)
    message = str(raised.value)
    assert "\n" not in message, message
    return message


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    path = write(tmp_path, edited("seeds: [0]\n", "seeds: [0]\nseeds: [1]\n"))
    line = tiny_text().splitlines().index("seeds: [0]") + 1
    assert refused(path) == f"{path}:{line + 1}:1: duplicate key 'seeds' (first at line {line}); remove one of them"


def test_a_nested_key_written_twice_is_refused(tmp_path):
    path = write(tmp_path, edited("  batch_size: 8\n", "  batch_size: 8\n  batch_size: 16\n"))
    assert "duplicate key 'batch_size'" in refused(path)


def test_a_merge_key_may_be_overridden(tmp_path):
    # `<<: *anchor` then a key of the anchor is YAML's way to extend a mapping, not a duplicate
    text = edited("recipe:\n  batch_size: 8\n", "recipe:\n  <<: &common {batch_size: 4}\n  batch_size: 8\n")
    assert load_study(write(tmp_path, text), [f"storage={tmp_path}"]).recipe.batch_size.at(1) == 8


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    path = write(tmp_path, tiny_text().encode() + "# café\n".encode("latin-1"))
    message = refused(path)
    assert message.startswith(f"study file {path}:") and "not UTF-8 text (byte 0xe9" in message


@pytest.mark.parametrize("with_nul", [True, False])
def test_binary_junk_is_refused_in_one_line(tmp_path, with_nul):
    junk = random.Random(0).randbytes(1000)
    junk = junk if with_nul else junk.replace(b"\x00", b"\x01")
    message = refused(write(tmp_path, junk))
    assert ("binary, not YAML text" if with_nul else "not UTF-8 text") in message


def test_control_characters_are_named_with_line_and_column(tmp_path):
    path = write(tmp_path, edited("seeds: [0]", "seeds: [0]\x07"))
    line = tiny_text().splitlines().index("seeds: [0]") + 1
    assert refused(path).startswith(f"{path}:{line}:11: character #x0007 is not allowed")


def test_a_syntax_error_is_one_line_with_file_line_and_column(tmp_path):
    path = write(tmp_path, edited("seeds: [0]", "seeds: [0"))
    message = refused(path)
    assert message.startswith(f"{path}:") and "expected ',' or ']'" in message
    assert "while parsing a flow sequence at line" in message


@pytest.mark.timeout(30)
def test_an_alias_bomb_is_refused_at_once(tmp_path):
    bomb = alias_bomb()
    assert len(bomb) < 1100  # the probe's 1 KB
    # in a field the study validates and prints, every step after reading would walk 9^9 values
    text = bomb + edited("  sample_grid: true", "  sample_grid: *a8")
    started = time.monotonic()
    message = refused(write(tmp_path, text))
    assert time.monotonic() - started < 5
    assert f"(at most {MAX_EXPANDED_VALUES:,}): refused as an alias bomb" in message


def test_a_few_aliases_are_fine(tmp_path):
    text = edited("  seed: 0\n", "  seed: &first_seed 3\n").replace("seeds: [0]", "seeds: [*first_seed]")
    assert load_study(write(tmp_path, text), [f"storage={tmp_path}"]).seeds == (3,)


def test_a_recursive_alias_is_refused(tmp_path):
    assert "recursive alias" in refused(write(tmp_path, tiny_text() + "loop: &loop [*loop]\n"))


def test_resize_ratio_that_is_not_a_number_names_the_field(tmp_path):
    text = edited("  kind: synthetic\n", "  kind: image_folder\n  root: /datasets/imagenet\n  resize_ratio: abc\n")
    text = text.replace("  num_classes: 4\n  train_images: 64\n  test_images: 16\n", "")
    assert refused(write(tmp_path, text)) == "data.resize_ratio: expected a number, got 'abc' (str)"


def test_a_model_override_of_the_wrong_type_names_the_field(tmp_path):
    path = write(tmp_path, edited("  head_dim: 16\n", "  head_dim: 16\n  overrides: {mlp_ratio: fast}\n"))
    assert refused(path) == "model.overrides.mlp_ratio: expected a number, got 'fast' (str)"


def test_a_model_override_out_of_range_names_the_override(tmp_path):
    path = write(tmp_path, edited("  head_dim: 16\n", "  head_dim: 16\n  overrides: {mlp_ratio: -1}\n"))
    assert refused(path) == "model.overrides.mlp_ratio: mlp_ratio=-1 is not allowed: a positive number"


def test_an_absurd_depth_names_the_depth_not_a_derived_field(tmp_path):
    path = write(tmp_path, edited("  depths: [1, 2]", f"  depths: [1, {10**32}]"))
    message = refused(path)
    assert message.startswith(f"model.depths[1]: depth {10**32} gives an invalid model: drop_path_rate=")


def test_tokenizer_override_and_training_types_name_the_field(tmp_path):
    assert refused(str(TINY), ["tokenizer.overrides.beta=x"]) == (
        "tokenizer.overrides.beta: expected a number, got 'x' (str)"
    )
    assert refused(str(TINY), ["tokenizer.training.steps=fast"]) == (
        "tokenizer.training.steps: expected an integer, got 'fast' (str)"
    )


def test_overrides_get_the_same_checks():
    assert "duplicate key 'mlp_ratio'" in refused(str(TINY), ["model.overrides={mlp_ratio: 2, mlp_ratio: 3}"])
    assert refused(str(TINY), ["seeds=[0,"]).startswith("--set 'seeds=[0,': the value is not valid YAML (column")
    flow_bomb = (
        "[&a ["
        + ",".join(["x"] * 9)
        + "]"
        + "".join(
            f", &{name} [{','.join([f'*{previous}'] * 9)}]"
            for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
        )
    )
    assert "alias bomb" in refused(str(TINY), [f"trial.sample_grid={flow_bomb}]"])
    assert refused(str(TINY), ["model.overrides.mlp_ratio=fast"]) == (
        "model.overrides.mlp_ratio: expected a number, got 'fast' (str)"
    )


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(edited("seeds: [0]\n", "seeds: [0]\nseeds: [1]\n"), id="duplicate-key"),
        pytest.param(b"name: x\n\xff\xfe\n", id="not-utf8"),
        pytest.param(random.Random(1).randbytes(600), id="binary"),
        pytest.param(edited("seeds: [0]", "seeds: [0"), id="syntax"),
        pytest.param(alias_bomb() + tiny_text(), id="alias-bomb"),
        pytest.param(edited("  head_dim: 16\n", "  head_dim: 16\n  overrides: {mlp_ratio: fast}\n"), id="mlp-ratio"),
    ],
)
def test_dry_run_exits_2_with_one_line(tmp_path, capsys, content):
    assert main(["dry-run", write(tmp_path, content), "--set", f"storage={tmp_path}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("varscale dry-run: error: ")


def test_override_values_follow_the_study_rules_for_numbers(tmp_path):
    # YAML 1.1 reads 1e-2 (no dot) as a string; number fields take it as the number it spells
    spec = load_study(str(TINY), [f"storage={tmp_path}", "model.overrides.drop_path_rate=1e-2"])
    assert spec.model.overrides == {"drop_path_rate": 0.01}
    assert refused(str(TINY), ["tokenizer.overrides.channel_multipliers=[1, x]"]) == (
        "tokenizer.overrides.channel_multipliers: expected a list of integers, got [1, 'x'] (list)"
    )


def test_a_folder_is_not_a_study_file(tmp_path):
    assert refused(str(tmp_path)).endswith("does not exist or is not a file (e.g. studies/smoke.yaml)")

"""YAML that a person wrote (a study file, a `--set` value), read safely, strictly and boundedly.

    mapping = read_yaml_file("studies/smoke.yaml", what="study file")
    value = load_yaml("[2, 4]", source="--set model.depths")

PyYAML's `safe_load` constructs no objects from tags, but it still accepts what a strict reader
must refuse, and its errors take 4-5 lines. Here:
- a key written twice in one mapping is an error naming the key and both lines (PyYAML keeps
  the last one silently; the YAML spec requires keys to be unique);
- aliases that expand to more than MAX_EXPANDED_VALUES values are refused before anything walks
  them: a 1 KB "billion laughs" file expands to 10^9 values, and every later step (validation,
  copies, error messages) would walk them all; a recursive alias is refused too;
- a file that is not UTF-8 text, is binary, is larger than MAX_FILE_BYTES or is nested deeper
  than the parser's recursion allows is a one-line error, not a traceback;
- every error is one line, `SOURCE:LINE:COLUMN: problem`, as compilers print them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from var_model.errors import ConfigError

# A study file holds a few hundred values; aliases may repeat a section, never blow it up.
MAX_EXPANDED_VALUES = 10_000
# A study file is a few KB; a checkpoint or a dataset given by mistake is refused before it is read.
MAX_FILE_BYTES = 1_000_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlInputError(ConfigError):
    """One line: where (source, and line and column when known) and what is wrong."""

    def __init__(self, source: str, problem: str, line: int | None = None, column: int | None = None):
        where = source if line is None else f"{source}:{line}:{column}"
        super().__init__(f"{where}: {problem}")
        self.source, self.problem, self.line, self.column = source, problem, line, column


def _lines(mark) -> tuple[int, int]:
    # PyYAML counts lines and columns from 0; editors and compilers from 1.
    return mark.line + 1, mark.column + 1


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and alias bombs (see the module docstring)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue  # `<<: *defaults` keys may be overridden: that is what merging is for
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first_lines
                except TypeError:
                    continue  # an unhashable key: SafeConstructor reports it
                if seen:
                    raise ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at line {first_lines[key]}); remove one of them",
                        key_node.start_mark,
                    )
                first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand to more than MAX_EXPANDED_VALUES values, counting
    each node once per reference without walking the expansion (memoized per node)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    unique: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in in_progress:
            raise ComposerError(None, None, "recursive alias (an anchor used inside itself)", node.start_mark)
        in_progress.add(id(node))
        unique.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(key) + size(value) for key, value in node.value)
        else:
            total = 1
        in_progress.discard(id(node))
        sizes[id(node)] = total
        return total

    expanded = size(root)
    if expanded > MAX_EXPANDED_VALUES and expanded > len(unique):
        raise ComposerError(
            None,
            None,
            f"its aliases expand to {expanded:,} values (at most {MAX_EXPANDED_VALUES:,}): refused as an alias "
            "bomb; write the values out or use fewer aliases",
            root.start_mark,
        )


def load_yaml(text: str, source: str) -> Any:
    """The value of one YAML document; YamlInputError (a ConfigError) naming `source`, the line
    and the column of the first problem."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader: no tags construct objects
    except yaml.MarkedYAMLError as error:
        line, column = _lines(error.problem_mark) if error.problem_mark else (None, None)
        problem = error.problem or str(error)
        if error.context and error.context_mark:
            context_line, context_column = _lines(error.context_mark)
            problem += f" ({error.context} at line {context_line}, column {context_column})"
        elif error.context:
            problem += f" ({error.context})"
        raise YamlInputError(source, problem, line, column) from None
    except yaml.reader.ReaderError as error:
        # a control character: PyYAML gives its offset in the text
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise YamlInputError(
            source, f"character #x{error.character:04x} is not allowed in YAML text ({error.reason})", line, column
        ) from None
    except yaml.YAMLError as error:
        raise YamlInputError(source, " ".join(str(error).split())) from None
    except RecursionError:
        raise YamlInputError(source, "nested too deeply to read (hundreds of levels); is it a YAML file?") from None


def read_yaml_file(path: str, what: str = "YAML file") -> Any:
    """The value of the YAML file at `path` (`what` names it in errors: 'study file')."""
    file_path = Path(path)
    if not file_path.is_file():
        raise ConfigError(f"{what} {path!r} does not exist or is not a file")
    try:
        size = file_path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{what} {path}: {size:,} bytes, over {MAX_FILE_BYTES:,}; is it a YAML file?")
        data = file_path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{what} {path}: cannot be read ({error.strerror})") from None
    if b"\x00" in data:
        raise ConfigError(f"{what} {path}: holds NUL bytes, so it is binary, not YAML text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ConfigError(
            f"{what} {path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8"
        ) from None
    return load_yaml(text, path)

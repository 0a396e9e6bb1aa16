"""Read ``cortex.yaml`` / ``inferd.yaml``: safe YAML with the line of every value remembered.

This is the only module that reads YAML. Errors name the file, the line and the field path,
e.g. ``cortex.yaml:14: api 'classifier': compute.min_replicas: must be >= 1``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from inferd.config import CONFIG_NAMES
from inferd.config.messages import Location, config_error, one_line
from inferd.config.rules import check_project
from inferd.config.rules import resolved as resolved_path
from inferd.config.schema import Api, Deployment, FieldError, Project, TrafficSplitter
from inferd.errors import ConfigError, shown
from inferd.procfs import working_folder_exists

# Files people hand ``inferd deploy`` by mistake (the handler, the model) for a config.
NOT_CONFIG = {
    ".py": "a Python file",
    ".ipynb": "a notebook",
    ".json": "a JSON file (a sample?)",
    ".onnx": "a model",
    ".pb": "a model",
    ".pt": "a model",
    ".pth": "a model",
    ".pkl": "a model",
    ".pickle": "a model",
    ".joblib": "a model",
    ".h5": "a model",
    ".zip": "an archive",
}
# Far beyond any real project (10,000 APIs take ~1 MiB and ~50,000 values), and small enough
# that a hostile file fails in well under a second: a 50 MiB file took minutes to read, and an
# alias bomb (``&a [*b, *b, ...]`` nested) expands to billions of values.
MAX_CONFIG_BYTES = 4 << 20
MAX_VALUES = 200_000
MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1: ``yes``/``on`` are booleans) where ``1e-3`` is a float.

    YAML 1.1's float pattern needs a dot, so PyYAML alone reads ``1e-3`` as a string; Cortex's
    reader (go-yaml) read it as a number, and so do YAML 1.2 and every user. The added pattern
    covers exponents without a dot and leaves every other scalar as PyYAML reads it.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.merged_pairs: dict[int, int] = {}  # id of a map -> how many of its pairs ``<<`` merged

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """PyYAML's ``<<`` merge, which rewrites ``node`` in place, merged pairs first; the
        number of those is kept, as a map used again (``*alias``) is already rewritten and its
        own keys cannot be told from the merged ones otherwise."""
        if id(node) in self.merged_pairs:
            return
        written = sum(key.tag != MERGE_TAG for key, _ in node.value)
        super().flatten_mapping(node)
        self.merged_pairs[id(node)] = len(node.value) - written


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


# go-yaml (Cortex's reader) left a date or a time as its text (``model_date: 2019-11-21`` in
# ``metadata`` reached handlers as "2019-11-21", ``at: 12:30:00`` as "12:30:00"); PyYAML makes
# a date and a base-60 number (45000) of them.
def _text(loader: _Loader, node: yaml.Node) -> Any:
    return loader.construct_scalar(node)  # type: ignore[arg-type]


def _number(loader: _Loader, node: yaml.Node) -> Any:
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    if isinstance(text, str) and ":" in text:
        return text
    if node.tag.endswith(":int"):
        return yaml.SafeLoader.construct_yaml_int(loader, node)  # type: ignore[arg-type]
    return yaml.SafeLoader.construct_yaml_float(loader, node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _text)
_Loader.add_constructor("tag:yaml.org,2002:int", _number)
_Loader.add_constructor("tag:yaml.org,2002:float", _number)


def find_config(project_dir: Path) -> Path:
    """The config file of a project folder (``cortex.yaml`` first, then ``inferd.yaml``)."""
    if project_dir.is_file():
        what = NOT_CONFIG.get(project_dir.suffix.lower())
        if what is not None:
            raise ConfigError(
                f"{project_dir.name} is {what}, not a project's config: give the project folder "
                "or its cortex.yaml (inferd init writes one)"
            )
        return project_dir
    if not project_dir.is_dir():
        raise ConfigError(f"{project_dir}: no such project folder")
    for name in CONFIG_NAMES:
        candidate = project_dir / name
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{project_dir}: no cortex.yaml or inferd.yaml in this folder")


def load_project(path: Path | str, keys_root: Path | None = None) -> Project:
    """Read and validate a project (a folder, or its config file). Raises ``ConfigError``.

    ``keys_root``: the folder relative ``auth.keys_file`` paths are in, when not the project's.
    """
    resolved = resolved_path(Path(path))
    if resolved is None and not Path(path).is_absolute() and not working_folder_exists():
        # (`inferd deploy` in a folder removed while the shell was in it: it said "a symbolic
        # link that loops", as resolving "." fails for both)
        raise ConfigError(f"{path}: the current folder was removed; cd to the project, or name it in full")
    if resolved is None:
        raise ConfigError(f"{path}: a symbolic link that loops, not a project folder")
    config_file = find_config(resolved)
    name = config_file.name
    try:
        size = config_file.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{name}: the file is {size / (1 << 20):.1f} MiB; a config file may be at most "
                f"{MAX_CONFIG_BYTES >> 20} MiB"
            )
        text = config_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        byte = exc.object[exc.start]
        raise ConfigError(
            f"{name}:{line}: the file is not UTF-8 text (byte 0x{byte:02x} here): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    data, lines = parse_yaml(text, name)
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ConfigError(
            f"{name}:{lines.get((), 1)}: the file must contain a list of maps "
            "(each with a 'kind': deployment or api)"
        )
    deployments: list[tuple[int, Deployment]] = []
    apis: list[tuple[int, Api]] = []
    splitters: list[tuple[int, TrafficSplitter]] = []
    for index, item in enumerate(data):
        kind = item.get("kind")
        where = f"{name}:{lines.get((index,), 1)}"
        model: type[Deployment] | type[Api] | type[TrafficSplitter]
        if kind == "deployment":
            model, label = Deployment, "deployment"
        elif kind == "traffic_splitter":
            model = TrafficSplitter
            label = _label("traffic_splitter", item.get("name"))
        elif kind == "api":
            model = Api
            label = _label("api", item.get("name"))
        elif kind is None:
            raise ConfigError(f"{where}: resource {index + 1} has no 'kind' (deployment or api)")
        else:
            raise ConfigError(
                f"{where}: kind: unknown kind {shown(kind)} (expected deployment, api or traffic_splitter)"
            )
        try:
            resource = model.model_validate(item)
        except ValidationError as exc:
            raise config_error(exc, name, label, (index,), lines, model) from None
        if isinstance(resource, Deployment):
            deployments.append((index, resource))
        elif isinstance(resource, TrafficSplitter):
            splitters.append((index, resource))
        else:
            apis.append((index, resource))
    try:
        return check_project(config_file, deployments, apis, keys_root, splitters)
    except FieldError as exc:
        line = lines.get(exc.location, lines.get(exc.location[:1], 1))
        raise ConfigError(one_line(f"{name}:{line}: {exc.message}")) from None


def _label(kind: str, name: object) -> str:
    """``api 'classifier'``; a name too long to be valid is cut (its own error says so)."""
    if not isinstance(name, str):
        return kind
    return f"{kind} '{name[:63]}...'" if len(name) > 63 else f"{kind} '{name}'"


def parse_yaml(text: str, name: str) -> tuple[Any, dict[Location, int]]:
    """Parse YAML safely; return the data and a map from each value's path to its line."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character: PyYAML checks the text first
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{name}:{line}: invalid YAML: a control character (0x{exc.character:02x}) YAML does not "
            f'allow in a file; write it as "\\x{exc.character:02x}" in a double-quoted string'
        ) from None
    try:
        node = loader.get_node() if loader.check_node() else None
        while loader.check_node():  # go-yaml (Cortex's reader) read the first document alone
            extra = loader.get_node()
            if extra is not None and not (isinstance(extra, yaml.ScalarNode) and extra.tag.endswith(":null")):
                raise ConfigError(
                    f"{name}:{extra.start_mark.line + 1}: a second YAML document (after '---'): "
                    "Cortex read only the first; put every resource in one list"
                )
        lines: dict[Location, int] = {}
        data = _build(loader, node, (), lines) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or str(exc)
        if "'\\t'" in problem:  # PyYAML's words for a tab say nothing of the fix
            problem = "a tab where YAML needs spaces (indent with spaces only)"
        raise ConfigError(f"{name}:{line}: invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{name}: invalid YAML: lists or maps nested too deeply") from None
    finally:
        loader.dispose()
    return data, lines


def _build(loader: _Loader, node: yaml.Node, path: Location, lines: dict[Location, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if len(lines) > MAX_VALUES:  # aliases repeat a node: each use is built (and counted) again
        raise yaml.constructor.ConstructorError(
            None, None, f"more than {MAX_VALUES:,} values (aliases that repeat aliases?)", node.start_mark
        )
    if isinstance(node, yaml.MappingNode):
        # ``<<: *anchor`` merges: flatten_mapping puts the merged pairs first, and a key written
        # in the map itself overrides a merged one (YAML's merge rule, as go-yaml read it for
        # Cortex); only a key written twice in the map itself is a duplicate.
        loader.flatten_mapping(node)
        merged = loader.merged_pairs[id(node)]
        result: dict[Any, Any] = {}
        own: set[Any] = set()
        for position, (key_node, value_node) in enumerate(node.value):
            key = _construct(loader, key_node)
            if isinstance(key, list | dict | set):  # a set: `? !!set {a}`
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a scalar", key_node.start_mark
                )
            if position >= merged:
                if key in own:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                own.add(key)
            result[key] = _build(loader, value_node, (*path, str(key)), lines)
            lines[(*path, str(key))] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, child, (*path, i), lines) for i, child in enumerate(node.value)]
    return _construct(loader, node)


_TAG_WORDS = {"int": "an integer", "float": "a float", "bool": "true or false"}


def _construct(loader: _Loader, node: yaml.Node) -> Any:
    """A node's value; an explicit tag its text does not fit (``!!float abc``) is a YAML error.

    PyYAML raises ValueError, KeyError or IndexError there (a traceback, not a sentence)."""
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, KeyError, IndexError) as exc:
        tag = node.tag.rsplit(":", 1)[-1]
        text = node.value if isinstance(node.value, str) else ""
        written = f"!!{tag} {text[:60]}".rstrip()
        problem = f"{written}: {shown(text)} is not {_TAG_WORDS.get(tag, f'a {tag}')}"
        raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from exc

"""Property-based fuzzing of project config loading: any file is a project or one ConfigError.

A valid project using every kind and block is mutated (values of other types, keys deleted or
added, resources repeated, YAML forms spliced into its text); loading it either succeeds or
raises ``ConfigError`` whose message is one line naming ``cortex.yaml``, never another exception.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferd.config.load import load_project
from inferd.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

BASE: list[dict[str, Any]] = [
    {"kind": "deployment", "name": "shop", "relax_pins": False},
    {
        "kind": "api",
        "name": "champion",
        "onnx": {"model": "models/iris.onnx", "request_handler": "handlers/iris.py", "metadata": {"a": 1}},
        "tracker": {"model_type": "classification", "key": "label"},
        "compute": {
            "min_replicas": 1,
            "max_replicas": 4,
            "init_replicas": 1,
            "cpu": "200m",
            "mem": "100Mi",
            "mem_limit": "1Gi",
            "target_cpu_utilization": 80,
        },
        "autoscaling": {"target_in_flight": 1, "upscale_window": 5, "downscale_window": 60},
        "batching": {"max_batch_size": 16, "batch_interval": 0},
        "max_queue_length": 1000,
        "timeout": 60,
        "item_timeout": 10,
        "max_body_size": "10Mi",
        "auth": {"keys_from_env": ["IRIS_KEY"], "keys_file": "secrets/keys.txt"},
        "payload_log": {"sample": 0.5, "max_size": "64Mi"},
        "shadow": {"api": "challenger", "percent": 10},
    },
    {
        "kind": "api",
        "name": "challenger",
        "tensorflow": {
            "model": "tfmodel",
            "request_handler": "handlers/iris.py",
            "signature_key": "serving_default",
            "full_shapes": True,
        },
        "auth": {"keys_from_env": ["IRIS_KEY"], "keys_file": "secrets/keys.txt"},
        "compute": {"cpu": 0.5, "gpu": 0},
    },
    {
        "kind": "api",
        "name": "py",
        "endpoint": "/custom/py",
        "predictor": {"path": "predictor.py", "model": "models/iris.onnx", "metadata": {"labels": ["a"]}},
    },
    {
        "kind": "traffic_splitter",
        "name": "recommend",
        "apis": [{"name": "champion", "weight": 80}, {"name": "challenger", "weight": 20}],
        "shadow": {"api": "py", "percent": 50},
    },
]
BASE_TEXT = yaml.safe_dump(BASE)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzzed")
    shutil.copytree(EXAMPLES / "iris-onnx" / "models", root / "models")
    shutil.copytree(EXAMPLES / "iris-onnx" / "handlers", root / "handlers")
    (root / "tfmodel" / "1").mkdir(parents=True)
    (root / "tfmodel" / "1" / "saved_model.pb").write_bytes(b"")
    (root / "predictor.py").write_text("def predict(sample, metadata):\n    return sample\n")
    (root / "secrets").mkdir()
    (root / "secrets" / "keys.txt").write_text("k1\n")
    (root / "cortex.yaml").write_text(BASE_TEXT)
    load_project(root)  # the unmutated project loads
    return root


def config_error(root: Path, text: str) -> str:
    """The one-line error ``load_project`` gives for a project whose config is ``text``."""
    (root / "cortex.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    return caught.value.message


def _loads_or_says_one_line(root: Path, text: str) -> None:
    (root / "cortex.yaml").write_text(text, encoding="utf-8")
    try:
        load_project(root)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("cortex.yaml"), message
        assert "\n" not in message and "\r" not in message, message
        assert len(message) < 600, message[:600]


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers().map(lambda i: i * 10**30),
    st.floats(),
    st.text(max_size=20),
    st.text(min_size=1000, max_size=1500),
    st.sampled_from(["", "-1", "1e400", "nan", "-5m", "1e3Mi", "9" * 400, "../x", "/etc/passwd", "a\nb"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found.extend(_paths(inner, (*prefix, key)))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found.extend(_paths(inner, (*prefix, index)))
    return found


_PATHS = _paths(BASE)


@st.composite
def _mutated(draw: st.DrawFn) -> list[dict[str, Any]]:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_PATHS))
        parent: Any = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            last = path[-1]
            operation = draw(st.sampled_from(["replace", "delete", "add", "repeat"]))
            if operation == "replace":
                parent[last] = draw(_VALUES)
            elif operation == "delete":
                del parent[last]
            elif operation == "add" and isinstance(parent[last], dict):
                parent[last][draw(st.one_of(st.text(max_size=8), st.integers(), st.none()))] = draw(_VALUES)
            elif operation == "repeat" and isinstance(parent, list):
                parent.append(copy.deepcopy(parent[last]))
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed the path
            pass
    return data


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(_mutated())
def test_a_mutated_project_loads_or_is_one_config_error(project: Path, data: list[dict[str, Any]]) -> None:
    _loads_or_says_one_line(project, yaml.safe_dump(data, allow_unicode=True))


_SNIPPETS = [
    "&a ", "*a", "<<: *a\n", "!!python/object:os.system\n", "!!binary aGk=", "!!set {a}",
    "---\n", "\t", "\ufeff", "\x85", "\u2028", "%YAML 1.1\n", "? ", ": ", "- ", "{", "]", "'", '"',
    "|\n", "#", "!x ", "!!str ", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!null ", "\r",
    "2019-11-21", "12:30:00", "0x_1", "1e999", ".nan",
]  # fmt: skip


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.tuples(st.integers(0, len(BASE_TEXT)), st.sampled_from(_SNIPPETS)), min_size=1, max_size=4)
)
def test_yaml_forms_spliced_into_a_project_load_or_are_one_config_error(
    project: Path, edits: list[tuple[int, str]]
) -> None:
    text = BASE_TEXT
    for position, snippet in sorted(edits, reverse=True):
        text = text[:position] + snippet + text[position:]
    _loads_or_says_one_line(project, text)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        # each was a Python traceback (ValueError, KeyError, IndexError from PyYAML), exit 1
        ("!!float abc", "cortex.yaml:2: invalid YAML: !!float abc: 'abc' is not a float"),
        ("!!int 1.5", "cortex.yaml:2: invalid YAML: !!int 1.5: '1.5' is not an integer"),
        ("!!int 0x", "cortex.yaml:2: invalid YAML: !!int 0x: '0x' is not an integer"),
        ("!!bool abc", "cortex.yaml:2: invalid YAML: !!bool abc: 'abc' is not true or false"),
        ("!!float", "cortex.yaml:2: invalid YAML: !!float: '' is not a float"),
    ],
)
def test_an_explicit_tag_its_value_does_not_fit_is_one_config_error(
    tmp_path: Path, value: str, said: str
) -> None:
    assert config_error(tmp_path, f"- kind: deployment\n  name: {value}\n") == said


def test_an_explicit_tag_on_a_key_is_one_config_error(tmp_path: Path) -> None:
    assert (
        config_error(tmp_path, "- kind: deployment\n  !!float name: d\n")
        == "cortex.yaml:2: invalid YAML: !!float name: 'name' is not a float"
    )


_API = "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  predictor: {path: p.py}\n"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # each message ran over two lines: a newline the YAML wrote as "\n" was printed as one
        (_API + '  "a\\nb": 1\n', "cortex.yaml:6: api 'a': a\\nb: unknown key"),
        (
            _API.replace("name: a", 'name: "a\\nb"'),
            "cortex.yaml:4: api 'a\\nb': name: 'a\\nb' must start with a lower-case letter and "
            "contain only lower-case letters, digits and '-' (DNS-1035)",
        ),
        (
            _API.replace("path: p.py", 'path: "a\\nb"'),
            "cortex.yaml:5: api 'a': predictor.path: a\\nb does not exist",
        ),
        (
            _API + '  auth: {keys_file: "k\\r"}\n',
            "cortex.yaml:6: api 'a': auth.keys_file: k\\r does not exist",
        ),
    ],
)
def test_a_control_character_the_config_wrote_is_escaped_in_its_one_line_error(
    tmp_path: Path, text: str, said: str
) -> None:
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    assert config_error(tmp_path, text) == said


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # each echoed the whole value: 3,000 characters of it, in a sentence of an error
        (
            _API + "  compute: {cpu: " + "9" * 3000 + "m}\n",
            "cortex.yaml:6: api 'a': compute.cpu: '" + "9" * 60 + "...' is not a finite number",
        ),
        (
            _API + "  compute: {mem: [" + "x" * 3000 + "]}\n",
            "cortex.yaml:6: api 'a': compute.mem: ['" + "x" * 58
            + "... is not a quantity (e.g. 200m, 1.5, 512Mi, 2G)",
        ),
        (
            _API + "  shadow: {api: " + "y" * 3000 + "}\n",
            "cortex.yaml:6: api 'a': shadow.api: no api named '" + "y" * 60
            + "...' in this project (apis: a)",
        ),
        (
            _API + "- kind: traffic_splitter\n  name: s\n  apis: [{name: " + "y" * 3000 + ", weight: 100}]\n",
            "cortex.yaml:8: traffic_splitter 's': apis: no api named '" + "y" * 60
            + "...' in this project (apis: a)",
        ),
        (
            "- kind: " + "x" * 3000 + "\n",
            "cortex.yaml:1: kind: unknown kind '" + "x" * 60
            + "...' (expected deployment, api or traffic_splitter)",
        ),
    ],
)  # fmt: skip
def test_a_long_value_is_cut_in_its_error(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "p.py").write_text("def predict(sample, metadata):\n    return sample\n")
    assert config_error(tmp_path, text) == said


def test_a_set_as_a_key_is_one_config_error(tmp_path: Path) -> None:
    # was a TypeError traceback: unhashable type: 'set'
    assert (
        config_error(tmp_path, "- kind: deployment\n  name: d\n  ? !!set {a}\n  : 1\n")
        == "cortex.yaml:3: invalid YAML: a key must be a scalar"
    )


@pytest.mark.parametrize(
    ("key", "said"),
    [
        # was "cortex.yaml:1: deployment: 1: Keys should be strings": pydantic's words, the
        # resource's line, and a key (1) the file does not have
        (
            "yes",
            "cortex.yaml:3: deployment: True: unknown key (YAML read the unquoted key as true "
            "(yes, no, on and off are true or false in YAML))",
        ),
        ("5", "cortex.yaml:3: deployment: 5: unknown key (YAML read the unquoted key as the number 5)"),
        ("~", "cortex.yaml:3: deployment: None: unknown key (YAML read the unquoted key as null)"),
    ],
)
def test_a_key_yaml_reads_as_no_text_is_an_unknown_key_on_its_line(
    tmp_path: Path, key: str, said: str
) -> None:
    assert config_error(tmp_path, f"- kind: deployment\n  name: d\n  {key}: 1\n") == said


@pytest.mark.parametrize("uri", ["http://[::1/model.onnx", "https://[not-an-address]x/m.onnx"])
def test_a_model_url_python_cannot_split_is_one_config_error(tmp_path: Path, uri: str) -> None:
    # was a ValueError traceback: Invalid IPv6 URL
    (tmp_path / "cortex.yaml").write_text(
        f'- kind: deployment\n  name: d\n- kind: api\n  name: a\n  onnx: {{model: "{uri}"}}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert caught.value.message.startswith(
        f"cortex.yaml:5: api 'a': onnx.model: '{uri}' is not a valid URL ("
    )


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("s3:///models/m.onnx", "names no bucket (write s3://BUCKET/PATH)"),
        ("gs:///m.onnx", "names no bucket (write gs://BUCKET/PATH)"),
        ("http:///m.onnx", "names no host (write http://HOST/PATH)"),
        ("https://:8443/m.onnx", "names no host (write https://HOST/PATH)"),
    ],
)
def test_a_model_url_without_its_bucket_or_host_is_refused_by_validate(
    tmp_path: Path, uri: str, said: str
) -> None:
    # passed `inferd validate` and failed only at deploy, when the download was tried
    (tmp_path / "cortex.yaml").write_text(
        f'- kind: deployment\n  name: d\n- kind: api\n  name: a\n  onnx: {{model: "{uri}"}}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert caught.value.message == f"cortex.yaml:5: api 'a': onnx.model: '{uri}' {said}"

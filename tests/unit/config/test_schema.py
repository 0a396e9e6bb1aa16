"""The Cortex v0.10 schema: defaults and every validation rule, with file:line:field errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.config.load import load_project
from inferd.errors import ConfigError

DEPLOYMENT = "- kind: deployment\n  name: iris\n"


def project(tmp_path: Path, text: str, files: tuple[str, ...] = ("model.onnx", "handler.py")) -> Path:
    for name in files:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("def pre_inference(sample, signature, metadata):\n    return sample\n")
    (tmp_path / "cortex.yaml").write_text(text)
    return tmp_path


def api(body: str = "", name: str = "classifier", model: str = "onnx:\n    model: model.onnx\n") -> str:
    return f"\n- kind: api\n  name: {name}\n  {model}{body}"


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_project(project(tmp_path, text))
    return caught.value.message


def test_defaults_match_cortex(tmp_path: Path) -> None:
    loaded = load_project(project(tmp_path, DEPLOYMENT + api()))
    config = loaded.apis[0]
    assert loaded.deployment.name == "iris"
    assert config.endpoint == "/iris/classifier"
    compute = config.api.compute
    assert (compute.min_replicas, compute.max_replicas, compute.replicas_at_start) == (1, 100, 1)
    assert compute.target_cpu_utilization == 80
    assert compute.cpu_cores == pytest.approx(0.2)
    assert compute.mem_bytes is None
    assert compute.gpu == 0
    assert config.api.tracker is None
    assert config.api.metadata == {}
    assert config.api.model_format == "onnx"


def test_inferd_extension_defaults(tmp_path: Path) -> None:
    """The defaults the README and docs/reliability.md state for an api's extension keys."""
    config = load_project(project(tmp_path, DEPLOYMENT + api())).apis[0].api
    assert config.max_queue_length == 1000
    assert config.timeout == 60.0 and config.item_timeout is None  # a stream's items: the timeout
    assert config.body_limit == 10 * 2**20
    scaling = config.autoscaling
    assert (scaling.target_in_flight, scaling.upscale_window, scaling.downscale_window) == (1, 5, 60)
    assert config.auth is None and config.batching is None
    assert config.payload_log is None and config.shadow is None  # off unless asked for
    logged = DEPLOYMENT + api("  payload_log: {sample: 0.1}\n  batching: {max_batch_size: 16}\n")
    config = load_project(project(tmp_path, logged)).apis[0].api
    assert config.payload_log is not None and config.payload_log.max_bytes == 16 * 2**20
    assert config.batching is not None and config.batching.batch_interval == 0


def test_gpu_extensions(tmp_path: Path) -> None:
    text = DEPLOYMENT + api(
        "    tensorrt: true\n  compute:\n    gpu: 1\n    gpu_memory: 4Gi\n    cpu_fallback: true\n"
    )
    config = load_project(project(tmp_path, text)).apis[0].api
    assert config.compute.gpu_memory_bytes == 4 * 2**30
    assert config.compute.cpu_fallback
    assert config.onnx is not None and config.onnx.tensorrt
    defaults = load_project(project(tmp_path, DEPLOYMENT + api())).apis[0].api
    assert defaults.compute.gpu_memory_bytes is None and not defaults.compute.cpu_fallback


def test_init_replicas_defaults_to_min(tmp_path: Path) -> None:
    text = DEPLOYMENT + api("  compute:\n    min_replicas: 3\n    max_replicas: 5\n")
    assert load_project(project(tmp_path, text)).apis[0].api.compute.replicas_at_start == 3


def test_an_api_that_scales_to_zero_starts_one_replica_unless_told_none(tmp_path: Path) -> None:
    cold = DEPLOYMENT + api("  compute:\n    min_replicas: 0\n")
    assert load_project(project(tmp_path, cold)).apis[0].api.compute.replicas_at_start == 1
    idle = DEPLOYMENT + api("  compute:\n    min_replicas: 0\n    init_replicas: 0\n")
    assert load_project(project(tmp_path, idle)).apis[0].api.compute.replicas_at_start == 0


def test_inferd_yaml_is_read_when_there_is_no_cortex_yaml(tmp_path: Path) -> None:
    project(tmp_path, DEPLOYMENT + api())
    (tmp_path / "cortex.yaml").rename(tmp_path / "inferd.yaml")
    assert load_project(tmp_path).config_file.name == "inferd.yaml"


def test_full_api_block_is_accepted(tmp_path: Path) -> None:
    body = (
        "\n- kind: api\n  name: tf\n  endpoint: my/custom/path/\n  tensorflow:\n"
        "    model: saved\n    request_handler: handler.py\n    signature_key: predict\n"
        "    python_path: lib\n    metadata: {labels: [a, b]}\n    full_shapes: true\n"
        "  tracker:\n    key: label\n    model_type: classification\n"
        "  compute:\n    min_replicas: 1\n    max_replicas: 4\n    init_replicas: 2\n"
        "    target_cpu_utilization: 50\n    cpu: 1\n    mem: 1Gi\n    gpu: 0\n"
    )
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"pb")
    (tmp_path / "lib").mkdir()
    loaded = load_project(project(tmp_path, DEPLOYMENT + body))
    config = loaded.apis[0]
    assert config.endpoint == "/my/custom/path"
    assert config.api.tensorflow is not None and config.api.tensorflow.full_shapes
    assert config.api.metadata == {"labels": ["a", "b"]}
    assert config.api.compute.mem_bytes == 2**30
    assert config.api.tracker is not None and config.api.tracker.key == "label"


def test_predictor_block(tmp_path: Path) -> None:
    text = DEPLOYMENT + api(model="predictor:\n    path: handler.py\n    model: model.onnx\n")
    config = load_project(project(tmp_path, text)).apis[0]
    assert config.api.model_format == "predictor"
    assert config.api.handler_file == "handler.py"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            DEPLOYMENT + api("  compute:\n    min_replicas: -1\n"),
            "cortex.yaml:9: api 'classifier': compute.min_replicas: must be >= 0",
            id="min-replicas-negative",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    max_replicas: 0\n"),
            "cortex.yaml:9: api 'classifier': compute.max_replicas: must be >= 1",
            id="max-replicas-zero",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    min_replicas: 3\n    max_replicas: 2\n"),
            "cortex.yaml:8: api 'classifier': compute: min_replicas must be <= max_replicas",
            id="min-above-max",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    min_replicas: 2\n    init_replicas: 1\n"),
            "compute: init_replicas must be >= min_replicas",
            id="init-below-min",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    max_replicas: 2\n    init_replicas: 3\n"),
            "compute: init_replicas must be <= max_replicas",
            id="init-above-max",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    target_cpu_utilization: 0\n"),
            "compute.target_cpu_utilization: must be > 0",
            id="cpu-target-zero",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    target_cpu_utilization: 101\n"),
            "compute.target_cpu_utilization: must be <= 100",
            id="cpu-target-above-100",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    cpu: lots\n"),
            "cortex.yaml:9: api 'classifier': compute.cpu: 'lots' is not a quantity",
            id="cpu-not-quantity",
        ),
        pytest.param(DEPLOYMENT + api("  compute:\n    cpu: 0\n"), "compute.cpu: must be > 0", id="cpu-zero"),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    mem: 12X\n"), "compute.mem: '12X' is not", id="mem-bad"
        ),
        pytest.param(DEPLOYMENT + api("  compute:\n    gpu: -1\n"), "compute.gpu: must be >= 0", id="gpu"),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    gpu_memory: 4Gi\n"),
            "compute: gpu_memory is a share of one device: set gpu: 1 with it",
            id="gpu-memory-without-gpu",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    gpu: 1\n    gpu_memory: lots\n"),
            "compute.gpu_memory: 'lots' is not a quantity",
            id="gpu-memory-not-quantity",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    min_replica: 2\n"),
            "cortex.yaml:9: api 'classifier': compute.min_replica: unknown key",
            id="unknown-key-nested",
        ),
        pytest.param(
            DEPLOYMENT + api("  color: blue\n"),
            "cortex.yaml:8: api 'classifier': color: unknown key",
            id="unknown-key",
        ),
        pytest.param(
            "- kind: deployment\n  name: my_deployment\n" + api(),
            "cortex.yaml:2: deployment: name: 'my_deployment' must contain only lower-case",
            id="deployment-underscore",
        ),
        pytest.param(
            DEPLOYMENT + api(name="Classifier"),
            "api 'Classifier': name: 'Classifier' must start",
            id="api-upper",
        ),
        pytest.param(
            DEPLOYMENT + api(name="1st"), "name: '1st' must start with a lower-case letter", id="api-digit"
        ),
        pytest.param(
            DEPLOYMENT + api("  endpoint: /a b\n"), "endpoint: '/a b' may contain only", id="ep-regex"
        ),
        pytest.param(  # was accepted: live, and every request to it a 431 (the request line too long)
            DEPLOYMENT + api(f"  endpoint: /{'a' * 70_000}\n"),
            "endpoint: may be at most 2,048 characters (it has 70,001): the gateway, clients and proxies "
            "refuse longer request lines",
            id="ep-long",
        ),
        pytest.param(
            DEPLOYMENT + api("  endpoint: /a//b\n"),
            "endpoint: '/a//b' must not contain '//'",
            id="ep-double-slash",
        ),
        pytest.param(
            DEPLOYMENT + api("  endpoint: /a/../b\n"),
            "endpoint: '/a/../b' must not contain '.' or '..' as a path segment",
            id="ep-dot-dot",
        ),
        pytest.param(
            DEPLOYMENT + api("  endpoint: ./iris\n"),
            "endpoint: './iris' must not contain '.' or '..' as a path segment",
            id="ep-dot",
        ),
        pytest.param(DEPLOYMENT + api("  endpoint: /\n"), "endpoint: must not be '/'", id="ep-root"),
        pytest.param(
            DEPLOYMENT + api("  endpoint: /v2/models\n"), "endpoint: /v2/models is reserved", id="ep-reserved"
        ),
        pytest.param(DEPLOYMENT + api("  endpoint: /v2\n"), "endpoint: /v2 is reserved", id="ep-reserved-v2"),
        pytest.param(
            DEPLOYMENT + api("  endpoint: v1/models/iris\n"),
            "endpoint: /v1/models/iris is reserved",
            id="ep-reserved-tfserving",
        ),
        pytest.param(
            DEPLOYMENT + api("  endpoint: /v2/health/ready\n"),
            "endpoint: /v2/health/ready is reserved",
            id="ep-reserved-health",
        ),
        pytest.param(
            DEPLOYMENT
            + api()
            + api(name="other").replace("name: other", "name: other\n  endpoint: iris/classifier"),
            "api 'other': endpoint: multiple APIs specify the same endpoint (/iris/classifier",
            id="ep-duplicate",
        ),
        pytest.param(
            DEPLOYMENT + api() + api(),
            "cortex.yaml:10: api 'classifier': name: another api is named",
            id="name-duplicate",
        ),
        pytest.param(
            DEPLOYMENT + api(model=""),
            "please specify a model format (tensorflow, onnx, or predictor)",
            id="no-format",
        ),
        pytest.param(
            DEPLOYMENT + api(model="onnx:\n    model: model.onnx\n  predictor:\n    path: handler.py\n"),
            "please specify only one model format",
            id="two-formats",
        ),
        pytest.param(
            DEPLOYMENT + api(model="onnx:\n    request_handler: handler.py\n"),
            "cortex.yaml:6: api 'classifier': onnx.model: required field is missing",
            id="no-model",
        ),
        pytest.param(
            DEPLOYMENT + api("  tracker:\n    model_type: clustering\n"),
            "tracker.model_type: must be one of",
            id="tracker-type",
        ),
        pytest.param(api(), "cortex.yaml must define a deployment resource", id="no-deployment"),
        pytest.param(
            DEPLOYMENT + DEPLOYMENT + api(), "cortex.yaml:3: deployment: only one", id="two-deployments"
        ),
        pytest.param(
            "kind: api\nname: x\n", "cortex.yaml:1: the file must contain a list of maps", id="not-list"
        ),
        pytest.param("", "the file must contain a list of maps", id="empty"),
        pytest.param(
            DEPLOYMENT + "- kind: model\n", "cortex.yaml:3: kind: unknown kind 'model'", id="bad-kind"
        ),
        pytest.param(DEPLOYMENT + "- name: x\n", "cortex.yaml:3: resource 2 has no 'kind'", id="no-kind"),
        pytest.param(
            DEPLOYMENT + "- kind: api\n  name: [unclosed\n", "cortex.yaml:5: invalid YAML", id="yaml"
        ),
        pytest.param(
            DEPLOYMENT + "- kind: api\n  name: a\n  name: b\n",
            "cortex.yaml:5: invalid YAML: duplicate key",
            id="duplicate-key",
        ),
        pytest.param(
            DEPLOYMENT + api(model="onnx:\n    model: model.onnx\n    metadata: {1: x}\n"),
            "onnx.metadata: keys must be strings",
            id="metadata-keys",
        ),
    ],
)
def test_validation_errors_name_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            DEPLOYMENT + api(model="onnx:\n    model: model.onnx\n    request_handlr: handler.py\n"),
            "cortex.yaml:8: api 'classifier': onnx.request_handlr: unknown key "
            "(did you mean 'request_handler'?)",
            id="handler",
        ),
        pytest.param(
            DEPLOYMENT + api("  compute:\n    min_replica: 2\n"),
            "compute.min_replica: unknown key (did you mean 'min_replicas'?)",
            id="nested",
        ),
        pytest.param(
            DEPLOYMENT + api("  tracker:\n    model_typ: classification\n"),
            "tracker.model_typ: unknown key (did you mean 'model_type'?)",
            id="tracker",
        ),
        pytest.param(
            "- kind: deployment\n  nme: iris\n", "nme: unknown key (did you mean 'name'?)", id="top"
        ),
    ],
)
def test_a_misspelt_key_names_the_key_it_looks_like(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


IN_MODEL_BLOCK = "(it belongs under the api's tensorflow:, onnx: or predictor: block)"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("metadata: {top_k: 3}", f"metadata: unknown key here {IN_MODEL_BLOCK}"),
        ("python_path: src", f"python_path: unknown key here {IN_MODEL_BLOCK}"),
        ("signature_key: predict", "signature_key: unknown key here (it belongs under tensorflow:)"),
        ("max_replicas: 2", "max_replicas: unknown key here (it belongs under compute:)"),
    ],
)
def test_a_blocks_key_written_on_the_api_says_which_block_it_belongs_under(
    tmp_path: Path, line: str, expected: str
) -> None:
    """`metadata:` written beside `onnx:` (an image classifier's top_k) read "unknown key" alone."""
    assert error_of(tmp_path, DEPLOYMENT + api(f"  {line}\n")).endswith(expected)


def test_a_key_like_no_field_gets_no_guess(tmp_path: Path) -> None:
    message = error_of(tmp_path, DEPLOYMENT + api("  color: blue\n"))
    assert message.endswith("color: unknown key")


def test_a_tab_in_the_indentation_says_to_indent_with_spaces(tmp_path: Path) -> None:
    text = DEPLOYMENT + "- kind: api\n  name: a\n  onnx:\n\t  model: model.onnx\n"
    assert error_of(tmp_path, text) == (
        "cortex.yaml:6: invalid YAML: a tab where YAML needs spaces (indent with spaces only)"
    )


@pytest.mark.parametrize(
    ("model_block", "expected"),
    [
        ("onnx:\n    model: missing.onnx\n", "onnx.model: missing.onnx does not exist"),
        (
            "onnx:\n    model: ../outside.onnx\n",
            "onnx.model: '../outside.onnx' is outside the project folder",
        ),
        ("onnx:\n    model: /etc/passwd\n", "'/etc/passwd' is outside the project folder"),
        (
            "onnx:\n    model: model.onnx\n    request_handler: nope.py\n",
            "request_handler: nope.py does not exist",
        ),
        ("onnx:\n    model: model.onnx\n    request_handler: ../../x.py\n", "is outside the project folder"),
        ("onnx:\n    model: model.onnx\n    python_path: nowhere\n", "python_path: nowhere is not a folder"),
        ("predictor:\n    path: missing.py\n", "predictor.path: missing.py does not exist"),
        ("onnx:\n    model: model.onnx\n    request_handler: model.onnx\n", "must be a .py"),
        (
            "tensorflow:\n    model: model.onnx\n",
            "tensorflow.model: model.onnx must be a SavedModel folder (or a .zip of one)",
        ),
    ],
)
def test_files_must_exist_inside_the_project(tmp_path: Path, model_block: str, expected: str) -> None:
    message = error_of(tmp_path, DEPLOYMENT + api(model=model_block))
    assert message.startswith("cortex.yaml:")
    assert expected in message


def test_remote_models_are_not_checked_locally(tmp_path: Path) -> None:
    text = DEPLOYMENT + api(model="onnx:\n    model: s3://bucket/iris.onnx\n")
    assert load_project(project(tmp_path, text)).apis[0].api.model_uri == "s3://bucket/iris.onnx"


def test_missing_project_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such project folder"):
        load_project(tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"no cortex\.yaml or inferd\.yaml"):
        load_project(tmp_path)


@pytest.mark.parametrize(("name", "what"), [("predictor.py", "a Python file"), ("iris.onnx", "a model")])
def test_a_handler_or_model_given_for_the_config_is_named_as_such(
    tmp_path: Path, name: str, what: str
) -> None:
    given = tmp_path / name
    given.write_text("def predict(sample, metadata):\n    return 1\n")
    with pytest.raises(ConfigError) as raised:
        load_project(given)
    assert str(raised.value) == (
        f"{name} is {what}, not a project's config: give the project folder or its cortex.yaml "
        "(inferd init writes one)"
    )


def test_config_errors_exit_with_code_2() -> None:
    assert ConfigError("x").exit_code == 2


def test_yaml_scalars_read_as_cortex_read_them(tmp_path: Path) -> None:
    # PyYAML alone reads 1e-3 as a string (YAML 1.1 floats need a dot); Cortex read a number.
    body = (
        "onnx:\n    model: model.onnx\n    metadata:\n      lr: 1e-3\n      big: 2E+5\n"
        "      dotted: 1.5e-2\n      flag: yes\n      quoted: '1e-3'\n      word: 2e\n"
    )
    loaded = load_project(project(tmp_path, f"- kind: deployment\n  name: d\n{api(body=body, model='')}"))
    metadata = loaded.apis[0].api.metadata
    assert metadata == {
        "lr": 0.001,
        "big": 200000.0,
        "dotted": 0.015,
        "flag": True,
        "quoted": "1e-3",
        "word": "2e",
    }


def test_relax_pins_is_a_deployment_setting(tmp_path: Path) -> None:
    text = f"- kind: deployment\n  name: d\n  relax_pins: true\n{api()}"
    loaded = load_project(project(tmp_path, text))
    assert loaded.deployment.relax_pins
    plain = load_project(project(tmp_path, f"- kind: deployment\n  name: d\n{api()}"))
    assert not plain.deployment.relax_pins and plain.relaxed().deployment.relax_pins


def test_anchors_and_merge_keys_share_blocks_between_apis(tmp_path: Path) -> None:
    # go-yaml (Cortex) let a key written beside `<<: *anchor` override the merged one.
    text = (
        "# shared blocks\n"
        "- kind: deployment\n  name: iris  # one deployment\n"
        "- kind: api\n  name: small\n  onnx: &model\n    model: model.onnx\n    request_handler: handler.py\n"
        "  compute: &compute\n    cpu: 1\n    mem: 1Gi\n    max_replicas: 4\n"
        "- kind: api\n  name: large\n  onnx: *model\n"
        "  compute:\n    <<: *compute\n    cpu: '500m'\n    min_replicas: 2\n"
    )
    small, large = load_project(project(tmp_path, text)).apis
    assert small.api.onnx == large.api.onnx and large.api.handler_file == "handler.py"
    assert (small.api.compute.cpu_cores, small.api.compute.min_replicas) == (1.0, 1)
    assert large.api.compute.cpu_cores == pytest.approx(0.5)
    assert (large.api.compute.mem_bytes, large.api.compute.max_replicas) == (2**30, 4)
    assert large.api.compute.min_replicas == 2
    # a key written twice in the map itself is still an error, with its line
    twice = text.replace("    min_replicas: 2\n", "    min_replicas: 2\n    cpu: 2\n")
    assert "cortex.yaml:20: invalid YAML: duplicate key 'cpu'" in error_of(tmp_path, twice)


def test_a_map_that_overrides_a_merged_key_can_be_an_anchor_itself(tmp_path: Path) -> None:
    # Was "cortex.yaml:8: invalid YAML: duplicate key 'cpu'": the second use of &large (an
    # alias) read the map its first use had merged into, and took the merged cpu for its own.
    text = (
        "- kind: deployment\n  name: iris\n"
        "- kind: api\n  name: small\n  onnx: {model: model.onnx}\n"
        "  compute: &small\n    cpu: 1\n    mem: 1Gi\n"
        "- kind: api\n  name: large\n  onnx: {model: model.onnx}\n"
        "  compute: &large\n    <<: *small\n    cpu: 2\n"
        "- kind: api\n  name: large-too\n  onnx: {model: model.onnx}\n  compute: *large\n"
        "- kind: api\n  name: largest\n  onnx: {model: model.onnx}\n"
        "  compute:\n    <<: *large\n    mem: 2Gi\n"
    )
    small, large, large_too, largest = load_project(project(tmp_path, text)).apis
    assert (small.api.compute.cpu_cores, small.api.compute.mem_bytes) == (1.0, 2**30)
    assert large.api.compute == large_too.api.compute
    assert (large_too.api.compute.cpu_cores, large_too.api.compute.mem_bytes) == (2.0, 2**30)
    assert (largest.api.compute.cpu_cores, largest.api.compute.mem_bytes) == (2.0, 2**31)


def test_versioned_endpoints_are_free(tmp_path: Path) -> None:
    # Cortex took any endpoint; only the paths the gateway answers itself are reserved.
    text = DEPLOYMENT + api("  endpoint: /v1/iris\n") + api("  endpoint: v2/iris/\n", name="next")
    first, second = load_project(project(tmp_path, text)).apis
    assert (first.endpoint, second.endpoint) == ("/v1/iris", "/v2/iris")
    named = "- kind: deployment\n  name: v1\n" + api()  # default endpoint /v1/classifier
    assert load_project(project(tmp_path, named)).apis[0].endpoint == "/v1/classifier"


@pytest.mark.parametrize("name", ["metrics", "docs", "healthz", "dashboard", "openapi-json"])
def test_deployments_named_as_the_gateways_own_routes_are_free(tmp_path: Path, name: str) -> None:
    # The gateway answers /metrics, /docs, /healthz exactly, after the endpoints: a deployment of
    # that name was refused ("/metrics/classifier is reserved by inferd") though nothing collides.
    named = f"- kind: deployment\n  name: {name}\n" + api()
    assert load_project(project(tmp_path, named)).apis[0].endpoint == f"/{name}/classifier"
    for route in ("/metrics", "/docs", "/healthz", "/openapi.json", "/dashboard"):
        with pytest.raises(ConfigError, match=f"endpoint: {route} is reserved by inferd"):
            load_project(project(tmp_path, DEPLOYMENT + api(f"  endpoint: {route}\n")))


def test_cortex_v09_flat_form_becomes_the_nested_block(tmp_path: Path) -> None:
    flat = (
        DEPLOYMENT
        + "- kind: api\n  name: a\n  model: model.onnx\n  request_handler: handler.py\n"
        + "- kind: api\n  name: b\n  model: saved\n  tf_signature_key: predict\n  tags: {team: x}\n"
    )
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"pb")
    first, second = load_project(project(tmp_path, flat)).apis
    assert first.api.onnx is not None and first.api.onnx.request_handler == "handler.py"
    assert first.api.v09_handlers and second.api.v09_handlers
    assert second.api.tensorflow is not None and second.api.tensorflow.signature_key == "predict"
    nested = load_project(project(tmp_path, DEPLOYMENT + api())).apis[0].api
    assert not nested.v09_handlers
    # the key the flat form sets, which `inferd get -v` shows, may be written on a block too (README)
    written = "- kind: api\n  name: c\n  onnx:\n    model: model.onnx\n    v09_handlers: true\n"
    assert load_project(project(tmp_path, DEPLOYMENT + written)).apis[0].api.v09_handlers


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("  model: model.onnx\n  onnx:\n    model: model.onnx\n", "either Cortex v0.9's flat model"),
        ("  model: model.onnx\n  tf_signature_key: predict\n", "tf_signature_key: only for a tensorflow"),
        ("  model: model.onnx\n  model_format: pytorch\n", "model_format: must be tensorflow or onnx"),
        ("  request_handler: handler.py\n", "model: required (a string) in Cortex v0.9's flat form"),
    ],
)
def test_cortex_v09_flat_form_errors(tmp_path: Path, body: str, expected: str) -> None:
    assert expected in error_of(tmp_path, DEPLOYMENT + "- kind: api\n  name: a\n" + body)


def test_a_batch_interval_that_reaches_the_timeout_is_refused(tmp_path: Path) -> None:
    # A partial batch waited its batch_interval (5 s) past the request's timeout (1 s): a request
    # queued behind a busy replica was a 504 while the replica sat idle
    text = DEPLOYMENT + api("  batching: {max_batch_size: 4, batch_interval: 5}\n  timeout: 1\n")
    assert error_of(tmp_path, text).endswith(
        "api 'classifier': batching.batch_interval (5s) must be less than timeout (1s): "
        "a request waiting that long for company would time out"
    )
    below = DEPLOYMENT + api("  batching: {max_batch_size: 4, batch_interval: 0.5}\n  timeout: 1\n")
    assert load_project(project(tmp_path, below)).apis[0].api.batching is not None

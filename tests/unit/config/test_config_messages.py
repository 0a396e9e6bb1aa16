"""Config errors a user meets with odd values: each says what is wrong with the field, in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.config.load import load_project
from inferd.errors import ConfigError

HEAD = "- kind: deployment\n  name: d\n- kind: api\n  name: a\n  onnx:\n    model: model.onnx\n"


def error_of(tmp_path: Path, text: str) -> str:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "handlers").mkdir(exist_ok=True)
    (tmp_path / "cortex.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    return caught.value.message


@pytest.mark.parametrize(
    ("body", "said"),
    [
        # were accepted: NaN is not <= 0 and inf is > 0, so a replica asked for nan or inf cores
        pytest.param(
            "  compute:\n    cpu: .nan\n",
            "cortex.yaml:8: api 'a': compute.cpu: nan is not a finite number",
            id="cpu-nan",
        ),
        pytest.param(
            "  compute:\n    cpu: 1e400\n",
            "cortex.yaml:8: api 'a': compute.cpu: inf is not a finite number",
            id="cpu-inf",
        ),
        pytest.param(
            "  compute:\n    cpu: '1e400'\n",
            "cortex.yaml:8: api 'a': compute.cpu: '1e400' is not a finite number",
            id="cpu-inf-text",
        ),
        pytest.param(
            "  compute:\n    mem: 1e999Gi\n",
            "cortex.yaml:8: api 'a': compute.mem: '1e999Gi' is not a finite number",
            id="mem-inf-text",
        ),
        pytest.param(
            "  autoscaling:\n    upscale_window: .inf\n",
            "cortex.yaml:8: api 'a': autoscaling.upscale_window: must be a finite number",
            id="window-inf",
        ),
        # was: "must be <= 86400.0", which NaN is not refused for
        pytest.param(
            "  timeout: .nan\n", "cortex.yaml:7: api 'a': timeout: must be a finite number", id="timeout-nan"
        ),
        # were: "compute.cpu.str: must be a string" (pydantic's name of a union's member)
        pytest.param(
            "  compute:\n    cpu: [1]\n",
            "cortex.yaml:8: api 'a': compute.cpu: [1] is not a quantity (e.g. 200m, 1.5, 512Mi, 2G)",
            id="cpu-list",
        ),
        pytest.param(
            "  compute:\n    mem: [1]\n",
            "cortex.yaml:8: api 'a': compute.mem: [1] is not a quantity (e.g. 200m, 1.5, 512Mi, 2G)",
            id="mem-list",
        ),
        pytest.param(
            "  max_body_size: 1e400\n",
            "cortex.yaml:7: api 'a': max_body_size: inf is not a finite number",
            id="body-inf",
        ),
        # was: "Unable to parse input string as an integer, exceeded maximum size"
        pytest.param(
            "  max_queue_length: 1e30\n",
            "cortex.yaml:7: api 'a': max_queue_length: is too large a number",
            id="int-huge",
        ),
        # was: valid; Cortex's replica counts were int32
        pytest.param(
            "  compute:\n    mem: 1.5\n",
            "cortex.yaml:8: api 'a': compute.mem: must be a whole number",
            id="mem-float",
        ),
        pytest.param(
            "  compute:\n    mem_limit: lots\n",
            "cortex.yaml:8: api 'a': compute.mem_limit: 'lots' is not a quantity",
            id="mem-limit-text",
        ),
        pytest.param(
            "  compute:\n    max_replicas: 99999999999999999999\n",
            "cortex.yaml:8: api 'a': compute.max_replicas: must be <= 2147483647",
            id="replicas-huge",
        ),
    ],
)
def test_an_odd_value_is_named_in_words(tmp_path: Path, body: str, said: str) -> None:
    assert error_of(tmp_path, HEAD + body).startswith(said)


def test_a_name_too_long_says_so(tmp_path: Path) -> None:
    # was: "'aaa...' must start with a lower-case letter and contain only lower-case letters...",
    # which a name of 300 a's does
    text = HEAD.replace("name: a\n", f"name: {'a' * 300}\n")
    message = error_of(tmp_path, text)
    assert "at most 63 characters (it has 300)" in message
    assert len(message) < 200
    # the bound is Cortex's (a Kubernetes label), exactly: for the deployment and for the API
    for name in ("d", "a"):
        assert "at most 63 characters (it has 64)" in error_of(
            tmp_path, HEAD.replace(f"name: {name}\n", f"name: {name * 64}\n")
        )
        (tmp_path / "cortex.yaml").write_text(HEAD.replace(f"name: {name}\n", f"name: {name * 63}\n"))
        load_project(tmp_path)


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("no", "false (yes, no, on and off are true or false in YAML)"),
        ("on", "true (yes, no, on and off are true or false in YAML)"),
        ("1e3", "the number 1000.0"),
        ("0777", "the number 511"),  # octal in YAML 1.1
    ],
)
def test_a_name_yaml_reads_as_a_boolean_or_number_says_to_quote_it(
    tmp_path: Path, written: str, read: str
) -> None:
    # was: "name: must be a string", beside a value the user had written as text
    text = HEAD.replace("name: a\n", f"name: {written}\n")
    said = f"must be a string: YAML read the unquoted value as {read}; put it in quotes"
    assert error_of(tmp_path, text) == f"cortex.yaml:4: api: name: {said}"
    quoted = HEAD.replace("name: a\n", f"name: '{written}'\n")
    assert "YAML read" not in error_of(tmp_path, quoted.replace("model.onnx", "missing.onnx"))


def test_a_request_handler_that_is_a_folder_says_so(tmp_path: Path) -> None:
    # was: "handlers does not exist", of a folder that exists
    text = HEAD + "    request_handler: handlers\n"
    assert error_of(tmp_path, text) == (
        "cortex.yaml:7: api 'a': onnx.request_handler: handlers is a folder; name the handler's .py file"
    )


def test_an_empty_onnx_model_is_refused_before_anything_deploys(tmp_path: Path) -> None:
    # was: valid; inferd deploy then started a version that could only fail to load
    (tmp_path / "empty.onnx").write_bytes(b"")
    text = HEAD.replace("model: model.onnx", "model: empty.onnx")
    assert error_of(tmp_path, text) == "cortex.yaml:6: api 'a': onnx.model: empty.onnx is empty (0 bytes)"


@pytest.mark.parametrize(
    ("content", "said"),
    [
        pytest.param(
            b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1024\n",
            "is a Git LFS pointer, not the model: fetch the file itself (git lfs pull)",
            id="lfs",
        ),
        pytest.param(
            b"\n\n<!DOCTYPE html>\n<html lang='en'><head><title>model.onnx at main</title>",
            "is an HTML page, not an ONNX model: save the file itself (a web page's URL, such as "
            "GitHub's .../blob/..., gives the page)",
            id="html",
        ),
    ],
)
def test_an_onnx_model_that_is_a_pointer_or_a_web_page_says_so(
    tmp_path: Path, content: bytes, said: str
) -> None:
    """A cloned repository's model without `git lfs pull`, or a GitHub page saved as the model:
    validate said it was valid, and the replicas said "INVALID_PROTOBUF ... Protobuf parsing
    failed" (for an http(s):// or s3:// one, naming the cache's copy)."""
    (tmp_path / "page.onnx").write_bytes(content)
    text = HEAD.replace("model: model.onnx", "model: page.onnx")
    assert error_of(tmp_path, text) == f"cortex.yaml:6: api 'a': onnx.model: page.onnx {said}"


def test_a_tensorflow_folder_without_a_saved_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tf" / "variables").mkdir(parents=True)
    text = HEAD.replace("onnx:\n    model: model.onnx", "tensorflow:\n    model: tf")
    assert error_of(tmp_path, text) == (
        "cortex.yaml:6: api 'a': tensorflow.model: tf holds no saved_model.pb "
        "(export a SavedModel into it, or into a numbered version folder inside it)"
    )
    (tmp_path / "tf" / "1" / "saved_model.pb").parent.mkdir()
    (tmp_path / "tf" / "1" / "saved_model.pb").write_bytes(b"pb")
    load_project(tmp_path)  # a version folder inside, as Cortex's exports were


def test_a_tensorflow_folder_whose_version_is_a_symlink_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "elsewhere" / "export").mkdir(parents=True)
    (tmp_path / "elsewhere" / "export" / "saved_model.pb").write_bytes(b"pb")
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "1").symlink_to(tmp_path / "elsewhere" / "export")
    (tmp_path / "tf" / "loop").symlink_to(tmp_path / "tf")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "cortex.yaml").write_text(
        HEAD.replace("onnx:\n    model: model.onnx", "tensorflow:\n    model: tf")
    )
    load_project(tmp_path)


def test_a_model_that_is_a_symlink_loop_is_one_error(tmp_path: Path) -> None:
    # was: a traceback (pathlib's RuntimeError "Symlink loop")
    (tmp_path / "loop.onnx").symlink_to(tmp_path / "loop.onnx")
    text = HEAD.replace("model: model.onnx", "model: loop.onnx")
    assert (
        error_of(tmp_path, text)
        == "cortex.yaml:6: api 'a': onnx.model: 'loop.onnx' is a symbolic link that loops"
    )


def test_a_project_folder_that_is_a_symlink_loop_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ConfigError, match=r"loop: a symbolic link that loops"):
        load_project(tmp_path / "loop")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        # were accepted as 1 and 2: pydantic's lax mode; Cortex's int32 fields took numbers only
        pytest.param(
            "  compute:\n    min_replicas: true\n", "compute.min_replicas: must be an integer", id="bool"
        ),
        pytest.param(
            "  compute:\n    max_replicas: '2'\n", "compute.max_replicas: must be an integer", id="text"
        ),
        pytest.param("  max_queue_length: yes\n", "max_queue_length: must be an integer", id="yes"),
        pytest.param(
            "  compute:\n    gpu: 99999999999\n", "compute.gpu: must be <= 2147483647", id="gpu-huge"
        ),
    ],
)
def test_a_count_is_a_number(tmp_path: Path, body: str, said: str) -> None:
    assert said in error_of(tmp_path, HEAD + body)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        # were accepted as 5.0 and 1.0 (pydantic's lax mode), as counts were
        pytest.param("  timeout: '5'\n", "timeout: must be a number", id="timeout-text"),
        pytest.param("  payload_log: {sample: true}\n", "payload_log.sample: must be a number", id="sample"),
        pytest.param(
            "  autoscaling: {downscale_window: yes}\n",
            "autoscaling.downscale_window: must be a number",
            id="yes",
        ),
    ],
)
def test_a_number_is_a_number(tmp_path: Path, body: str, said: str) -> None:
    assert said in error_of(tmp_path, HEAD + body)


def test_numbers_with_fractions_are_taken(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "cortex.yaml").write_text(HEAD + "  timeout: 2.5\n  autoscaling: {upscale_window: 3}\n")
    api = load_project(tmp_path).apis[0].api
    assert (api.timeout, api.autoscaling.upscale_window) == (2.5, 3.0)


def test_a_whole_float_count_is_still_taken(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "cortex.yaml").write_text(HEAD + "  compute:\n    max_replicas: 4.0\n")
    assert load_project(tmp_path).apis[0].api.compute.max_replicas == 4


LONG = "a" * 5_000


@pytest.mark.parametrize(
    ("block", "said"),
    [
        # were tracebacks (ValueError: embedded null byte), exit 1
        pytest.param(
            '    request_handler: "h\\0.py"\n',
            "cortex.yaml:7: api 'a': onnx.request_handler: 'h\\x00.py' holds a NUL character",
            id="handler-nul",
        ),
        pytest.param(
            '    python_path: "lib\\0"\n',
            "cortex.yaml:7: api 'a': onnx.python_path: 'lib\\x00' holds a NUL character",
            id="python-path-nul",
        ),
        pytest.param(
            '  auth:\n    keys_file: "k\\0"\n',
            "cortex.yaml:8: api 'a': auth.keys_file: 'k\\x00' holds a NUL character",
            id="keys-nul",
        ),
        # were "error: File name too long (/tmp/...)", exit 1, naming no file, line or field
        pytest.param(
            f"    request_handler: {LONG}.py\n",
            f"cortex.yaml:7: api 'a': onnx.request_handler: '{LONG[:60]}...' cannot be used: "
            "File name too long",
            id="handler-long",
        ),
        pytest.param(
            f"  auth:\n    keys_file: {LONG}\n",
            f"cortex.yaml:8: api 'a': auth.keys_file: '{LONG[:60]}...' cannot be used: File name too long",
            id="keys-long",
        ),
        # were "does not exist" of a folder and of a device
        pytest.param(
            "  auth:\n    keys_file: handlers\n",
            "cortex.yaml:8: api 'a': auth.keys_file: handlers is not a file",
            id="keys-folder",
        ),
        pytest.param(
            "  auth:\n    keys_file: /dev/zero\n",
            "cortex.yaml:8: api 'a': auth.keys_file: /dev/zero is not a file",
            id="keys-device",
        ),
    ],
)
def test_a_path_no_file_can_have_is_one_config_error(tmp_path: Path, block: str, said: str) -> None:
    assert error_of(tmp_path, HEAD + block) == said


@pytest.mark.parametrize(
    ("model", "said"),
    [
        pytest.param('"m\\0.onnx"', "onnx.model: 'm\\x00.onnx' holds a NUL character", id="nul"),
        pytest.param(LONG, f"onnx.model: '{LONG[:60]}...' cannot be used: File name too long", id="long"),
        pytest.param('""', "onnx.model: must not be empty", id="empty"),
    ],
)
def test_a_model_path_no_file_can_have_is_one_config_error(tmp_path: Path, model: str, said: str) -> None:
    text = HEAD.replace("model: model.onnx", f"model: {model}")
    assert error_of(tmp_path, text) == f"cortex.yaml:6: api 'a': {said}"


def test_a_tensorflow_folder_of_links_to_itself_is_refused_at_once(tmp_path: Path) -> None:
    # was: `inferd validate` ran for ever (8 links to '.' and no saved_model.pb: 8 ** 8 folders)
    (tmp_path / "tf").mkdir()
    for number in range(8):
        (tmp_path / "tf" / f"l{number}").symlink_to(".")
    text = HEAD.replace("onnx:\n    model: model.onnx", "tensorflow:\n    model: tf")
    assert error_of(tmp_path, text).startswith(
        "cortex.yaml:6: api 'a': tensorflow.model: tf holds no saved_model.pb"
    )


@pytest.mark.parametrize(
    "uri", ["http://127.0.0.1:9/m.onnx/..", "https://example.com/.", "s3://bucket/models/../"]
)
def test_a_model_url_ending_in_a_dot_segment_is_one_config_error(tmp_path: Path, uri: str) -> None:
    # was: `inferd test` printed an IsADirectoryError traceback (the download was written to
    # "<cache>/tmp.../..", a folder)
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    text = HEAD.replace("model: model.onnx", f"model: {uri}")
    assert error_of(tmp_path, text) == (
        f"cortex.yaml:6: api 'a': onnx.model: {uri} ends in '{last}', which names no file: give the "
        "URL of the model itself"
    )

"""Models from s3:// on a real S3-compatible server (moto in server mode) over loopback."""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import socket
import subprocess
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from inferd import storage
from inferd.errors import UnreachableError
from tests.conftest import example, make_project, wait_for
from tests.integration.conftest import Inferd, free_port

SAMPLE = json.loads((example("iris-onnx") / "sample.json").read_text())
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3(inferd: Inferd) -> Iterator[object]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    inferd.env.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket="models")
    yield client
    client.close()  # its pooled connections, or a ResourceWarning when they are collected
    server.stop()


@contextlib.contextmanager
def s3_for_this_process(monkeypatch: pytest.MonkeyPatch, home: Path) -> Iterator[str]:
    """A moto S3 server that ``inferd.storage`` in this process reads from (its credentials,
    endpoint and ``INFERD_HOME`` set for the test); its endpoint."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("INFERD_HOME", str(home))
        yield endpoint
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def test_onnx_model_from_s3_and_reuploads_are_noticed(
    inferd: Inferd, s3: object, tmp_path: Path, iris_onnx_model: Path, two_input_model: Path
) -> None:
    client: object = s3
    client.upload_file(str(iris_onnx_model), "models", "iris/model.onnx")  # type: ignore[attr-defined]
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: remote\n- kind: api\n  name: iris\n  onnx:\n"
        "    model: s3://models/iris/model.onnx\n",
    )
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment started"
    inferd.wait_status("iris", "live")
    assert inferd.post("/remote/iris", [[6.9, 3.1, 5.4, 2.1]]).json()[0] == [2]
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment is up-to-date"

    # Same URI, new content: Cortex said "up-to-date"; inferd notices and rolls it out.
    client.upload_file(str(two_input_model), "models", "iris/model.onnx")  # type: ignore[attr-defined]
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment updated"
    inferd.wait_status("iris", "live")
    info = inferd.api("iris")
    assert [i["name"] for i in info["signature"]["inputs"]] == ["a", "b"]


@pytest.mark.tensorflow
def test_savedmodel_prefix_from_s3(inferd: Inferd, s3: object, tmp_path: Path) -> None:
    client: object = s3
    root = example("iris-tensorflow") / "models" / "iris"
    for path in root.rglob("*"):
        if path.is_file():
            key = f"tensorflow/iris/{path.relative_to(root)}"
            client.upload_file(str(path), "models", key)  # type: ignore[attr-defined]
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: remote\n- kind: api\n  name: tf\n  tensorflow:\n"
        "    model: s3://models/tensorflow/iris\n    request_handler: h.py\n",
        {"h.py": (example("iris-tensorflow") / "handlers" / "iris.py").read_text()},
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("tf", "live", timeout=120)
    assert inferd.post("/remote/tf", SAMPLE).json() == "setosa"


def test_missing_s3_object_is_the_apis_error(inferd: Inferd, s3: object, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: remote\n- kind: api\n  name: gone\n  onnx:\n    model: s3://models/nope.onnx\n",
    )
    inferd.run("deploy", str(project), "--no-wait")
    failed = inferd.wait_status("gone", "error")
    assert "s3://models/nope.onnx: no such object or prefix" in failed["error"]


def test_an_s3_model_of_the_wrong_form_says_so_naming_its_uri(
    inferd: Inferd, s3: object, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """A prefix given to onnx:, one .onnx object given to tensorflow:, a prefix holding no
    SavedModel: said as for a project's file, naming the s3:// URI (they named the cache's copy,
    the ONNX one as "INVALID_PROTOBUF ... Protobuf parsing failed", and the SavedModel ones cut
    at "expected a SavedModel, e.g.")."""
    client: object = s3
    client.upload_file(str(iris_onnx_model), "models", "iris.onnx")  # type: ignore[attr-defined]
    client.put_object(Bucket="models", Key="tf/variables/variables.index", Body=b"x")  # type: ignore[attr-defined]
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: remote\n"
        "- kind: api\n  name: folder\n  onnx:\n    model: s3://models/tf\n"
        "- kind: api\n  name: file\n  tensorflow:\n    model: s3://models/iris.onnx\n"
        "- kind: api\n  name: empty\n  tensorflow:\n    model: s3://models/tf/\n",
    )
    inferd.run("deploy", str(project), "--no-wait")
    assert inferd.wait_status("folder", "error")["error"] == "onnx.model: s3://models/tf must be a file"
    assert inferd.wait_status("file", "error")["error"] == (
        "tensorflow.model: s3://models/iris.onnx must be a SavedModel folder (or a .zip of one)"
    )
    assert inferd.wait_status("empty", "error")["error"] == (
        "tensorflow.model: s3://models/tf/ holds no saved_model.pb (export a SavedModel into it, "
        "or into a numbered version folder inside it)"
    )


def test_a_deploy_whose_shell_points_s3_elsewhere_than_the_operator_says_so(
    inferd: Inferd, s3: object, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """The operator reads s3:// with the AWS settings it started with; a deploy from a shell
    that set AWS_ENDPOINT_URL (a local S3 server) after it started failed with "Could not connect
    to the endpoint URL: https://models.s3.amazonaws.com/...", the shell's setting unmentioned.
    A setting this shell leaves unset is no warning (`AWS_PROFILE=prod inferd up`, then deploy)."""
    client: object = s3
    client.upload_file(str(iris_onnx_model), "models", "iris.onnx")  # type: ignore[attr-defined]
    endpoint = inferd.env.pop("AWS_ENDPOINT_URL")
    inferd.run("up")
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: remote\n- kind: api\n  name: iris\n  onnx:\n"
        "    model: s3://models/iris.onnx\n",
    )
    unset_here = inferd.run("deploy", str(project), "--no-wait")
    assert "AWS_ENDPOINT_URL" not in unset_here.stderr
    inferd.env["AWS_ENDPOINT_URL"] = endpoint
    told = inferd.run("deploy", str(project), "--no-wait")
    assert (
        f"warning: this shell's AWS_ENDPOINT_URL ({endpoint}) is not the operator's (unset): it reads "
        "s3:// models with the AWS settings it started with; to read them with this shell's: "
        "inferd down && inferd up"
    ) in told.stderr


def test_a_remote_model_that_fails_to_load_is_named_by_its_uri(
    inferd: Inferd, s3: object, tmp_path: Path
) -> None:
    """onnxruntime's "Load model from <path> failed" named the cache's copy
    ($INFERD_HOME/cache/models/<digest>/m.onnx), a file the user never wrote."""
    client: object = s3
    client.put_object(Bucket="models", Key="m.onnx", Body=b"\x08\x07garbage, not a model")  # type: ignore[attr-defined]
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: remote\n- kind: api\n  name: bad\n  onnx:\n    model: s3://models/m.onnx\n",
    )
    inferd.run("deploy", str(project), "--no-wait")
    error = inferd.wait_status("bad", "error")["error"]
    assert "Load model from s3://models/m.onnx failed" in error and "cache" not in error


class Origin:
    """An S3 server (moto) on a fixed port that can be stopped and started again."""

    def __init__(self, inferd: Inferd) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server: ThreadedMotoServer | None = None
        inferd.env.update(CREDENTIALS, AWS_ENDPOINT_URL=self.endpoint, INFERD_S3_TIMEOUT="2")

    def start(self, model: Path) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket="models")
        client.upload_file(str(model), "models", "iris.onnx")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def origin(inferd: Inferd) -> Iterator[Origin]:
    server = Origin(inferd)
    yield server
    server.stop()


REMOTE = "- kind: deployment\n  name: remote\n- kind: api\n  name: iris\n  onnx:\n    model: s3://models/iris.onnx\n"


def test_the_cached_model_serves_when_the_origin_is_down_after_a_restart(
    inferd: Inferd, origin: Origin, tmp_path: Path, iris_onnx_model: Path
) -> None:
    origin.start(iris_onnx_model)
    project = make_project(tmp_path / "p", REMOTE)
    inferd.run("deploy", str(project))
    inferd.run("down")
    origin.stop()

    inferd.run("up")
    restored = lambda: inferd.run("get", "iris", check=False).returncode == 0  # noqa: E731
    wait_for(restored, 60, "the deployment restored")
    info = inferd.wait_status("iris", "live")
    assert info["warning"].startswith("s3://models/iris.onnx is unreachable (")
    assert "serving the copy downloaded" in info["warning"]
    assert inferd.post("/remote/iris", [[6.9, 3.1, 5.4, 2.1]]).json()[0] == [2]
    assert "warning: s3://models/iris.onnx is unreachable" in inferd.run("get", "iris").stdout
    assert "warning: s3://models/iris.onnx is unreachable" in inferd.run("logs", "iris").stdout


def test_a_model_fetched_again_at_a_restart_is_kept_by_an_offline_prune(
    inferd: Inferd, origin: Origin, tmp_path: Path, iris_onnx_model: Path, two_input_model: Path
) -> None:
    """The copy a restart fetched (the model changed meanwhile) was missing from state.json: an
    `inferd prune` with the operator down removed it, and the next start with the origin down
    had no copy to serve."""
    origin.start(iris_onnx_model)
    project = make_project(tmp_path / "p", REMOTE)
    inferd.run("deploy", str(project))
    inferd.run("down")
    origin.stop()
    origin.start(two_input_model)  # re-uploaded while the operator was down
    inferd.run("up")
    wait_for(lambda: inferd.run("get", "iris", check=False).returncode == 0, 60, "the deployment restored")
    wait_for(
        lambda: [i["name"] for i in inferd.wait_status("iris", "live")["signature"]["inputs"]] == ["a", "b"],
        60,
        "the new model",
    )
    inferd.run("down")
    origin.stop()
    inferd.run("prune")
    inferd.run("up")
    wait_for(lambda: inferd.run("get", "iris", check=False).returncode == 0, 60, "the deployment restored")
    info = inferd.wait_status("iris", "live")
    assert "serving the copy downloaded" in info["warning"]
    assert [i["name"] for i in info["signature"]["inputs"]] == ["a", "b"]


def test_an_unreachable_origin_is_retried_until_it_answers(
    inferd: Inferd, origin: Origin, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(tmp_path / "p", REMOTE)
    failed = inferd.run("deploy", str(project), check=False, timeout=120)
    assert failed.returncode == 1
    assert "s3://models/iris.onnx: cannot download" in failed.stderr
    origin.start(iris_onnx_model)  # no redeploy: the operator retries with back-off
    # retries 5, 15 and 35 s after the failure: an origin slow to start misses the first ones
    inferd.wait_status("iris", "live", timeout=120)
    assert inferd.post("/remote/iris", [[6.9, 3.1, 5.4, 2.1]]).json()[0] == [2]
    assert "the model's origin answered again" in inferd.run("logs", "iris").stdout


def test_an_origin_that_answers_503_is_tried_three_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README, Models: an origin that cannot be reached is tried three times with back-off."""
    downloads: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(503)
            self.end_headers()

        def do_GET(self) -> None:
            downloads.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(UnreachableError, match="cannot download"):
            storage.fetch(f"http://127.0.0.1:{server.server_address[1]}/models/iris.onnx")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert downloads == ["/models/iris.onnx"] * 3


def test_an_object_key_with_dot_dot_is_refused_and_nothing_is_written_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inferd.errors import LoadError
    from inferd.storage import fetch

    with s3_for_this_process(monkeypatch, tmp_path / "home") as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key="sm/saved_model.pb", Body=b"x")
        client.put_object(Bucket="models", Key="sm/../../../../../escaped.txt", Body=b"owned")
        with pytest.raises(LoadError, match="outside the model folder"):
            fetch("s3://models/sm/")
        assert not list(tmp_path.rglob("escaped.txt"))
        assert not [path for path in (tmp_path / "home").rglob("*") if path.is_file()]


def save_with_external_weights(weights: np.ndarray, folder: Path) -> Path:
    """An ONNX model ``y = x @ weights`` (x float [N, 4]) whose weights are in model.onnx.data."""
    from onnx import TensorProto, helper, numpy_helper, save_model

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    w = numpy_helper.from_array(weights.astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True)
    path = folder / "model.onnx"
    save_model(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    return path


def test_an_onnx_model_with_external_weights_comes_with_them_from_s3(
    inferd: Inferd, s3: object, tmp_path: Path
) -> None:
    client: object = s3
    row = [[1.0, 2.0, 3.0, 4.0]]
    first, second = np.arange(8.0).reshape(4, 2), -np.ones((4, 2))
    for name in ("model.onnx", "model.onnx.data"):
        path = (
            save_with_external_weights(first, tmp_path / "v1")
            if name == "model.onnx"
            else tmp_path / "v1" / name
        )
        client.upload_file(str(path), "models", f"big/{name}")  # type: ignore[attr-defined]
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: remote\n- kind: api\n  name: big\n  onnx:\n    model: s3://models/big/model.onnx\n",
    )
    inferd.run("deploy", str(project))
    inferd.wait_status("big", "live")
    assert inferd.post("/remote/big", row).json() == [(np.array(row) @ first).tolist()]
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment is up-to-date"

    # Retrained weights re-exported: the model file's bytes are the same, only the data file changed.
    retrained = save_with_external_weights(second, tmp_path / "v2")
    assert retrained.read_bytes() == (tmp_path / "v1" / "model.onnx").read_bytes()
    client.upload_file(str(retrained.with_name("model.onnx.data")), "models", "big/model.onnx.data")  # type: ignore[attr-defined]
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment updated"
    inferd.wait_status("big", "live")
    wait_for(
        lambda: inferd.post("/remote/big", row).json() == [(np.array(row) @ second).tolist()],
        30,
        "new weights",
    )


def test_an_onnx_model_from_s3_is_downloaded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, iris_onnx_model: Path
) -> None:
    """README, Models: downloaded once (looking for external data files read the whole model first)."""
    import onnx

    from inferd.storage import remote

    with s3_for_this_process(monkeypatch, tmp_path / "home") as endpoint:
        model = onnx.load(str(iris_onnx_model))
        model.doc_string = "x" * (4 << 20)
        onnx.save(model, str(tmp_path / "big.onnx"))
        client = s3_client(endpoint)
        client.create_bucket(Bucket="models")
        client.upload_file(str(tmp_path / "big.onnx"), "models", "big.onnx")
        client.close()
        served: list[int] = []
        plain = remote._s3_client

        def counted() -> object:
            made = plain()
            made.meta.events.register(
                "after-call.s3.GetObject", lambda parsed, **_: served.append(parsed["ContentLength"])
            )
            return made

        monkeypatch.setattr(remote, "_s3_client", counted)
        path, _ = storage.fetch("s3://models/big.onnx")
        assert path.read_bytes() == (tmp_path / "big.onnx").read_bytes()
        assert sum(served) == path.stat().st_size
        assert storage.fetch("s3://models/big.onnx")[0] == path
        assert sum(served) == path.stat().st_size


def test_a_model_larger_than_the_free_disk_is_the_apis_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk made `inferd deploy` say `operator error: OSError: [Errno 28] ...` and record nothing."""
    from inferd.errors import LoadError

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        with s3_for_this_process(monkeypatch, disk / "home") as endpoint:
            client = s3_client(endpoint)
            client.create_bucket(Bucket="models")
            client.put_object(Bucket="models", Key="big/weights.bin", Body=b"\0" * (6 << 20))
            client.put_object(Bucket="models", Key="big/saved_model.pb", Body=b"\0" * 1000)
            client.close()
            for uri in ("s3://models/big/weights.bin", "s3://models/big"):
                with pytest.raises(
                    LoadError, match=r"^" + uri + r": needs 629\d+ bytes, more than the \d+ bytes free"
                ):
                    storage.fetch(uri)
            assert not [path for path in (disk / "home").rglob("*") if path.is_file()]
            # The disk filled by someone else while downloading: still the API's error, not the operator's.
            (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - (100 << 10)))
            client = s3_client(endpoint)
            client.put_object(Bucket="models", Key="mid.bin", Body=b"\0" * (900 << 10))
            client.close()
            monkeypatch.setattr(storage.remote, "_free_bytes", lambda _folder: 1 << 30)
            with pytest.raises(
                LoadError, match=r"^s3://models/mid.bin: cannot download into .*: No space left on device"
            ):
                storage.fetch("s3://models/mid.bin")
            # s3transfer leaves the connection of a part whose write failed for the garbage
            # collector: its ResourceWarning is boto's, and is let go here rather than fail
            # whichever later test the collector happens to run in.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_two_apis_fetching_one_s3_model_at_once_download_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two APIs of one deploy naming the same model each downloaded it (twice the bytes and disk)."""
    from inferd.storage import remote

    with s3_for_this_process(monkeypatch, tmp_path / "home") as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket="models")
        client.put_object(Bucket="models", Key="weights.bin", Body=b"\1" * (1 << 20))
        client.close()
        served: list[int] = []
        plain = remote._s3_client
        both = threading.Barrier(2, timeout=2)  # both look at the cache before either downloads

        def counted() -> object:
            made = plain()
            made.meta.events.register(
                "after-call.s3.GetObject", lambda parsed, **_: served.append(parsed["ContentLength"])
            )
            # one waits for the other's download instead
            with contextlib.suppress(threading.BrokenBarrierError):
                both.wait()
            return made

        monkeypatch.setattr(remote, "_s3_client", counted)
        found: list[Path] = []
        threads = [
            threading.Thread(target=lambda: found.append(storage.fetch("s3://models/weights.bin")[0]))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(found) == 2 and found[0] == found[1]
        assert sum(served) == 1 << 20


def test_a_missing_bucket_and_a_private_bucket_without_credentials_say_so_in_a_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inferd.errors import LoadError

    with s3_for_this_process(monkeypatch, tmp_path / "home") as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket="private")
        client.put_object(Bucket="private", Key="m.onnx", Body=b"x")
        client.close()
        with pytest.raises(LoadError) as missing:
            storage.fetch("s3://nobucket/m.onnx")
        assert missing.value.message == "s3://nobucket/m.onnx: the bucket nobucket does not exist"
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        with pytest.raises(LoadError) as denied:
            storage.fetch("s3://private/m.onnx")
        assert denied.value.message == (
            "s3://private/m.onnx: access denied (403) to a reader without AWS credentials:"
            " set them, or make the bucket public"
        )


def test_an_http_download_cut_short_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each cut-off attempt left its part in the cache for an hour (a full disk stayed full)."""

    class Cut(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            self.wfile.write(b"\0" * (100 << 10))  # then the connection closes

        def log_message(self, format: str, *args: object) -> None:
            pass

    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Cut)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(UnreachableError, match="cannot download"):
            storage.fetch(f"http://127.0.0.1:{server.server_address[1]}/model.onnx", attempts=2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not [path for path in (tmp_path / "home").rglob("*") if path.is_file()]


def test_a_deleted_s3_model_serves_its_cached_copy_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted operator re-fetched an object deleted meanwhile and the API went to `error`."""
    import asyncio

    from inferd.engine.models import fetch_model
    from inferd.errors import LoadError

    with s3_for_this_process(monkeypatch, tmp_path / "home") as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket="gone")
        client.put_object(Bucket="gone", Key="m.onnx", Body=b"model")
        first, digest = storage.fetch("s3://gone/m.onnx")
        client.delete_object(Bucket="gone", Key="m.onnx")
        path, again, warning = asyncio.run(fetch_model("s3://gone/m.onnx"))
        assert (path, again) == (first, digest) and path.read_bytes() == b"model"
        assert warning is not None and warning.startswith(
            "s3://gone/m.onnx is gone (no such object or prefix); serving the copy downloaded"
        )
        client.delete_bucket(Bucket="gone")
        assert asyncio.run(fetch_model("s3://gone/m.onnx"))[0] == first
        with pytest.raises(LoadError, match="the bucket gone does not exist"):  # never fetched: no copy
            asyncio.run(fetch_model("s3://gone/other.onnx"))
        client.close()


def test_an_aws_profile_that_does_not_exist_is_named_in_a_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's ProfileNotFound escaped the fetch as it was (a traceback in the API's error)."""
    from inferd.errors import LoadError

    with s3_for_this_process(monkeypatch, tmp_path / "home"):
        monkeypatch.setenv("AWS_PROFILE", "nosuch")
        with pytest.raises(LoadError) as bad:
            storage.fetch("s3://models/m.onnx")
        assert bad.value.message == (
            "s3://models/m.onnx: cannot read the AWS settings: The config profile (nosuch) could not be found"
        )


def test_a_hanging_s3_server_is_tried_three_times_then_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore retried each request twice more inside each of inferd's three attempts: nine
    reads of INFERD_S3_TIMEOUT (60 s: nine minutes) before a deploy said the origin hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])  # and never answered

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("INFERD_S3_TIMEOUT", "0.5")
    monkeypatch.setattr(storage, "FETCH_BACKOFF", 0.0)
    try:
        with pytest.raises(UnreachableError, match=r"s3://models/m\.onnx: cannot download: Read timeout"):
            storage.fetch("s3://models/m.onnx")
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        listener.close()
        thread.join(timeout=10)
        for connection in accepted:
            connection.close()
    assert len(accepted) == storage.FETCH_ATTEMPTS

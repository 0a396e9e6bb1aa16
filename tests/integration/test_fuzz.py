"""The whole HTTP surface fuzzed with schemathesis from /openapi.json, against real replicas.

No answer may be a 5xx, except a genuine handler failure (which names its function and file).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import Server, example, make_project


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory, iris_onnx_model: Path, two_input_model: Path
) -> Iterator[Server]:
    root = make_project(
        tmp_path_factory.mktemp("fuzz") / "project",
        "- kind: deployment\n  name: fuzz\n"
        "- kind: api\n  name: iris\n  onnx:\n    model: iris.onnx\n"
        "- kind: api\n  name: add\n  onnx:\n    model: add.onnx\n"
        "- kind: api\n  name: labels\n  onnx:\n    model: iris.onnx\n    request_handler: h.py\n",
        {"h.py": (example("iris-onnx") / "handlers" / "iris.py").read_text()},
        {"iris.onnx": iris_onnx_model, "add.onnx": two_input_model},
    )
    server = Server(root, tmp_path_factory.mktemp("fuzzlogs") / "serve.log").wait_ready()
    yield server
    server.stop()


def test_no_server_errors_anywhere(fuzz_server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            response = case.call(base_url=fuzz_server.url, timeout=30)
            if response.status_code >= 500:
                error = response.json().get("error", "") if response.content else ""
                if " in h.py failed: " not in error:  # the user's handler raising is a 500 by design
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {error}")

        check()
    assert failures == []
    assert fuzz_server.healthy()  # and still serving

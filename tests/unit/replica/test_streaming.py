"""Streamed items inside a replica: encoded as the endpoint encodes a whole answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from inferd import codec
from inferd.errors import HandlerError
from inferd.replica.answering import _encode
from inferd.replica.streaming import http_chunks
from inferd.testing import load_api
from tests.conftest import make_project


def test_an_item_is_encoded_as_a_whole_answer_would_be(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "items",
        "- kind: deployment\n  name: s\n- kind: api\n  name: s\n  predictor:\n    path: items.py\n",
        files={"items.py": "def predict(sample, metadata):\n    yield 1\n"},
    )
    predictor = load_api(project).predictor
    items = [np.float32(0.3), np.array([0.3], dtype=np.float32), {np.int64(1): np.float32(0.5)}]
    chunks = http_chunks(predictor, iter(items), sse=False)
    assert not isinstance(chunks, tuple)
    lines = list(chunks)
    assert [orjson.loads(line) for line in lines] == [orjson.loads(codec.dumps_answer(i)) for i in items]
    assert orjson.loads(lines[0]) == 0.30000001192092896


def test_an_async_generator_is_refused_with_what_streams_instead(tmp_path: Path) -> None:
    # `async def predict` is refused at load; one returned by a plain def got here as
    # "Type is not JSON serializable: async_generator", with no word of streaming.
    code = "async def tokens():\n    yield 1\n\n\ndef predict(sample, metadata):\n    return tokens()\n"
    project = make_project(
        tmp_path / "agen",
        "- kind: deployment\n  name: s\n- kind: api\n  name: s\n  predictor:\n    path: agen.py\n",
        files={"agen.py": code},
    )
    api = load_api(project)
    with pytest.raises(HandlerError, match="an async generator does not stream: yield from a plain def"):
        api.predict({})
    status, body, _ = _encode(api.predictor, api.predictor.predict({}), None, {})
    assert status == 500 and "an async generator does not stream" in orjson.loads(body)["error"]


def test_sys_exit_inside_a_stream_ends_the_stream_not_the_replica(tmp_path: Path) -> None:
    # It propagated out of the replica's loop: the process ended, its client got a 503 "retry it".
    code = "import sys\n\n\ndef predict(sample, metadata):\n    yield 1\n    sys.exit('enough')\n"
    project = make_project(
        tmp_path / "exits",
        "- kind: deployment\n  name: s\n- kind: api\n  name: s\n  predictor:\n    path: exits.py\n",
        files={"exits.py": code},
    )
    api = load_api(project)
    chunks = http_chunks(api.predictor, api.predictor.predict({}), sse=False)
    assert not isinstance(chunks, tuple)
    lines = list(chunks)
    assert orjson.loads(lines[0]) == 1
    assert orjson.loads(lines[1]) == {
        "error": "predict in exits.py failed after 1 item(s): SystemExit: enough"
    }
    with pytest.raises(HandlerError, match="predict failed while streaming: SystemExit: enough"):
        api.predict({})

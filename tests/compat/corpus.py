"""The Cortex v0.10.3 corpus: build each example's model once, serve it from a local S3.

Every project in ``cortex-v0.10/`` keeps the original ``cortex.yaml`` word for word, so its
models are ``s3://cortex-examples/...`` URIs. The tests answer them from a moto S3 server on
loopback (``AWS_ENDPOINT_URL``), into which each project's ``build_model.py`` output is
uploaded under the original keys.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image

from tests.integration.conftest import free_port

CORPUS = Path(__file__).parent / "cortex-v0.10"
BUCKET = "cortex-examples"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class Corpus:
    """Builds models on first use into one folder laid out like the bucket, and uploads them."""

    def __init__(self, bucket_dir: Path, endpoint: str) -> None:
        self.bucket_dir = bucket_dir
        self.endpoint = endpoint
        self.env = dict(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
        self._client: Any = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_keys())
        self._client.create_bucket(Bucket=BUCKET)
        self._built: set[str] = set()
        self.files_url = ""
        self._uploaded: set[Path] = set()

    def model_dir(self, example: str) -> Path:
        """Build ``example``'s model (once per session); the bucket folder it was written to."""
        script = CORPUS / example / "build_model.py"
        if example not in self._built and script.exists():  # a predictor without a model has none
            build_in_process(script, self.bucket_dir)
            self._built.add(example)
            for path in sorted(self.bucket_dir.rglob("*")):
                if path.is_file() and path not in self._uploaded:
                    key = path.relative_to(self.bucket_dir).as_posix()
                    self._client.upload_file(str(path), BUCKET, key)
                    self._uploaded.add(path)
        return self.bucket_dir

    def project(self, example: str, into: Path, changes: tuple[tuple[str, str], ...] = ()) -> Path:
        """A copy of the project folder (tests never write into the corpus), its model uploaded.

        ``changes``: (old, new) texts replaced in the copy's cortex.yaml (documented line changes).
        """
        self.model_dir(example)
        target = into / example
        ignore = shutil.ignore_patterns("__pycache__", "build_model.py")
        shutil.copytree(CORPUS / example, target, ignore=ignore)
        config = target / "cortex.yaml"
        for old, new in changes:
            text = config.read_text()
            assert old in text
            config.write_text(text.replace(old, new))
        return target


def build_in_process(script: Path, bucket_dir: Path) -> None:
    """Run ``script``'s ``build(bucket_dir)`` in this process.

    One Python for all the corpus instead of one per project: TensorFlow, torch and scikit-learn
    are imported once (the tests import them anyway to call each runtime directly). The scripts
    build into their own ``tf.Graph``; what a script adds to ``sys.path`` and ``sys.modules``
    (its neighbour ``src/model.py``) is taken back afterwards.
    """
    path = list(sys.path)
    name = f"corpus_build_{script.parent.name.replace('-', '_')}"
    try:
        spec = importlib.util.spec_from_file_location(name, script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build(bucket_dir)
    finally:
        sys.path[:] = path
        for key, loaded in list(sys.modules.items()):
            if str(getattr(loaded, "__file__", None) or "").startswith(str(CORPUS)):
                del sys.modules[key]


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield Corpus(tmp_path_factory.mktemp("cortex-examples"), f"http://127.0.0.1:{port}")
    finally:
        server.stop()


class Files:
    """Files the examples' handlers fetch over HTTP (labels, images, a vocabulary), on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        labels = ["background"] + [f"label-{index:04d}" for index in range(1000)]
        (root / "ImageNetLabels.txt").write_text("\n".join(labels) + "\n")
        pixels = np.random.default_rng(11).integers(0, 256, size=(299, 299, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "image.png")
        # GPT-2-format vocabulary files: the 256 byte symbols, no merges.
        visible = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
        shifted = iter(range(256, 512))
        alphabet = [chr(b) if b in visible else chr(next(shifted)) for b in range(256)]
        (root / "encoder.json").write_text(
            json.dumps({symbol: index for index, symbol in enumerate(alphabet)})
        )
        (root / "vocab.bpe").write_text("#version: 0.2\n")
        vocab = root / "uncased_L-12_H-768_A-12" / "vocab.txt"  # 64 ids at most (the model's table)
        vocab.parent.mkdir()
        words = "the movie was great good bad terrible fun plot act ##ing ##s ! . , i it love hate"
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words.split()]) + "\n")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Files]:
    served = Files(tmp_path_factory.mktemp("files"))
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def corpus_env(corpus: Corpus, files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Corpus:
    """The S3 endpoint, the file server and a private INFERD_HOME for servers started here."""
    for key, value in corpus.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("COMPAT_FILES_URL", files.url)
    corpus.files_url = files.url
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    return corpus

"""An ONNX model given as a ``.zip`` (the model file with its external data files, one object to
upload): unpacked once into the cache, loaded and shared as the unzipped model is."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inferd.errors import LoadError
from inferd.runtimes import load_runtime, onnx_shared
from tests.unit.runtimes.test_onnx_shared import external_copy, weights_model


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INFERD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INFERD_SHARE_WEIGHTS", raising=False)
    return tmp_path / "home"


def zipped(archive: Path, files: dict[str, Path]) -> Path:
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, path in files.items():
            bundle.write(path, name)
    return archive


def test_a_zipped_onnx_model_with_external_data_loads_shared_and_answers_as_unzipped(
    tmp_path: Path, home: Path
) -> None:
    # a user saw every replica fail with "Protobuf parsing failed" (onnxruntime read the zip's bytes)
    saved = external_copy(weights_model(tmp_path / "plain" / "model.onnx"), tmp_path / "saved")
    archive = zipped(
        tmp_path / "model.zip",
        {"export/model.onnx": saved, "export/model.onnx.data": saved.with_name("model.onnx.data")},
    )
    x = np.linspace(-1, 1, 2 * 256, dtype=np.float32).reshape(2, 256)
    expected = ort.InferenceSession(str(saved), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    runtime = load_runtime("onnx", archive)
    assert np.array_equal(runtime.run({"x": x})[0], expected[0])
    copies = [path for path in (home / "cache" / "shared").iterdir() if path.is_dir()]
    assert len(copies) == 1 and onnx_shared.in_use(copies[0])  # its weights are shared


def test_a_zip_without_exactly_one_onnx_model_is_refused_by_name(tmp_path: Path, home: Path) -> None:
    model = weights_model(tmp_path / "model.onnx", width=8, hidden=8)
    with pytest.raises(LoadError, match=r"holds no \.onnx file"):
        load_runtime("onnx", zipped(tmp_path / "none.zip", {"readme.txt": model}))
    two = zipped(tmp_path / "two.zip", {"a.onnx": model, "b/b.onnx": model})
    with pytest.raises(LoadError, match=r"two.zip holds 2 \.onnx files \(a.onnx, b/b.onnx\)"):
        load_runtime("onnx", two)

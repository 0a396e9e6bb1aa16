"""A version whose model origin was unreachable is prepared again as it was deployed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from inferd.config.schema import Api, ApiConfig
from inferd.engine import prepare as prepare_module
from inferd.errors import UnreachableError


def test_the_retry_of_an_unreachable_origin_keeps_the_deploys_relaxed_pins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "requirements.txt").write_text("somepkg==0.21.*\n")
    model = tmp_path / "iris.onnx"
    model.write_bytes(b"model")
    origin_up = False

    async def fetch_model(uri: str) -> tuple[Path, str, str | None]:
        if not origin_up:
            raise UnreachableError(f"{uri}: cannot download (connection refused)")
        return model, "digest", None

    installs: list[bool] = []

    def ensure_packages(home: Path, requirements: Path, relax: bool = False, warn: Any = None) -> Path:
        installs.append(relax)
        folder = tmp_path / "packages"
        folder.mkdir(exist_ok=True)
        return folder

    monkeypatch.setattr(prepare_module, "fetch_model", fetch_model)
    monkeypatch.setattr(prepare_module, "ensure_packages", ensure_packages)
    # A request handler: requirements.txt is installed only for an API that runs Python code.
    api = Api.model_validate(
        {"kind": "api", "name": "iris", "onnx": {"model": "s3://models/iris.onnx", "request_handler": "h.py"}}
    )
    config = ApiConfig(api=api, deployment="d", endpoint="/d/iris")

    def prepare(*where: Any) -> Any:
        return asyncio.run(
            prepare_module.prepare(
                config, *where, home=tmp_path / "home", sources={}, event=lambda *a, **k: None
            )
        )

    failed = prepare(root, "tree", "", True)  # inferd deploy --relax-pins, origin down
    assert failed.spec is None and failed.retry is not None
    origin_up = True
    retried = prepare(*failed.retry)  # what the engine does when the retry is due
    assert retried.spec is not None and retried.spec.extra_paths == (tmp_path / "packages",)
    assert installs == [True]  # installed with the pins relaxed, as deployed


def test_a_versions_requirement_warnings_are_in_its_status(tmp_path: Path) -> None:
    # was: `numpy<2` beside inferd's numpy 2 was said in the API's log only: `inferd deploy` and
    # `inferd get API` showed nothing, though the README says "the deploy says so". A pin below
    # inferd's numpy that a wheel meets on every Python (no numpy 1.x has one for 3.13)
    numpy = __import__("numpy").__version__
    root = tmp_path / "project"
    root.mkdir()
    (root / "requirements.txt").write_text(f"numpy<{numpy}\n")
    api = Api.model_validate({"kind": "api", "name": "p", "predictor": {"path": "predictor.py"}})
    config = ApiConfig(api=api, deployment="d", endpoint="/d/p")
    version = asyncio.run(
        prepare_module.prepare(
            config, root, "tree", "", home=tmp_path / "home", sources={}, event=lambda *a, **k: None
        )
    )
    assert version.spec is not None
    assert version.warning == (
        f"requirements.txt: numpy<{numpy} conflicts with numpy {numpy}, which inferd itself runs with; "
        "handlers import that version"
    )

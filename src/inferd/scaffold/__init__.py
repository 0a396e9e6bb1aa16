"""``inferd init``: a new project folder that serves at once.

Without ``--model`` the project serves a small model built here (``toy.py``) with a handler,
a sample, the expected answer and a pytest file, so every step of the developer's loop works
on the first try. With ``--model PATH`` the user's model is copied in, the handler passes the
request through, and ``sample.json`` is made from the model's own inputs (zeros of the right
dtype and shape), so ``inferd serve`` and ``inferd test`` run on it unchanged.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from inferd.errors import InferdError, UsageError
from inferd.onnxdata import external_files
from inferd.scaffold import templates, toy

FLAVOURS = ("onnx", "tensorflow", "predictor")
DEMO_MODELS = {"onnx": "starter.onnx", "tensorflow": "starter", "predictor": "starter.json"}


def dns_name(text: str, fallback: str) -> str:
    """``text`` as a DNS-1035 name (lowercase letters, digits, '-'; starts with a letter)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)[:40].rstrip("-")
    return name or fallback


def flavour_of(model: Path | None) -> str:
    """The kind of project a ``--model`` given without a kind asks for: ``tensorflow`` for a
    folder (a SavedModel, or a folder of numbered ones) or a ``.zip`` holding a
    ``saved_model.pb``, else ``onnx`` (the default, also without a model)."""
    if model is None:
        return "onnx"
    if model.is_dir():
        return "tensorflow"
    if model.suffix == ".zip" and zipfile.is_zipfile(model):
        with zipfile.ZipFile(model) as archive:
            if any(PurePosixPath(name).name == "saved_model.pb" for name in archive.namelist()):
                return "tensorflow"
    return "onnx"


def init_project(target: Path, flavour: str, model: Path | None = None) -> list[str]:
    """Write a project of ``flavour`` into ``target`` (new or empty); the files written."""
    if flavour not in FLAVOURS:
        raise UsageError(f"unknown kind of project {flavour!r} (expected one of: {', '.join(FLAVOURS)})")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists and is not an empty folder: choose a new folder")
    if model is not None:
        _check_model(model, flavour)
    deployment = dns_name(target.resolve().name, "my-project")
    api = "classifier" if model is None else dns_name(model.stem, "model")
    model_name = DEMO_MODELS[flavour] if model is None else model.name
    existed = target.exists()
    target.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    data_files: list[str] = []  # an ONNX model's external data, copied beside it
    signature_key: str | None = None  # the signature cortex.yaml names, when it must name one
    keys: list[str] = []  # then every signature of the SavedModel
    try:
        model_path = target / "models" / model_name
        if model is None:
            _build_demo(flavour, model_path)
            files["sample.json"] = json.dumps(toy.SAMPLE, indent=2) + "\n"
            files["expected.json"] = json.dumps(toy.SAMPLE_LABEL) + "\n"
            # named after the project too: two projects' tests in one pytest session must not clash
            test_file = f"test_{deployment}_{api}.py".replace("-", "_")
            files[test_file] = templates.render(templates.DEMO_TEST, api=api)
        else:
            data_files = [path.relative_to(target).as_posix() for path in _copy(model, model_path)]
            signature_key, keys = _signature_choice(flavour, model_path)
            try:
                sample = _sample_for(flavour, model_path, signature_key)
            except Exception as exc:  # inferd's own errors are sentences (a runtime not installed)
                reason = str(exc) if isinstance(exc, InferdError) else f"{type(exc).__name__}: {exc}"
                raise UsageError(f"--model {model}: cannot load it: {reason}") from None
            files["sample.json"] = json.dumps(sample, indent=2) + "\n"
        config_block = {
            "onnx": templates.CONFIG_ONNX,
            "tensorflow": templates.CONFIG_TENSORFLOW,
            "predictor": templates.CONFIG_PREDICTOR,
        }[flavour]
        if signature_key is not None:  # none of several is the default: cortex.yaml names one
            config_block = config_block.replace(
                templates.SIGNATURE_KEY_LINE,
                f"    signature_key: {signature_key}   # the SavedModel's signatures: {', '.join(keys)}\n",
            )
        files["cortex.yaml"] = templates.render(
            templates.CONFIG_HEAD + config_block + templates.CONFIG_TAIL,
            deployment=deployment,
            api=api,
            model=model_name,
        )
        if flavour == "predictor":
            body = templates.DEMO_PREDICTOR if model is None else templates.ANY_PREDICTOR
            files["predictor.py"] = templates.render(templates.PREDICTOR_HEAD, api=api) + body
        else:
            demo = templates.DEMO_ONNX_HANDLER if flavour == "onnx" else templates.DEMO_TENSORFLOW_HANDLER
            passthrough = (
                templates.ANY_ONNX_HANDLER if flavour == "onnx" else templates.ANY_TENSORFLOW_HANDLER
            )
            body = demo if model is None else passthrough
            files[f"handlers/{api}.py"] = templates.render(templates.HANDLER_HEAD, api=api) + body
        for name, text in files.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except BaseException:
        _remove_contents(target, existed)  # the folder was new or empty: all in it is ours
        raise
    return sorted([*files, f"models/{model_name}", *data_files])


def _remove_contents(target: Path, keep_folder: bool) -> None:
    if not keep_folder:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _check_model(model: Path, flavour: str) -> None:
    if not model.exists():
        raise UsageError(f"--model {model}: no such file or folder")
    if flavour == "onnx" and not (model.is_file() and model.suffix in (".onnx", ".zip")):
        raise UsageError(
            f"--model {model}: an ONNX project needs a .onnx file (or a .zip holding one); a SavedModel "
            "folder makes a TensorFlow project, and any other file needs --predictor"
        )
    if flavour == "tensorflow" and not (model.is_dir() or model.suffix == ".zip"):
        raise UsageError(f"--model {model}: a TensorFlow project needs a SavedModel folder (or its .zip)")


def _build_demo(flavour: str, path: Path) -> None:
    if flavour == "onnx":
        toy.build_onnx(path)
    elif flavour == "tensorflow":
        toy.build_tensorflow(path)
    else:
        toy.write_weights(path)


def _copy(source: Path, target: Path) -> list[Path]:
    """The model into the project; an ONNX file with the external data files it names, which
    sit beside it by paths relative to its folder (weights saved apart: every model over 2 GB)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
        return []
    shutil.copy2(source, target)
    if source.suffix != ".onnx":
        return []
    folder, copied = source.parent.resolve(), []
    for data in external_files(source):
        beside = target.parent / data.relative_to(folder)
        beside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data, beside)
        copied.append(beside)
    return copied


def _signature_choice(flavour: str, model_path: Path) -> tuple[str | None, list[str]]:
    """The signature a TensorFlow project's cortex.yaml must name, when the SavedModel has several
    and none is the one served without a ``signature_key`` (the first, by name), and them all;
    ``(None, [])`` otherwise, or when it cannot be read (loading it then says why)."""
    if flavour != "tensorflow":
        return None, []
    from inferd.runtimes.tensorflow import choose_signature, read_signature_map
    from inferd.storage.layout import find_saved_model

    try:
        keys = list(read_signature_map(find_saved_model(model_path)))
    except Exception:  # not a SavedModel: loading it says so
        return None, []
    try:
        choose_signature(keys, None)
    except InferdError:  # several signatures, none the default (or none at all)
        return (keys[0], keys) if keys else (None, [])
    return None, []


def _sample_for(flavour: str, model_path: Path, signature_key: str | None = None) -> Any:
    """A request body the model takes: each input as zeros of its dtype and shape."""
    if flavour == "predictor":
        return {"text": "hello"}
    from inferd.runtimes import load_runtime

    runtime = load_runtime(flavour, model_path, signature_key)
    return {spec.name: _zeros(spec.dtype.kind, spec.shape) for spec in runtime.inputs}


def _zeros(kind: str, shape: tuple[int | None, ...] | None) -> Any:
    value: Any = 0.0 if kind in "fc" else False if kind == "b" else "" if kind in "USO" else 0
    for size in reversed(shape or (1,)):
        value = [value] * (1 if size is None else size)
    return json.loads(json.dumps(value))  # independent lists, not one list repeated

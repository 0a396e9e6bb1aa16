"""The rules that span a project's resources and the files they name.

``schema.py`` checks each resource alone (a field's type, range, default); here the project is
checked whole: one deployment, unique API names and endpoints, splitters and shadows naming APIs
of the project, and the handler, model, keys and python_path files inside the project folder.
Every rule raises ``FieldError`` at the YAML location it is about.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from stat import S_ISREG
from urllib.parse import urlsplit

from inferd.config.blocks import Auth, Shadow
from inferd.config.names import reserved
from inferd.config.schema import (
    Api,
    ApiConfig,
    Deployment,
    FieldError,
    Project,
    SplitterConfig,
    TrafficSplitter,
    is_remote,
)
from inferd.errors import shown


def _usable(text: str, location: tuple[str | int, ...], what: str) -> None:
    """Refuse a path no file can have (the file system would raise, not answer "missing")."""
    if not text:
        raise FieldError(location, f"{what} must not be empty")
    if "\0" in text:
        raise FieldError(location, f"{what} {shown(text)} holds a NUL character")


def resolved(path: Path) -> Path | None:
    """``path`` absolute, its symbolic links followed; None when one of them loops. Python 3.11
    and 3.12 raise pathlib's "Symlink loop"; 3.13's ``resolve`` leaves the loop in the path it
    returns, which the file system then refuses (``ELOOP``)."""
    try:
        path = path.resolve()
    except (RuntimeError, OSError):
        return None
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
    return path


def _status(path: Path, text: str, location: tuple[str | int, ...], what: str) -> os.stat_result | None:
    """``path``'s status, None when missing; a name the system refuses (too long) is the error."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (RuntimeError, OSError) as exc:  # too long a name, a link loop, no permission
        reason = getattr(exc, "strerror", None) or str(exc)
        raise FieldError(location, f"{what} {shown(text)} cannot be used: {reason}") from None


def _inside(root: Path, relative: str, location: tuple[str | int, ...], what: str) -> Path:
    _usable(relative, location, what)
    candidate = Path(relative)
    path = resolved(candidate if candidate.is_absolute() else root / candidate)
    if path is None:
        raise FieldError(location, f"{what} {relative!r} is a symbolic link that loops")
    if path != root and root not in path.parents:
        raise FieldError(location, f"{what} {relative!r} is outside the project folder")
    _status(path, relative, location, what)
    return path


def check_project(
    config_file: Path,
    deployments: list[tuple[int, Deployment]],
    apis: list[tuple[int, Api]],
    keys_root: Path | None = None,
    splitters: list[tuple[int, TrafficSplitter]] | None = None,
) -> Project:
    """Apply the rules that span resources and the files they name; raise ``FieldError``.

    ``keys_root``: where relative ``auth.keys_file`` paths are (a snapshot's source project, as
    key files are never copied); they become absolute.
    """
    root = config_file.parent
    if not deployments:
        raise FieldError((), f"{config_file.name} must define a deployment resource (kind: deployment)")
    if len(deployments) > 1:
        raise FieldError((deployments[1][0],), "deployment: only one deployment resource is allowed")
    deployment = deployments[0][1]
    names: set[str] = set()
    endpoints: dict[str, str] = {}
    configs: list[ApiConfig] = []
    for index, api in apis:
        label = f"api '{api.name}'"
        if api.name in names:
            raise FieldError((index, "name"), f"{label}: name: another api is named {api.name!r}")
        names.add(api.name)
        endpoint = api.endpoint or f"/{deployment.name}/{api.name}"
        if reserved(endpoint):
            raise FieldError((index, "endpoint"), f"{label}: endpoint: {endpoint} is reserved by inferd")
        if endpoint in endpoints:
            raise FieldError(
                (index, "endpoint"),
                f"{label}: endpoint: multiple APIs specify the same endpoint ({endpoint}, "
                f"also api '{endpoints[endpoint]}')",
            )
        endpoints[endpoint] = api.name
        if keys_root is not None and api.auth is not None and api.auth.keys_file is not None:
            absolute = str((keys_root / api.auth.keys_file).resolve())  # unchanged when absolute
            api = api.model_copy(update={"auth": api.auth.model_copy(update={"keys_file": absolute})})
        _check_files(root, index, api)
        configs.append(ApiConfig(api=api, deployment=deployment.name, endpoint=endpoint, project_root=root))
    for index, api in apis:
        _check_shadow(index, f"api '{api.name}'", api.name, api.shadow, names)
    auths = {config.api.name: _keys_of(root, config.api.auth) for config in configs}
    routes = _check_splitters(deployment.name, splitters or [], auths, endpoints)
    return Project(
        root=root, config_file=config_file, deployment=deployment, apis=tuple(configs), splitters=routes
    )


def _keys_of(root: Path, auth: Auth | None) -> tuple[frozenset[str], str | None] | None:
    """Where an API's keys come from, in a form two APIs that take the same keys share."""
    if auth is None:
        return None
    keys_file = str((root / auth.keys_file).resolve()) if auth.keys_file is not None else None
    return frozenset(auth.keys_from_env), keys_file


def _check_splitters(
    deployment: str,
    splitters: list[tuple[int, TrafficSplitter]],
    auths: dict[str, tuple[frozenset[str], str | None] | None],
    endpoints: dict[str, str],
) -> tuple[SplitterConfig, ...]:
    """Splitters name APIs of the project that take the same keys (``auths``: each API's), and
    take names and endpoints no API or splitter has."""
    names = set(auths)
    routes: list[SplitterConfig] = []
    taken = set(names)
    for index, splitter in splitters:
        label = f"traffic_splitter '{splitter.name}'"
        if splitter.name in taken:
            raise FieldError(
                (index, "name"), f"{label}: name: an api or splitter is already named {splitter.name!r}"
            )
        taken.add(splitter.name)
        total = sum(entry.weight for entry in splitter.apis)
        if total != 100:
            raise FieldError(
                (index, "apis"), f"{label}: apis: the weights must add up to 100 (they add up to {total})"
            )
        listed: set[str] = set()
        for position, entry in enumerate(splitter.apis):
            if entry.name in listed:
                raise FieldError(
                    (index, "apis", position, "name"), f"{label}: apis: api {entry.name!r} is listed twice"
                )
            listed.add(entry.name)
            if entry.name not in names:
                known = ", ".join(sorted(names)) or "none"
                raise FieldError(
                    (index, "apis", position, "name"),
                    f"{label}: apis: no api named {shown(entry.name)} in this project (apis: {known})",
                )
            first = splitter.apis[0].name
            if auths[entry.name] != auths[first]:
                # The splitter picks an API before it checks the key: a client would be refused
                # on some of its requests and not on the others.
                raise FieldError(
                    (index, "apis", position, "name"),
                    f"{label}: apis: api {entry.name!r} does not take the same API keys (auth) as "
                    f"{first!r}; a splitter's APIs must, or its clients are refused on some requests only",
                )
        _check_shadow(index, label, splitter.name, splitter.shadow, names)
        endpoint = splitter.endpoint or f"/{deployment}/{splitter.name}"
        if reserved(endpoint):
            raise FieldError((index, "endpoint"), f"{label}: endpoint: {endpoint} is reserved by inferd")
        if endpoint in endpoints:
            raise FieldError(
                (index, "endpoint"),
                f"{label}: endpoint: {endpoint} is already the endpoint of '{endpoints[endpoint]}'",
            )
        endpoints[endpoint] = splitter.name
        routes.append(SplitterConfig(splitter=splitter, deployment=deployment, endpoint=endpoint))
    return tuple(routes)


def _check_shadow(index: int, label: str, name: str, shadow: Shadow | None, names: set[str]) -> None:
    """A shadow names another API of the project."""
    if shadow is None:
        return
    if shadow.api == name:
        raise FieldError((index, "shadow", "api"), f"{label}: shadow.api: cannot be {name!r} itself")
    if shadow.api not in names:
        known = ", ".join(sorted(names)) or "none"
        raise FieldError(
            (index, "shadow", "api"),
            f"{label}: shadow.api: no api named {shown(shadow.api)} in this project (apis: {known})",
        )


def _holds_saved_model(folder: Path, depth: int = 8) -> bool:
    """A ``saved_model.pb`` anywhere below ``folder`` (symlinked folders followed, each folder
    looked into once and ``depth`` deep at most, so links to a folder above end at once)."""
    seen: set[tuple[int, int]] = set()
    for where, dirs, files in os.walk(folder, followlinks=True):
        if "saved_model.pb" in files:
            return True
        try:
            found = os.stat(where)
        except OSError:
            found = None
        # eight links to '.' made 8 ** 8 folders to walk: `inferd validate` never ended
        if found is None or (found.st_dev, found.st_ino) in seen:
            dirs.clear()
            continue
        seen.add((found.st_dev, found.st_ino))
        if len(Path(where).relative_to(folder).parts) >= depth:
            dirs.clear()
    return False


def model_form_problem(api: Api, uri: str, path: Path) -> str | None:
    """What is wrong with the model at ``path`` (``uri`` as the config wrote it) for the api's
    runtime, or None: a folder for onnx:, a lone file for tensorflow:. Asked of a project's
    model here, and of a downloaded one (an s3:// prefix or object) before its replicas start."""
    if api.onnx is not None and not path.is_file():
        return f"onnx.model: {uri} must be a file"
    if api.onnx is not None and path.stat().st_size == 0:
        return f"onnx.model: {uri} is empty (0 bytes)"
    if api.onnx is not None:
        not_a_model = _not_a_model(path)
        if not_a_model is not None:
            return f"onnx.model: {uri} {not_a_model}"
    # anywhere below: Cortex served version folders and estimator exports (storage's search)
    if api.tensorflow is not None and path.is_dir() and not _holds_saved_model(path):
        return (
            f"tensorflow.model: {uri} holds no saved_model.pb (export a SavedModel into it, or into "
            "a numbered version folder inside it)"
        )
    if api.tensorflow is not None and not (path.is_dir() or path.suffix == ".zip"):
        return f"tensorflow.model: {uri} must be a SavedModel folder (or a .zip of one)"
    return None


def _not_a_model(path: Path) -> str | None:
    """What a model file is instead of a model, told by its first bytes: a Git LFS pointer (a
    clone without `git lfs pull`) or a web page (a page's URL downloaded); else None."""
    try:
        with path.open("rb") as file:
            head = file.read(512)
    except OSError:
        return None  # unreadable: the load says why
    if head.startswith(b"version https://git-lfs.github.com/spec/"):
        return "is a Git LFS pointer, not the model: fetch the file itself (git lfs pull)"
    start = head.lstrip()[:64].lower()
    if start.startswith((b"<!doctype html", b"<html")):
        return (
            "is an HTML page, not an ONNX model: save the file itself (a web page's URL, such as "
            "GitHub's .../blob/..., gives the page)"
        )
    return None


def _check_files(root: Path, index: int, api: Api) -> None:
    label = f"api '{api.name}'"
    block_name = api.model_format
    if api.handler_file is not None:
        field = "path" if api.predictor is not None else "request_handler"
        where = (index, block_name, field)
        path = _inside(root, api.handler_file, where, f"{label}: {block_name}.{field}:")
        if path.is_dir():
            raise FieldError(
                where,
                f"{label}: {block_name}.{field}: {api.handler_file} is a folder; name the handler's .py file",
            )
        if not path.is_file():
            missing = "is not a file" if path.exists() else "does not exist"  # a FIFO: not "missing"
            raise FieldError(where, f"{label}: {block_name}.{field}: {api.handler_file} {missing}")
        if path.suffix not in (".py", ".pickle"):
            raise FieldError(where, f"{label}: {block_name}.{field}: must be a .py (or dill .pickle) file")
    if api.auth is not None and api.auth.keys_file is not None:
        keys_at: tuple[str | int, ...] = (index, "auth", "keys_file")
        text = api.auth.keys_file
        _usable(text, keys_at, f"{label}: auth.keys_file:")
        found = _status(root / text, text, keys_at, f"{label}: auth.keys_file:")  # absolute: as it is
        if found is None:
            raise FieldError(keys_at, f"{label}: auth.keys_file: {text} does not exist")
        if not S_ISREG(found.st_mode):  # a folder, /dev/zero: said "does not exist"
            raise FieldError(keys_at, f"{label}: auth.keys_file: {text} is not a file")
    if api.python_path is not None:
        where = (index, block_name, "python_path")
        path = _inside(root, api.python_path, where, f"{label}: {block_name}.python_path:")
        if not path.is_dir():
            raise FieldError(where, f"{label}: {block_name}.python_path: {api.python_path} is not a folder")
    uri = api.model_uri
    if uri is not None and is_remote(uri):
        try:
            parts = urlsplit(uri)
            host = parts.hostname
        except ValueError as exc:  # `http://[::1/m.onnx`: a traceback, "Invalid IPv6 URL"
            raise FieldError(
                (index, block_name, "model"),
                f"{label}: {block_name}.model: {shown(uri)} is not a valid URL ({exc})",
            ) from None
        if not host:  # `s3:///m.onnx`, `http://:80/m`: passed here, and failed only at deploy
            what = "host" if parts.scheme.startswith("http") else "bucket"
            raise FieldError(
                (index, block_name, "model"),
                f"{label}: {block_name}.model: {shown(uri)} names no {what} (write {parts.scheme}://{what.upper()}/PATH)",
            )
        last = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if last in (".", ".."):  # the download was written to "<cache>/tmp.../..", a folder
            raise FieldError(
                (index, block_name, "model"),
                f"{label}: {block_name}.model: {uri} ends in '{last}', which names no file: give the "
                "URL of the model itself",
            )
    if uri is not None and not is_remote(uri):
        where = (index, block_name, "model")
        path = _inside(root, uri, where, f"{label}: {block_name}.model:")
        if not path.exists():
            raise FieldError(where, f"{label}: {block_name}.model: {uri} does not exist")
        problem = model_form_problem(api, uri, path)
        if problem is not None:
            raise FieldError(where, f"{label}: {problem}")

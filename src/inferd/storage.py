"""Model sources: a model URI -> a local path (project files, or a cache of remote objects).

TensorFlow layouts are resolved here too: a SavedModel folder, a parent folder whose highest
numeric version folder holds the SavedModel (as TF Serving and Cortex did), or a ``.zip`` of
either, unpacked once into a cache keyed by the zip's content hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from inferd import onnxdata
from inferd.errors import LoadError, UnreachableError

SAVED_MODEL_TREE = """expected a SavedModel, e.g.
  model/                       (or model/1/, model/2/: the highest number is served)
    saved_model.pb
    variables/variables.index
    variables/variables.data-00000-of-00001"""


# Inside every folder inferd creates in its caches and snapshots: only such folders are ever
# collected (``operator/prune.py``), never a look-alike someone else put there.
CREATED_MARK = ".inferd-created"


def inferd_home() -> Path:
    """inferd's state folder: ``$INFERD_HOME``, default ``~/.inferd``."""
    return Path(os.environ.get("INFERD_HOME", Path.home() / ".inferd"))


def cache_dir() -> Path:
    """Where downloaded and unpacked models live (``$INFERD_HOME/cache``)."""
    return inferd_home() / "cache"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(path: Path, skip: Collection[Path] = ()) -> str:
    """SHA-256 over a file, or over every file of a folder (names and contents) but ``skip``."""
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file() and p not in skip):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(file_digest(child).encode())
    return digest.hexdigest()


def local_model_path(uri: str, project_root: Path) -> Path:
    """The local path of a model URI relative to the project folder."""
    path = Path(uri)
    return path if path.is_absolute() else (project_root / path).resolve()


def unzipped_path(archive: Path) -> Path:
    """Where ``unpack_zip`` puts ``archive``'s content."""
    return cache_dir() / "unzipped" / file_digest(archive)[:32]


def model_files(model_path: Path | None) -> tuple[Path, ...]:
    """What serving ``model_path`` reads: the path, and its unpacked copy for a ``.zip``."""
    if model_path is None:
        return ()
    if model_path.suffix == ".zip" and model_path.is_file():
        return (model_path, unzipped_path(model_path))
    return (model_path,)


def unpack_zip(archive: Path) -> Path:
    """Unpack ``archive`` once into the cache; the folder it was unpacked into."""
    target = unzipped_path(archive)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.namelist():
                resolved = (scratch / member).resolve()
                if scratch.resolve() not in resolved.parents and resolved != scratch.resolve():
                    raise LoadError(f"{archive.name}: member {member!r} escapes the archive")
            bundle.extractall(scratch)
        (scratch / CREATED_MARK).write_text("")
        scratch.rename(target)
    except zipfile.BadZipFile as exc:
        raise LoadError(f"{archive.name} is not a valid zip file: {exc}") from exc
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def _is_saved_model(folder: Path) -> bool:
    return (folder / "saved_model.pb").is_file()


def find_saved_model(path: Path) -> Path:
    """Resolve a SavedModel folder, version parent, or zip to the folder holding saved_model.pb."""
    if path.is_file() and path.suffix == ".zip":
        path = unpack_zip(path)
    if not path.is_dir():
        raise LoadError(f"{path} is not a folder or .zip; {SAVED_MODEL_TREE}")
    for candidate in (path, *_only_child(path)):
        if _is_saved_model(candidate):
            return candidate
        versions = sorted(
            (int(child.name), child)
            for child in candidate.iterdir()
            if child.is_dir() and child.name.isdigit() and _is_saved_model(child)
        )
        if versions:
            return versions[-1][1]
    nested = _nested_saved_model(path)
    if nested is not None:
        return nested
    raise LoadError(f"{path} holds no SavedModel; {SAVED_MODEL_TREE}")


def _nested_saved_model(path: Path) -> Path | None:
    """A SavedModel deeper in ``path``: Cortex took a checkpoint folder with the export inside.

    ``estimator.train_and_evaluate`` leaves ``model_dir/export/<exporter>/<timestamp>/`` beside
    its checkpoints, and Cortex's docs say to upload that folder as it is; Cortex served any
    SavedModel found under the path. The highest numeric version folder wins (the newest
    export), then the last path in sorted order, as Cortex's S3 listing ordered them.
    """
    found = [
        pb.parent
        for pb in path.rglob("saved_model.pb")
        if pb.is_file() and not any(part.startswith(".") for part in pb.relative_to(path).parts)
    ]
    if not found:
        return None

    def rank(folder: Path) -> tuple[int, str]:
        return (int(folder.name) if folder.name.isdigit() else -1, folder.as_posix())

    return max(found, key=rank)


def _only_child(path: Path) -> list[Path]:
    # A zip of a folder unpacks into that one folder.
    children = [child for child in path.iterdir() if not child.name.startswith((".", "__MACOSX"))]
    return children if len(children) == 1 and children[0].is_dir() else []


FETCH_ATTEMPTS = 3
FETCH_BACKOFF = 0.5  # seconds before the second attempt; doubled for each one after


def fetch(
    uri: str, progress: Callable[[str], None] | None = None, attempts: int = FETCH_ATTEMPTS
) -> tuple[Path, str]:
    """Download a remote model once into the cache; its local path and a content digest.

    The cache is keyed by the object's identity (ETag, or size and date for HTTP), so a model
    re-uploaded to the same URI is fetched again and changes the API's version (Cortex hashed
    only the path and missed it). An unreachable origin is tried ``attempts`` times with
    back-off, then ``UnreachableError`` (``cached_copy`` has the last copy fetched).
    """
    say = progress or (lambda _text: None)
    if uri.startswith("s3://"):
        fetcher = _fetch_s3
    elif uri.startswith(("http://", "https://")):
        fetcher = _fetch_http
    elif uri.startswith(("gs://", "gcs://")):
        fetcher = _fetch_fsspec
    else:
        raise LoadError(f"unsupported model URI {uri!r} (use a project path, s3://, gs:// or http(s)://)")
    for attempt in range(attempts):
        try:
            target, digest = fetcher(uri, say)
        except UnreachableError:
            if attempt == attempts - 1:
                raise
            time.sleep(FETCH_BACKOFF * 2**attempt)
            continue
        _remember(uri, target, digest)
        return target, digest
    raise AssertionError("unreachable")  # pragma: no cover


def _last_file(uri: str) -> Path:
    return cache_dir() / "models" / "last" / (hashlib.sha256(uri.encode()).hexdigest()[:32] + ".json")


def _remember(uri: str, target: Path, digest: str) -> None:
    record = {"uri": uri, "path": str(target), "digest": digest, "fetched": time.time()}
    path = _last_file(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(record), encoding="utf-8")
    scratch.replace(path)


def cached_copy(uri: str) -> tuple[Path, str, float] | None:
    """The last copy of ``uri`` fetched here (path, digest, when), if it is still cached."""
    try:
        record = json.loads(_last_file(uri).read_text(encoding="utf-8"))
        path = Path(record["path"])
        found = (path, str(record["digest"]), float(record["fetched"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if path.exists() else None


def _cached(key: str, name: str) -> tuple[Path, Path]:
    folder = cache_dir() / "models" / hashlib.sha256(key.encode()).hexdigest()[:32]
    return folder, folder / name


def _publish(scratch: Path, folder: Path) -> None:
    (scratch / CREATED_MARK).write_text("")
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        scratch.rename(folder)


def _s3_client() -> Any:
    import boto3
    from botocore.config import Config

    # INFERD_S3_TIMEOUT bounds each connect and read (seconds): a stalled source fails the
    # version with a clear error instead of hanging the deploy.
    timeout = float(os.environ.get("INFERD_S3_TIMEOUT", "60"))
    config = Config(
        connect_timeout=min(10.0, timeout),
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.client("s3", config=config)


def _fetch_s3(uri: str, say: Callable[[str], None]) -> tuple[Path, str]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise LoadError(f"{uri}: no bucket in the URI")
    client = _s3_client()
    try:
        objects: list[tuple[str, str, int]] = []
        if key and not key.endswith("/"):
            try:
                head = client.head_object(Bucket=bucket, Key=key)
                objects.append((key, head["ETag"], head["ContentLength"]))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
        prefix = key if not objects else None
        if prefix is not None:
            prefix = prefix.rstrip("/") + "/" if prefix else ""
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        objects.append((item["Key"], item["ETag"], item["Size"]))
        if not objects:
            raise LoadError(f"{uri}: no such object or prefix")
        # An ONNX model's weights saved beside it come with it, and count in its identity: a
        # retrained model re-exported this way changes only the data file.
        beside = _external_objects(client, bucket, *objects[0]) if prefix is None else {}
        objects += [(object_key, etag, size) for object_key, (etag, size, _) in beside.items()]
        identity = "|".join(f"{k}:{e}" for k, e, _ in sorted(objects))
        name = key.rstrip("/").rsplit("/", 1)[-1] or bucket
        folder, target = _cached(f"{uri}|{identity}", name)
        digest = hashlib.sha256(identity.encode()).hexdigest()
        if target.exists():
            return target, digest
        scratch = Path(tempfile.mkdtemp(dir=_scratch_root()))
        total = sum(size for _, _, size in objects)
        done = 0
        try:
            # Every destination is checked before anything is written: a key with ``../`` (or a
            # bucket that names one ``/etc/x``) must not write outside the cache folder.
            places = [
                (
                    key_,
                    _inside(scratch, beside[key_][2], "", None)
                    if key_ in beside
                    else _inside(scratch, name, key_, prefix),
                    size,
                )
                for key_, _, size in objects
            ]
            for object_key, destination, size in places:
                destination.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, object_key, str(destination))
                done += size
                say(f"downloading {uri}: {done * 100 // max(1, total)}% of {total} bytes")
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        _publish(scratch, folder)
        return target, digest
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        kind = UnreachableError if status >= 500 else LoadError
        raise kind(f"{uri}: cannot download: {exc}") from exc
    except BotoCoreError as exc:  # no answer: refused, timed out, cut off
        raise UnreachableError(f"{uri}: cannot download: {exc}") from exc


ONNX_SCAN_MAX = 64 << 20  # a larger .onnx file holds its weights itself


def _external_objects(
    client: Any, bucket: str, key: str, etag: str, size: int
) -> dict[str, tuple[str, int, str]]:
    """The objects beside ONNX model ``key`` that it names as external data: key -> (ETag,
    size, path relative to the model's folder). Names missing from the bucket are left for
    onnxruntime to report. The names are remembered with the model's ETag, so a deploy of an
    unchanged model does not download it again to look.
    """
    from botocore.exceptions import ClientError

    if not key.endswith(".onnx") or size > ONNX_SCAN_MAX:
        return {}
    # One record per model object (the names and the ETag they were read from), replaced when
    # the model changes: the records stay as few as the models deployed from S3.
    record = (
        cache_dir()
        / "models"
        / "external"
        / (hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:32] + ".json")
    )
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
        names = sorted(str(name) for name in known["names"]) if known["etag"] == etag else None
    except (OSError, ValueError, TypeError, KeyError):
        names = None
    if names is None:
        body = client.get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"].read()
        names = sorted(onnxdata.external_names(body))
        record.parent.mkdir(parents=True, exist_ok=True)
        scratch = record.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps({"etag": etag, "names": names}), encoding="utf-8")
        scratch.replace(record)
    folder = posixpath.dirname(key)
    found: dict[str, tuple[str, int, str]] = {}
    for name in names:
        object_key = posixpath.join(folder, name) if folder else name
        try:
            head = client.head_object(Bucket=bucket, Key=object_key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                continue
            raise
        found[object_key] = (head["ETag"], head["ContentLength"], name)
    return found


def _inside(scratch: Path, name: str, key: str, prefix: str | None) -> Path:
    """Where object ``key`` goes under ``scratch``; ``LoadError`` when it would land outside."""
    relative = key[len(prefix) :] if prefix is not None else ""
    destination = (scratch / name / relative) if relative else scratch / name
    root = scratch.resolve()
    resolved = destination.resolve()
    if name in ("", ".", "..") or root not in resolved.parents:
        raise LoadError(f"object key {key!r} would be written outside the model folder; refusing to download")
    return destination


def _fetch_http(uri: str, say: Callable[[str], None]) -> tuple[Path, str]:
    import requests

    name = uri.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "model"
    try:
        head = requests.head(uri, timeout=10, allow_redirects=True)
        identity = head.headers.get("ETag") or (
            f"{head.headers.get('Content-Length')}|{head.headers.get('Last-Modified')}"
            if head.headers.get("Last-Modified")
            else None
        )
        if identity is not None:
            folder, target = _cached(f"{uri}|{identity}", name)
            if target.exists():
                return target, hashlib.sha256(identity.encode()).hexdigest()
        scratch = Path(tempfile.mkdtemp(dir=_scratch_root()))
        digest = hashlib.sha256()
        with requests.get(uri, stream=True, timeout=(10, 60)) as response:
            response.raise_for_status()
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with (scratch / name).open("wb") as out:
                for block in response.iter_content(1 << 20):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if total:
                        say(f"downloading {uri}: {done * 100 // total}% of {total} bytes")
        content = digest.hexdigest()
        folder, target = _cached(f"{uri}|{identity or content}", name)
        _publish(scratch, folder)
        return target, content if identity is None else hashlib.sha256(identity.encode()).hexdigest()
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise UnreachableError(f"{uri}: cannot download: {exc}") from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        kind = UnreachableError if status >= 500 else LoadError
        raise kind(f"{uri}: cannot download: {exc}") from exc
    except requests.RequestException as exc:
        raise LoadError(f"{uri}: cannot download: {exc}") from exc


def _fetch_fsspec(uri: str, say: Callable[[str], None]) -> tuple[Path, str]:
    import fsspec

    try:
        filesystem, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise LoadError(f"{uri}: {exc} (gs:// models need the gcsfs package: pip install gcsfs)") from exc
    try:
        info = filesystem.info(path)
        identity = str(info.get("etag") or info.get("md5Hash") or info.get("size"))
        name = path.rstrip("/").rsplit("/", 1)[-1]
        folder, target = _cached(f"{uri}|{identity}", name)
        if not target.exists():
            scratch = Path(tempfile.mkdtemp(dir=_scratch_root()))
            say(f"downloading {uri}")
            filesystem.get(path, str(scratch / name), recursive=info.get("type") == "directory")
            _publish(scratch, folder)
        return target, hashlib.sha256(identity.encode()).hexdigest()
    except (ConnectionError, TimeoutError) as exc:
        raise UnreachableError(f"{uri}: cannot download: {exc}") from exc
    except OSError as exc:
        raise LoadError(f"{uri}: cannot download: {exc}") from exc


def _scratch_root() -> Path:
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root

"""Downloads of remote models into the cache: ``s3://`` (boto3), ``http(s)://`` and ``gs://``
(fsspec). Each returns the local path and a digest of the object's identity; ``storage.fetch``
picks one by the URI's scheme and retries an unreachable origin.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferd import onnxdata
from inferd.errors import LoadError, ModelGoneError, UnreachableError
from inferd.storage import cache_dir, cached_target, publish, record_name, scratch_folder, scratch_root

# The AWS settings, none of them a secret, that decide where and as whom s3:// is read
S3_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION")


def s3_settings() -> dict[str, str]:
    """This process's ``S3_SETTINGS`` that are set: the operator's are those its reads use."""
    return {name: os.environ[name] for name in S3_SETTINGS if os.environ.get(name)}


def _s3_client() -> Any:
    import boto3
    from botocore.config import Config

    # INFERD_S3_TIMEOUT bounds each connect and read (seconds): a stalled source fails the
    # version with a clear error instead of hanging the deploy.
    text = os.environ.get("INFERD_S3_TIMEOUT", "").strip() or "60"
    try:
        timeout = float(text)
    except ValueError:
        timeout = math.nan
    if not 0 < timeout < math.inf:
        raise LoadError(f"INFERD_S3_TIMEOUT must be a number of seconds above 0, not {text!r}")
    config = Config(
        connect_timeout=min(10.0, timeout),
        read_timeout=timeout,
        # No retries inside botocore: ``storage.fetch`` tries an origin three times with back-off.
        # (``max_attempts: 2`` meant three requests here, so nine reads of the timeout in all.)
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    session = boto3.session.Session()
    if session.get_credentials() is None:
        # No AWS credentials here: read the bucket anonymously, as a browser would (Cortex's
        # examples bucket, cortex-examples, is public); a private bucket then says access denied.
        from botocore import UNSIGNED

        config = config.merge(Config(signature_version=UNSIGNED))
    return session.client("s3", config=config)


def fetch_s3(uri: str, say: Callable[[str], None]) -> tuple[Path, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise LoadError(f"{uri}: no bucket in the URI")
    from botocore.exceptions import BotoCoreError

    try:
        client = _s3_client()
    except BotoCoreError as exc:  # AWS_PROFILE names no profile, a config file that does not parse
        raise LoadError(f"{uri}: cannot read the AWS settings: {exc}") from exc
    try:
        return _fetch_s3(client, uri, bucket, key, say)
    finally:
        # The client's pooled sockets are closed now, not by the garbage collector later.
        client.close()


def _fetch_s3(client: Any, uri: str, bucket: str, key: str, say: Callable[[str], None]) -> tuple[Path, str]:
    from botocore.exceptions import BotoCoreError, ClientError

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
            raise ModelGoneError(f"{uri}: no such object or prefix")
        name = key.rstrip("/").rsplit("/", 1)[-1] or bucket
        scratch: Path | None = None
        read: set[str] = set()

        def model_bytes() -> bytes:
            # Read once: written into the download's folder as it is read, not fetched again.
            nonlocal scratch
            scratch = scratch_folder(scratch_root())
            destination = _inside(scratch, name, "", None)
            body = client.get_object(Bucket=bucket, Key=key, IfMatch=objects[0][1])["Body"]
            with body, destination.open("wb") as out:
                shutil.copyfileobj(body, out, 1 << 20)
            read.add(key)
            return destination.read_bytes()

        try:
            # An ONNX model's weights saved beside it come with it, and count in its identity: a
            # retrained model re-exported this way changes only the data file.
            beside = _external_objects(client, bucket, *objects[0], model_bytes) if prefix is None else {}
            objects += [(object_key, etag, size) for object_key, (etag, size, _) in beside.items()]
            identity = "|".join(f"{k}:{e}" for k, e, _ in sorted(objects))
            folder, target = cached_target(f"{uri}|{identity}", name)
            digest = hashlib.sha256(identity.encode()).hexdigest()
            if target.exists():
                if scratch is not None:
                    shutil.rmtree(scratch, ignore_errors=True)
                return target, digest
            total = sum(size for key_, _, size in objects if key_ not in read)
            free = _free_bytes(scratch_root())
            if total > free:
                raise LoadError(
                    f"{uri}: needs {total} bytes, more than the {free} bytes free in {cache_dir()}"
                )
            scratch = scratch or scratch_folder(scratch_root())
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
            done = 0
            for object_key, destination, size in places:
                if object_key not in read:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, object_key, str(destination))
                    done += size
                    say(f"downloading {uri}: {done * 100 // max(1, total)}% of {total} bytes")
        except BaseException:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        publish(scratch, folder)
        return target, digest
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(exc.response.get("Error", {}).get("Code") or status)
        if code == "NoSuchBucket":
            raise ModelGoneError(f"{uri}: the bucket {bucket} does not exist") from exc
        if status == 403:
            from botocore import UNSIGNED

            who = (
                "a reader without AWS credentials: set them, or make the bucket public"
                if client.meta.config.signature_version is UNSIGNED
                else "these AWS credentials: check them and the bucket's policy"
            )
            raise LoadError(f"{uri}: access denied ({code}) to {who}") from exc
        kind = UnreachableError if status >= 500 else ModelGoneError if status in (404, 410) else LoadError
        raise kind(f"{uri}: cannot download: {exc}") from exc
    except BotoCoreError as exc:  # no answer: refused, timed out, cut off
        raise UnreachableError(f"{uri}: cannot download: {exc}") from exc


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


ONNX_SCAN_MAX = 64 << 20  # a larger .onnx file holds its weights itself


def _external_objects(
    client: Any, bucket: str, key: str, etag: str, size: int, model_bytes: Callable[[], bytes]
) -> dict[str, tuple[str, int, str]]:
    """The objects beside ONNX model ``key`` that it names as external data: key -> (ETag,
    size, path relative to the model's folder), reading the model with ``model_bytes`` (which
    keeps what it read as the download). Names missing from the bucket are left for onnxruntime
    to report. The names are remembered with the model's ETag, so a deploy of an
    unchanged model does not download it again to look.
    """
    from botocore.exceptions import ClientError

    if not key.endswith(".onnx") or size > ONNX_SCAN_MAX:
        return {}
    # One record per model object (the names and the ETag they were read from), replaced when
    # the model changes: the records stay as few as the models deployed from S3.
    record = cache_dir() / "models" / "external" / record_name(f"{bucket}/{key}")
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
        names = sorted(str(name) for name in known["names"]) if known["etag"] == etag else None
    except (OSError, ValueError, TypeError, KeyError):
        names = None
    if names is None:
        names = sorted(onnxdata.external_names(model_bytes()))
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


def fetch_http(uri: str, say: Callable[[str], None]) -> tuple[Path, str]:
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
            folder, target = cached_target(f"{uri}|{identity}", name)
            if target.exists():
                return target, hashlib.sha256(identity.encode()).hexdigest()
        scratch = scratch_folder(scratch_root())
        digest = hashlib.sha256()
        try:
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
        except BaseException:  # a part left behind would hold its disk for an hour (``prune``)
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        content = digest.hexdigest()
        folder, target = cached_target(f"{uri}|{identity or content}", name)
        publish(scratch, folder)
        return target, content if identity is None else hashlib.sha256(identity.encode()).hexdigest()
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise UnreachableError(f"{uri}: cannot download: {exc}") from exc
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        kind = UnreachableError if status >= 500 else ModelGoneError if status in (404, 410) else LoadError
        raise kind(f"{uri}: cannot download: {exc}") from exc
    except requests.RequestException as exc:
        raise LoadError(f"{uri}: cannot download: {exc}") from exc


def fetch_fsspec(uri: str, say: Callable[[str], None]) -> tuple[Path, str]:
    import fsspec

    try:
        filesystem, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise LoadError(f"{uri}: {exc} (gs:// models need the gcsfs package: pip install gcsfs)") from exc
    try:
        info = filesystem.info(path)
        identity = str(info.get("etag") or info.get("md5Hash") or info.get("size"))
        name = path.rstrip("/").rsplit("/", 1)[-1]
        folder, target = cached_target(f"{uri}|{identity}", name)
        if not target.exists():
            scratch = scratch_folder(scratch_root())
            say(f"downloading {uri}")
            try:
                filesystem.get(path, str(scratch / name), recursive=info.get("type") == "directory")
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
            publish(scratch, folder)
        return target, hashlib.sha256(identity.encode()).hexdigest()
    except (ConnectionError, TimeoutError) as exc:
        raise UnreachableError(f"{uri}: cannot download: {exc}") from exc
    except OSError as exc:
        raise LoadError(f"{uri}: cannot download: {exc}") from exc

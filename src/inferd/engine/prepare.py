"""Preparing a version before its replicas start: what it runs, fetched and installed once.

A remote model is downloaded (or its cached copy stands in, with a warning), the project's
``requirements.txt`` installed into its cached folder, and the result is a ``Version`` whose
``ReplicaSpec`` every replica of it starts from, with the files those replicas read (kept by
garbage collection). A failure becomes the version's error instead; an unreachable origin
leaves what to prepare again, and when, for the engine to retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from inferd.config.rules import model_form_problem
from inferd.config.schema import ApiConfig, is_remote
from inferd.engine.models import fetch_model, retry_delay
from inferd.engine.output import Events
from inferd.engine.packages import ensure_packages, packages_dir
from inferd.engine.state import Version, version_id
from inferd.errors import InferdError, LoadError, UnreachableError
from inferd.replica.messages import ReplicaSpec
from inferd.storage import local_model_path
from inferd.storage.layout import model_files


async def prepare(
    config: ApiConfig,
    root: Path,
    digest: str,
    refresh: str,
    relax: bool = False,
    *,
    home: Path,
    sources: Mapping[str, Path],
    event: Events,
) -> Version:
    """The version of ``config`` in the project snapshot at ``root`` (its tree digest ``digest``).

    ``refresh`` and the model's digest go into the version id; ``relax``: ``--relax-pins``.
    ``home`` holds the installed packages; ``sources`` maps a deployment to the user's folder
    it was deployed from (tracebacks name the user's files).
    """
    uri = config.api.model_uri
    model_path: Path | None = None
    extra = refresh
    error: InferdError | None = None
    extra_paths: tuple[Path, ...] = ()
    warning = None
    warnings: list[str] = []  # requirements.txt's
    try:
        if uri is not None and is_remote(uri):
            event(config.key, f"fetching {uri}")
            model_path, model_digest, warning = await fetch_model(uri)
            # a prefix for onnx:, an object for tensorflow:: said as for a project's file, not
            # as what the runtime makes of the cache's copy
            problem = await asyncio.to_thread(model_form_problem, config.api, uri, model_path)
            if problem is not None:
                raise LoadError(problem)
            if warning is not None:
                event(config.key, f"warning: {warning}")
            extra += model_digest
        elif uri is not None:
            model_path = local_model_path(uri, root)
        requirements = root / "requirements.txt"
        if requirements.is_file() and config.api.installs_requirements:
            if not (packages_dir(home, requirements, relax) / ".complete").exists():
                event(config.key, "installing requirements.txt")
            extra += "relax-pins" if relax else ""

            def warn(text: str, api: str = config.key) -> None:
                event(api, f"warning: {text}", logging.WARNING)
                warnings.append(text)  # in the status too: `inferd deploy` and `get` say it

            extra_paths = (await asyncio.to_thread(ensure_packages, home, requirements, relax, warn),)
    except InferdError as exc:
        error = exc
    warning = "; ".join([*([warning] if warning else []), *warnings]) or None
    version = Version(id=version_id(config, digest, extra), config=config, warning=warning)
    if error is not None:
        version.error = error.message.partition("\n")[0]
        version.detail = error.message
        event(config.key, f"error: {error.message}")
        if isinstance(error, UnreachableError):  # try again later: the origin may come back
            version.retry = (root, digest, refresh, relax)  # the same pins next time
            version.retry_at = time.monotonic() + retry_delay(0)
    else:
        version.spec = ReplicaSpec(
            api=config.api,
            project_root=root,
            model_path=model_path,
            replica_id="",
            version=version.id,
            extra_paths=extra_paths,
            shown_root=sources.get(config.deployment),
        )
        version.uses = (root, *extra_paths, *(await asyncio.to_thread(model_files, model_path)))
    return version

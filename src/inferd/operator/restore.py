"""Bringing the recorded deployments back when the operator starts, side by side.

Each deployment comes back from its snapshot (``State``), so one whose model origin hangs holds
up none of the others. A deployment whose newest snapshot never went live (its update failed
and the previous version kept serving) first gets the snapshot that served, so that version
answers again, and then the newest one is tried again, as its deploy did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from inferd.config.load import load_project
from inferd.config.schema import Project
from inferd.engine.local import LocalEngine
from inferd.errors import InferdError
from inferd.gateway.app import Gateway
from inferd.operator.endpoints import Claims
from inferd.operator.logs import adopt_first_round_log
from inferd.operator.promote import promoted
from inferd.operator.state import DeploymentRecord, State

log = logging.getLogger("inferd.operator")

SERVING_WAIT = 120.0  # how long the version that served may take to load again before the newest


async def restore_all(
    state: State,
    engine: LocalEngine,
    gateway: Gateway,
    restored: dict[str, asyncio.Event],
    unrestored: dict[str, str],
    claims: Claims,
) -> None:
    """Bring back every deployment in ``state``, side by side (a hanging origin holds up none).

    ``restored`` gets an event per deployment, set once it is back (or could not be);
    ``unrestored`` the reason of each that could not be (``inferd get`` names them: they were
    only in the operator's log, and `inferd get` said no APIs were deployed). ``claims`` holds
    each one's endpoints until it is back (a deploy meanwhile may not take them).
    """
    for name in state.deployments:
        restored.setdefault(name, asyncio.Event())
    # Said now, before any deploy is read: each config is read off the event loop, and a deploy
    # whose config was read first took a restored deployment's endpoint, the restore too.
    unread = {name: claims.reading() for name in state.deployments}

    async def one(name: str, record: DeploymentRecord) -> None:
        try:
            await _restore(state, engine, gateway, name, record, unrestored, claims, unread[name])
        finally:
            unread[name]()
            restored[name].set()

    try:
        await asyncio.gather(*(one(name, record) for name, record in list(state.deployments.items())))
    finally:  # cut short (`inferd down`), perhaps before a deployment's first step
        for read in unread.values():
            read()


async def _restore(
    state: State,
    engine: LocalEngine,
    gateway: Gateway,
    name: str,
    record: DeploymentRecord,
    unrestored: dict[str, str],
    claims: Claims,
    read: Callable[[], None],
) -> None:
    if record.serving not in ("", record.snapshot) and Path(record.serving).is_dir():
        # the newest snapshot never went live: what served before it serves again first
        await _restore_snapshot(
            state, engine, gateway, name, record, record.serving, unrestored, claims, read
        )
        deadline = time.monotonic() + SERVING_WAIT
        while time.monotonic() < deadline and not _settled(engine, name):
            await asyncio.sleep(0.25)
    await _restore_snapshot(state, engine, gateway, name, record, record.snapshot, unrestored, claims, read)


def _settled(engine: LocalEngine, name: str) -> bool:
    keys = [key for key, api in engine.apis.items() if api.config.deployment == name]
    return all(engine.describe(key)["status"] not in ("updating", "pending") for key in keys)


async def _restore_snapshot(
    state: State,
    engine: LocalEngine,
    gateway: Gateway,
    name: str,
    record: DeploymentRecord,
    folder: str,
    unrestored: dict[str, str],
    claims: Claims,
    read: Callable[[], None],
) -> None:
    try:
        # off the event loop, which serves the deployments already back (as a deploy's)
        snapshot = await asyncio.to_thread(load_project, Path(folder), keys_root=Path(record.source))
        project = without_deleted(snapshot, record)
        if record.promoted:  # routed as promoted from the first: no replica of it starts as a shadow's
            project = project.model_copy(update={"splitters": promoted(project.splitters, record.promoted)})
        gateway.expect([config.key for config in project.apis])
        for config in project.apis:
            adopt_first_round_log(state.home, config.key)
        if record.relax_pins:
            project = project.relaxed()
        with claims.restoring(project):  # before any deploy is checked (``Claims.reading``)
            read()
            await engine.apply(
                project,
                record.refresh,
                environ=state.secrets.get(name, {}),
                source=Path(record.source),
            )
        # deployed then, not restored now; a state.json of an inferd before 2026-11-30 has no
        # times per API, only the deployment's (the upgraded operator showed its start instead)
        times = record.updated_apis or {config.name: record.updated for config in project.apis}
        for api, updated in times.items():
            if (api_state := engine.apis.get(f"{name}/{api}")) is not None:
                api_state.updated(updated)
        if folder == record.snapshot and _note_uses(engine, name, record, project):
            state.save()
        unrestored.pop(name, None)
        log.info("restored deployment '%s'", name)
    except (InferdError, OSError) as exc:
        # A snapshot that cannot be read (made by another user, a file where a folder goes) is
        # this deployment's reason: it stopped the operator, its supervisor restarting it for ever.
        reason = exc.message if isinstance(exc, InferdError) else _os_reason(exc)
        unrestored[name] = reason
        log.error("cannot restore deployment '%s': %s", name, reason)


def _os_reason(exc: OSError) -> str:
    return f"{exc.filename}: {exc.strerror or exc}" if exc.filename is not None else str(exc)


def _note_uses(engine: LocalEngine, name: str, record: DeploymentRecord, project: Project) -> bool:
    """Record what each restored API's version uses: a model fetched again at the start (it
    changed meanwhile) is in a new cache folder, which ``inferd prune`` with no operator running
    removed while it was the only copy to serve when the origin is down. True when changed."""
    changed = False
    for config in project.apis:
        api_state = engine.apis.get(f"{name}/{config.name}")
        uses = [str(path) for path in api_state.version.uses] if api_state is not None else []
        if uses and uses != record.uses.get(config.name):
            if record.uses.get(config.name):
                record.previous[config.name] = record.uses[config.name]
            record.uses[config.name] = uses
            changed = True
    return changed


def without_deleted(project: Project, record: DeploymentRecord) -> Project:
    """``project`` without the APIs deleted one by one since it was deployed."""
    apis = tuple(api for api in project.apis if api.name not in record.deleted_apis)
    return project.model_copy(update={"apis": apis})

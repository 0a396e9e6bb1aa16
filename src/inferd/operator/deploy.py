"""``inferd deploy``: a project's APIs created or updated on the operator, and its deployment
recorded in the state.

The project is read off the event loop (which answers the gateway's requests), its endpoints
are claimed at once (``endpoints.py``), and a deploy of the same deployment in progress is
waited for, or refused without ``--force``. The snapshot is recorded as an update not yet live
before anything changes, so a state that cannot be written fails the deploy with the previous
version serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferd.config.load import load_project
from inferd.config.schema import Project
from inferd.errors import ConflictError
from inferd.gateway.traffic import routing
from inferd.operator import heap
from inferd.operator.deploy_inputs import check_other_folder, key_variables
from inferd.operator.promote import ended_promotions, promoted
from inferd.operator.snapshots import key_files, load_snapshot, project_fingerprint, snapshot_project
from inferd.operator.state import StateError, deployed_record, pending_record

if TYPE_CHECKING:
    from inferd.operator.server import Operator

log = logging.getLogger("inferd.operator")


async def deploy(
    operator: Operator,
    source: str,
    force: bool,
    refresh: bool,
    environ: dict[str, str] | None = None,
    replace: bool = False,
    relax_pins: bool = False,
) -> dict[str, Any]:
    """Deploy the project at ``source`` (``inferd deploy``): what the CLI prints (``message``),
    and each API's result (``apis``: created, updated or unchanged) and version."""
    # Parsed off the event loop, which answers the gateway's requests: a 4,900-line config
    # held every API's requests 0.6 s at each deploy (tests/unit/operator/test_config_off_the_loop.py).
    project = await asyncio.to_thread(load_project, Path(source))
    if operator.claims.restores_unread():  # their endpoints are theirs: checked once they are held
        log.info(
            "deployment '%s': waiting for the deployments being restored to be read",
            project.deployment.name,
        )
        await operator.claims.restores_read()
    if operator.stop_event.is_set():  # it would be "live", then stopped with the rest (asked after
        # the parse: an inferd down while it ran)
        raise ConflictError("the operator is stopping (`inferd down`); deploy again once it has stopped")
    # Its endpoints are taken from now on, not once its models are in (operator/endpoints.py).
    with operator.claims.held(project, operator.engine.apis.values(), operator.gateway.splitters):
        if not replace:
            check_other_folder(project, operator.state, operator.engine.apis.values())
        secrets = key_variables(project, operator.state, environ or {})
        return await _deploy(operator, project, force, refresh, secrets, relax_pins)


async def _deploy(
    operator: Operator,
    project: Project,
    force: bool,
    refresh: bool,
    secrets: dict[str, str],
    relax_pins: bool,
) -> dict[str, Any]:
    name = project.deployment.name
    await operator.restored_first(name)
    # (a walk of the project: off the event loop the gateway's requests are answered on)
    fingerprint = await asyncio.to_thread(project_fingerprint, project.root)
    wanted = (str(project.root), relax_pins, fingerprint)
    busy = operator.locks.locked(name)
    if busy and not force and (refresh or operator.locks.holding(name) != wanted):
        raise ConflictError(f"deployment '{name}' is currently updating; use --force to deploy over it")
    if busy:  # the same project deployed twice at once: the second waits for the first
        log.info("deployment '%s': waiting for the deploy in progress to finish", name)
    async with operator.locks.held(name, wanted):
        # Key files stay where the user keeps them: never copied into the snapshot.
        snapshot = await asyncio.to_thread(snapshot_project, project.root, operator.home, key_files(project))
        deployed = await asyncio.to_thread(load_snapshot, snapshot, project.root)
        if relax_pins:
            deployed = deployed.relaxed()
        record = operator.state.deployments.get(name)
        existed = record is not None
        operator.note_serving()  # what serves now, before this deploy replaces it
        undone = dict(record.promoted) if record is not None else {}  # the file's weights again
        token = f"{time.time_ns()}" if refresh else (record.refresh if record else "")
        routed = operator.gateway.splitters.configs_of(name)
        serving = {
            state.config.name
            for state in operator.engine.apis.values()
            if state.config.deployment == name and not state.deleting
        }
        # The new snapshot is recorded (as an update not yet live) before anything changes:
        # a state that cannot be written (a full disk) fails the deploy here, the previous
        # version serving, instead of after the new one replaced it (a restart then brought
        # the previous one back).
        operator.state.save_with(name, pending_record(record, project.root, snapshot, token))
        keys = [config.key for config in deployed.apis]
        operator.gateway.expect(keys)
        try:
            results = await operator.engine.apply(deployed, token, environ=secrets, source=project.root)
        except BaseException:
            with contextlib.suppress(StateError):
                operator.state.save()  # the record as it was
            raise
        finally:  # what failed to be created is no longer awaited (another deploy's still is)
            operator.gateway.expected.difference_update(k for k in keys if k not in operator.gateway.apis)
        for config in deployed.apis:  # a changed key file is not a new version: read it again
            if config.api.auth is not None and results.get(config.name) == "unchanged":
                operator.gateway.add_api(config, secrets)
        used = {
            api: ([str(path) for path in api_state.version.uses], api_state.last_update)
            for api in results
            if (api_state := operator.engine.apis.get(f"{name}/{api}")) is not None
        }
        operator.state.deployments[name] = deployed_record(record, project.root, snapshot, token, used)
        operator.state.deployments[name].relax_pins = relax_pins
        operator.state.secrets[name] = secrets
        operator.unrestored.pop(name, None)
        try:
            operator.state.save()
        except StateError as exc:  # the update is live: the pending record saved above is kept
            log.warning("%s (a restart brings the previous version back first, then this one)", exc)
        heap.settle()
    operator.collector.tidy()
    # an API changed, or left the project (it is being deleted)
    changed = any(result != "unchanged" for result in results.values()) or bool(serving - set(results))
    # A splitter's weights changed in the file (the end of a promotion is said on its own).
    now = (
        routing(promoted(deployed.splitters, undone))
        if undone
        else operator.gateway.splitters.configs_of(name)
    )
    changed = changed or routed != now
    if not existed:  # a refresh of a project never deployed starts it (it said "refreshed")
        message = "deployment started"
    elif refresh:
        message = "deployment refreshed"
    elif changed:
        message = "deployment updated"
    else:
        message = "deployment is up-to-date"
    message += ended_promotions(project, undone)
    apis = operator.engine.apis
    versions = {api: apis[f"{name}/{api}"].version.id for api in results if f"{name}/{api}" in apis}
    return {"message": message, "deployment": name, "apis": results, "versions": versions}

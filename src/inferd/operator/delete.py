"""``inferd delete``: an API, or a whole deployment, removed from the operator and its state.

Deleting a deployment's last API deletes the deployment (as Cortex, whose ``delete`` took a
deployment): its record stayed, so its snapshot was never collected and every restart restored
a deployment with no APIs.

A delete waits for a deploy of the same deployment that is in progress (its lock): that deploy
re-creates the APIs and the record it read when it ends, so a delete made under it was undone
while `inferd delete` waited for the APIs to drain until its timeout.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from inferd.errors import NotFoundError, UsageError, deployed_hint
from inferd.operator.promote import check_not_a_shadow, check_not_split
from inferd.operator.state import StateError

if TYPE_CHECKING:
    from inferd.operator.server import Operator

log = logging.getLogger("inferd.operator")


async def delete(operator: Operator, name: str) -> dict[str, Any]:
    """Delete API or deployment ``name`` once no deploy of its deployment is in progress."""
    deployment = deployment_of(operator, name)
    if deployment is not None:
        await operator.restored_first(deployment)
    if deployment is None:
        return delete_now(operator, name)  # nothing of that name: the error says what there is
    if operator.locks.locked(deployment):
        log.info("deployment '%s': the delete waits for the deploy in progress to finish", deployment)
    async with operator.locks.held(deployment):
        return delete_now(operator, name)


def deployment_of(operator: Operator, name: str) -> str | None:
    """The deployment that deleting ``name`` acts on (None: no API or deployment of that name)."""
    if name in operator.state.deployments or operator.locks.locked(name):
        return name  # a deployment (perhaps being deployed for the first time)
    if "/" in name:
        return name.split("/", 1)[0]
    try:
        return operator.engine.apis[operator.resolve(name, deleting=False)].config.deployment
    except (NotFoundError, UsageError):
        return None


def delete_now(operator: Operator, name: str) -> dict[str, Any]:
    engine, state = operator.engine, operator.state
    if name in state.deployments:
        apis = [api for api, api_state in engine.apis.items() if api_state.config.deployment == name]
        forget(operator, name)  # first: a state that cannot be saved (a full disk) deletes nothing
        engine.delete(*apis)
        operator.collector.tidy()
        return {"message": f"deleting deployment '{name}'", "apis": apis, "draining": True}
    try:
        key = operator.resolve(name, deleting=False)
    except NotFoundError:
        split = operator.gateway.splitters.find(name)
        if split:
            raise UsageError(
                f"'{name}' is a traffic splitter of deployment '{split[0].config.deployment}': remove it "
                "from that project's config and deploy, or delete the deployment"
            ) from None
        live = sorted(key for key, api_state in engine.apis.items() if not api_state.deleting)
        raise NotFoundError(f"no API or deployment named '{name}' ({deployed_hint(name, live)})") from None
    config = engine.apis[key].config
    check_not_split(operator.gateway, config)
    check_not_a_shadow(operator, config)
    deployment = state.deployments.get(config.deployment)
    message = f"deleting api '{key}'"
    # The state first, as for a whole deployment: was "cannot save the state" with the API
    # deleted all the same, and back at the next start.
    if deployment is not None and not left_in(operator, config.deployment, but=key):
        forget(operator, config.deployment)  # its last API: gone as if the deployment were deleted
        message += f", the last of deployment '{config.deployment}', which goes with it"
    elif deployment is not None:
        record = dataclasses.replace(
            deployment,
            deleted_apis=[*deployment.deleted_apis, config.name],
            uses={api: used for api, used in deployment.uses.items() if api != config.name},
            previous={api: used for api, used in deployment.previous.items() if api != config.name},
        )
        state.save_with(config.deployment, record)
        state.deployments[config.deployment] = record
    engine.delete(key)
    operator.collector.tidy()
    return {"message": message, "apis": [key], "draining": True}  # gone, or stopping, now


def left_in(operator: Operator, deployment: str, but: str) -> bool:
    """Whether ``deployment`` has an API (not being deleted) but ``but``, or a traffic splitter."""
    apis = [api for key, api in operator.engine.apis.items() if key != but]
    splitters = operator.gateway.splitters.by_key.values()
    return any(api.config.deployment == deployment and not api.deleting for api in apis) or any(
        splitter.config.deployment == deployment for splitter in splitters
    )


def forget(operator: Operator, deployment: str) -> None:
    """Remove ``deployment`` from the state: nothing of it is restored at the next start, and the
    snapshots, models and environments only it kept are collected. Its logs and payload logs
    stay until ``inferd prune`` (``forget_apis``)."""
    record = operator.state.deployments.pop(deployment)
    try:
        operator.state.save()
    except StateError:
        operator.state.deployments[deployment] = record  # nothing deleted: the state says so
        raise
    # Nothing is kept per deployment name once it is deleted: an operator up for weeks sees many.
    operator.state.secrets.pop(deployment, None)
    operator.engine.set_splitters(deployment, ())
    operator.engine.sources.pop(deployment, None)
    operator.unrestored.pop(deployment, None)

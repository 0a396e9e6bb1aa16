"""``inferd promote SPLITTER API``: the API gets weight 100, recorded in the deployment's state;
and an API a splitter sends requests to, or an API or a splitter copies requests to, is not
deleted alone.

A promotion stays through operator restarts (the record's ``promoted``) until the project is
deployed again, when its file's weights are the truth once more.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from inferd.config.schema import ApiConfig, Project, SplitterApi, SplitterConfig
from inferd.errors import ConflictError, NotFoundError, in_several_deployments

if TYPE_CHECKING:
    from inferd.gateway.app import Gateway
    from inferd.operator.server import Operator

log = logging.getLogger("inferd.operator")


def promoted(configs: tuple[SplitterConfig, ...], choices: dict[str, str]) -> tuple[SplitterConfig, ...]:
    """``configs`` with each splitter named in ``choices`` sending everything to its chosen API."""
    result = []
    for config in configs:
        chosen = choices.get(config.name)
        if chosen is not None and chosen in config.weights:
            apis = tuple(SplitterApi(name=n, weight=100 if n == chosen else 0) for n in config.weights)
            splitter = config.splitter.model_copy(update={"apis": apis})
            config = config.model_copy(update={"splitter": splitter})
        result.append(config)
    return tuple(result)


async def promote(operator: Operator, name: str, api: str, judged: str | None = None) -> dict[str, Any]:
    """Give ``api`` all of splitter ``name``'s requests once no deploy of its deployment is in
    progress: that deploy sets the file's weights when it ends, and undid a promotion made under it.
    ``judged``: the version of ``api`` that ``--min-agreement``'s replay judged; refused if the
    deploy waited for brought another."""
    found = operator.gateway.splitters.find(name)
    deployments = {splitter.config.deployment for splitter in found}
    if len(deployments) == 1:
        (deployment,) = deployments
        await operator.restored_first(deployment)
        if operator.locks.locked(deployment):
            log.info("deployment '%s': the promote waits for the deploy in progress to finish", deployment)
        async with operator.locks.held(deployment):
            return promote_now(operator, name, api, judged)
    return promote_now(operator, name, api, judged)  # none, or several: the error says which


def promote_now(operator: Operator, name: str, api: str, judged: str | None = None) -> dict[str, Any]:
    splitters = operator.gateway.splitters
    found = splitters.find(name)
    if not found:
        known = ", ".join(sorted({s.name for s in splitters.by_key.values()})) or "none"
        raise NotFoundError(f"no traffic splitter named '{name}' (splitters: {known})")
    if len(found) > 1:
        raise in_several_deployments(
            "splitter", name, sorted(f"{s.config.deployment}/{s.name}" for s in found)
        )
    splitter = found[0]
    name = splitter.name
    if api not in splitter.weights:
        raise NotFoundError(f"splitter '{name}' has no api '{api}' (it has: {', '.join(splitter.weights)})")
    deployment = splitter.config.deployment
    state = operator.engine.apis.get(f"{deployment}/{api}")
    if judged is not None and state is not None and state.version.id != judged:
        raise ConflictError(
            f"not promoting '{api}': the last replay against it judged its version {judged}, and it "
            f"runs {state.version.id} now (deployed again while the promote waited for that deploy); "
            "replay it again"
        )
    queue = operator.gateway.apis.get(f"{deployment}/{api}")
    if queue is not None and queue.error is not None and not queue.ready:
        # Every request of the splitter would get its 503 at once.
        raise ConflictError(
            f"not promoting '{api}': it cannot serve ({queue.error}); every request of splitter "
            f"'{name}' would be refused (see `inferd logs {deployment}/{api}`, then deploy it again)"
        )
    configs = tuple(s.config for s in splitters.by_key.values() if s.config.deployment == deployment)
    operator.engine.set_splitters(deployment, promoted(configs, {name: api}))
    record = operator.state.deployments.get(deployment)
    if record is not None:
        record.promoted[name] = api
        operator.state.save()
    operator.engine._event(
        f"{deployment}/{api}", f"promoted: splitter '{name}' sends it 100% of its requests"
    )
    return {
        "message": f"splitter '{name}' now sends 100% of its requests to api '{api}'",
        "splitter": name,
        "api": api,
    }


def check_not_split(gateway: Gateway, config: ApiConfig) -> None:
    """Refuse to delete an API that a splitter lists: its share of the requests would find no API."""
    used = sorted(
        s.name
        for s in gateway.splitters.by_key.values()
        if s.config.deployment == config.deployment and config.name in s.weights
    )
    if used:
        raise ConflictError(
            f"api '{config.key}' is one of the APIs of traffic splitter '{', '.join(used)}': deploy the "
            f"project without it there first, or delete deployment '{config.deployment}'"
        )


def check_not_a_shadow(operator: Operator, config: ApiConfig) -> None:
    """Refuse to delete an API that another API or a splitter copies requests to: every copy
    would be dropped from then on, while `inferd get` went on naming it as the shadow."""
    copiers = [
        f"api '{state.config.name}'"
        for state in operator.engine.apis.values()
        if state.config.deployment == config.deployment
        and not state.deleting
        and state.config.api.shadow is not None
        and state.config.api.shadow.api == config.name
    ]
    copiers += [
        f"traffic splitter '{splitter.name}'"
        for splitter in operator.gateway.splitters.by_key.values()
        if splitter.config.deployment == config.deployment
        and splitter.config.splitter.shadow is not None
        and splitter.config.splitter.shadow.api == config.name
    ]
    if copiers:
        raise ConflictError(
            f"api '{config.key}' is the shadow of {' and '.join(copiers)}: deploy the project without "
            f"that shadow first, or delete deployment '{config.deployment}'"
        )


def ended_promotions(project: Project, undone: dict[str, str]) -> str:
    """What a deploy tells of the promotions it ended (the splitters take the file's weights)."""
    ended = [
        f"; splitter '{config.name}' has the weights of {project.config_file.name} again "
        f"(promote had given '{undone[config.name]}' 100%)"
        for config in project.splitters
        if config.name in undone and config.weights.get(undone[config.name]) != 100
    ]
    return "".join(ended)

"""One endpoint, one owner: a deploy may not take a path another deployment's API or traffic
splitter serves (within a deployment, ``config.load`` checks it)."""

from __future__ import annotations

from collections.abc import Iterable

from inferd.config.schema import Project
from inferd.engine.state import ApiState
from inferd.errors import ConfigError
from inferd.gateway.traffic import Splitters


def check_endpoints(project: Project, apis: Iterable[ApiState], splitters: Splitters) -> None:
    """Refuse ``project`` when an API or splitter of it would take an endpoint that an API (of
    ``apis``, the engine's) or a splitter of another deployment serves. API names are unique per
    deployment only (as in Cortex): only endpoints must not clash."""
    mine = project.deployment.name
    served = {
        other.config.endpoint: f"api '{other.config.name}' of deployment '{other.config.deployment}'"
        for other in apis
        if other.config.deployment != mine and not other.deleting
    }
    for splitter in splitters.by_key.values():
        if splitter.config.deployment != mine:
            where = f"traffic splitter '{splitter.name}' of deployment '{splitter.config.deployment}'"
            served[splitter.endpoint] = where
    wanted = [("api", c.name, c.endpoint) for c in project.apis]
    wanted += [("traffic_splitter", s.name, s.endpoint) for s in project.splitters]
    for kind, name, endpoint in wanted:
        if endpoint in served:
            raise ConfigError(f"{kind} '{name}': endpoint {endpoint} is already served by {served[endpoint]}")

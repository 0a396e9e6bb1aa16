"""One endpoint, one owner: a deploy may not take a path another deployment's API or traffic
splitter serves, or one that another deployment's deploy in progress is about to take (within a
deployment, ``config.load`` checks it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator

from inferd.config.schema import Project
from inferd.engine.state import ApiState
from inferd.errors import ConfigError
from inferd.gateway.traffic import Splitters


def check_endpoints(
    project: Project,
    apis: Iterable[ApiState],
    splitters: Splitters,
    deploying: Iterable[tuple[Project, str]] = (),
) -> None:
    """Refuse ``project`` when an API or splitter of it would take an endpoint that an API (of
    ``apis``, the engine's) or a splitter of another deployment serves, or that a project of
    another deployment ``deploying`` now will (with how: "being deployed", "being restored").
    API names are unique per deployment only (as in Cortex): only endpoints must not clash."""
    mine = project.deployment.name
    served: dict[str, str] = {}
    for other, how in deploying:
        if other.deployment.name != mine:
            for kind, name, endpoint in _wanted(other):
                what = "traffic splitter" if kind == "traffic_splitter" else kind
                served[endpoint] = f"{what} '{name}' of deployment '{other.deployment.name}' ({how})"
    for state in apis:
        if state.config.deployment != mine and not state.deleting:
            served[state.config.endpoint] = (
                f"api '{state.config.name}' of deployment '{state.config.deployment}'"
            )
    for splitter in splitters.by_key.values():
        if splitter.config.deployment != mine:
            where = f"traffic splitter '{splitter.name}' of deployment '{splitter.config.deployment}'"
            served[splitter.endpoint] = where
    for kind, name, endpoint in _wanted(project):
        if endpoint in served:
            raise ConfigError(f"{kind} '{name}': endpoint {endpoint} is already served by {served[endpoint]}")


def _wanted(project: Project) -> list[tuple[str, str, str]]:
    wanted = [("api", c.name, c.endpoint) for c in project.apis]
    wanted += [("traffic_splitter", s.name, s.endpoint) for s in project.splitters]
    return wanted


class Claims:
    """The projects being deployed or restored now. A deploy's APIs reach the gateway only once
    their models are downloaded and requirements installed (minutes), a restored deployment's
    too: checked against what serves alone, two deploys at once each took the same endpoint (or a
    deploy during a restart took a restored deployment's), and the one that finished last had it."""

    def __init__(self) -> None:
        self.projects: list[tuple[Project, str]] = []
        self._unread = 0  # deployments being restored whose config is not read yet
        self._read = asyncio.Event()
        self._read.set()

    def reading(self) -> Callable[[], None]:
        """A deployment being restored, its config not read yet (off the event loop): a deploy
        checked meanwhile waits for it (``restores_read``). Returns what to call once its
        endpoints are held (``restoring``), or it could not be read."""
        self._unread += 1
        self._read.clear()
        done = False

        def read() -> None:
            nonlocal done
            if not done:
                done = True
                self._unread -= 1
                if not self._unread:
                    self._read.set()

        return read

    def restores_unread(self) -> bool:
        return bool(self._unread)

    async def restores_read(self) -> None:
        """Once every deployment being restored holds its endpoints (or could not be read)."""
        await self._read.wait()

    @contextlib.contextmanager
    def held(self, project: Project, apis: Iterable[ApiState], splitters: Splitters) -> Iterator[None]:
        """Check ``project``'s endpoints (``ConfigError``) and hold them while the block runs."""
        check_endpoints(project, apis, splitters, self.projects)
        with self._holding((project, "being deployed")):
            yield

    def restoring(self, project: Project) -> contextlib.AbstractContextManager[None]:
        """Hold the endpoints of ``project``, recorded before a restart, while it comes back."""
        return self._holding((project, "being restored"))

    @contextlib.contextmanager
    def _holding(self, claim: tuple[Project, str]) -> Iterator[None]:
        self.projects.append(claim)
        try:
            yield
        finally:
            self.projects.remove(claim)

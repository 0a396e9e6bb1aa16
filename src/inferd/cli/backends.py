"""Which backend a command talks to: the local operator's client, or a Ray cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from inferd.client import Client

if TYPE_CHECKING:
    from inferd.engine.ray.backend import RayBackend
    from inferd.environments import Environment


class Backend(Protocol):
    """What ``get``, ``predict`` (the API's URL), ``delete`` and deploy's progress need."""

    def apis(self) -> list[dict[str, Any]]: ...

    def api(self, name: str) -> dict[str, Any]: ...

    def delete(self, name: str) -> dict[str, Any]: ...


def key_of(api: dict[str, Any]) -> str:
    """``deployment/api``: what names an API of a listing on every backend."""
    return f"{api['deployment']}/{api['name']}"


def ray_backend(env: Environment) -> RayBackend:
    """The Ray environment's backend (imports the Ray engine, and Ray only when it connects)."""
    from inferd.engine.ray.backend import RayBackend

    return RayBackend(env)


def backend_for(env: Environment) -> Client | RayBackend:
    """The local operator's ``Client`` for ``local``, else the Ray backend."""
    return Client() if env.is_local else ray_backend(env)

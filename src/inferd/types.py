"""Interfaces shared across layers (kept tiny so that no layer imports a sibling)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    from inferd.config.schema import ApiConfig, SplitterConfig
    from inferd.replica.handle import ReplicaHandle


class ReplicaSink(Protocol):
    """What an engine tells the gateway: which APIs exist and which replicas serve them.

    Implemented by the gateway; called by an engine on the gateway's event loop.
    """

    def add_api(self, config: ApiConfig, environ: Mapping[str, str] | None = None) -> None:
        """Route ``config.endpoint`` to a new (or updated) API.

        ``environ`` holds the variables ``auth.keys_from_env`` names (a deploy's); ``None``:
        this process's environment.
        """
        ...

    def remove_api(self, name: str) -> None:
        """Stop routing to API ``name``; its waiting requests are answered 404."""
        ...

    def replica_ready(self, api: str, handle: ReplicaHandle) -> None:
        """``handle`` has loaded its model and takes requests from now on."""
        ...

    def replica_gone(self, api: str, handle: ReplicaHandle) -> None:
        """``handle`` stopped (or is draining): send it nothing more."""
        ...

    def api_error(self, api: str, reason: str | None) -> None:
        """The API cannot start replicas (``reason``), or is healthy again (``None``)."""
        ...

    def api_status(self, api: str, status: str) -> None:
        """The API's status as the engine sees it (``live``, ``updating``, ``error``, ...), so
        that the gateway's routes say the same as ``inferd get``."""
        ...

    def set_splitters(self, deployment: str, configs: tuple[SplitterConfig, ...]) -> None:
        """The traffic splitters of ``deployment`` are now ``configs`` (empty: none)."""
        ...

    def in_flight(self, api: str) -> int:
        """Requests of API ``api`` queued or running now (shadow copies included)."""
        ...

    def load(self, api: str) -> int:
        """The autoscaling signal: ``in_flight``, shadow copies counted by the replicas they keep
        busy (they go to a replica in groups)."""
        ...

    def arrivals(self, api: str) -> int:
        """Requests (shadow copies included) API ``api`` took so far, a count that only grows:
        tells an API whose requests came and went between two looks from an idle one."""
        ...

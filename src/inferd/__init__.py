"""inferd: deploy machine-learning models as web APIs (a local-first rebuild of Cortex v0.10)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inferd.sdk import Client

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    # ``from inferd import Client`` (Cortex's Python client) without importing it for the CLI
    # and every replica, which import this package too.
    if name == "Client":
        from inferd.sdk import Client

        return Client
    raise AttributeError(f"module 'inferd' has no attribute {name!r}")

"""``from cortex.client import Client``: the module Cortex v0.10's client package defined its
``Client`` in (``pkg/workloads/cortex/client/cortex/client.py``), which ``cortex/__init__.py``
re-exported. The same client as ``from inferd import Client``."""

from __future__ import annotations

from inferd.sdk import Client

__all__ = ["Client"]

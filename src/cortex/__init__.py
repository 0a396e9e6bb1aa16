"""``from cortex import Client``: the import Cortex v0.10's Python client docs use.

The same client as ``from inferd import Client`` (``inferd.sdk``), so a script written for
Cortex's ``Client(aws_access_key_id, aws_secret_access_key, operator_url).deploy(...)`` runs
unchanged against inferd. ``from cortex.client import Client``, where Cortex's package defined
it, works too.
"""

from __future__ import annotations

from cortex.client import Client

__all__ = ["Client"]

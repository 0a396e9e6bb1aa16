"""inferd: deploy machine-learning models as web APIs (a local-first rebuild of Cortex v0.10)."""

from __future__ import annotations

__version__ = "0.1.0"

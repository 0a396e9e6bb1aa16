"""Module names 2019 code imported that now live elsewhere, for projects read from ``cortex.yaml``.

Cortex v0.10's predictor image had scikit-learn 0.21, where ``from sklearn.externals import
joblib`` still worked (the usual way to load a pickled model then); scikit-learn 0.23 removed
it. A finder on ``sys.meta_path`` answers the old name with the module it became, only when
code imports it: nothing is imported ahead of time.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# old module name -> the module it is now
MOVED = {"sklearn.externals.joblib": "joblib"}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``MOVED`` names; loads each as the module it became."""

    def __init__(self) -> None:
        self._specs: dict[str, Any] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # Already executed as itself; the import system gave it the old name's spec: undo that.
        module.__spec__ = self._specs.pop(module.__spec__.name if module.__spec__ else "", module.__spec__)


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _Moved) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Moved())

"""Names 2019 code imported that are gone now, for projects read from ``cortex.yaml``.

Cortex v0.10's predictor image had scikit-learn 0.21, where ``from sklearn.externals import
joblib`` still worked (the usual way to load a pickled model then); scikit-learn 0.23 removed
it. Pillow 10 removed ``Image.ANTIALIAS`` (and ``LINEAR``, ``CUBIC``), which image handlers
passed to ``resize``. A finder on ``sys.meta_path`` answers the old module name with the module
it became, and puts the old constants back on ``PIL.Image`` when it is imported: nothing is
imported ahead of time (pandas gets its 0.25 methods the same way, ``pandas_compat``). And
``torch.load(path)`` unpickles a whole saved model again, as torch
1.3 did (torch 2.6 made it load weights only by default, which refuses ``torch.save(model)``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

# old module name -> the module it is now
MOVED = {"sklearn.externals.joblib": "joblib"}


def _pillow_filters(image: ModuleType) -> None:
    """Pillow 10's removed resampling names, with their old meanings."""
    resampling = getattr(image, "Resampling", None)
    if resampling is None:
        return  # a Pillow older than 9.1 still has them
    for name, value in (("ANTIALIAS", "LANCZOS"), ("LINEAR", "BILINEAR"), ("CUBIC", "BICUBIC")):
        if not hasattr(image, name):
            setattr(image, name, getattr(resampling, value))


def _pandas_methods(pandas: ModuleType) -> None:
    from inferd.handler import pandas_compat

    pandas_compat.install(pandas)


# module -> what to put back on it once it is imported
PATCHES = {"PIL.Image": _pillow_filters, "pandas": _pandas_methods}


class _Patching(importlib.abc.Loader):
    """Runs a module's own loader, then its patch."""

    def __init__(self, loader: Any, patch: Any) -> None:
        self.loader = loader
        self.patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self.loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        self.patch(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, get_filename, is_package...
        return getattr(self.loader, name)


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``MOVED`` names; loads each as the module it became."""

    def __init__(self) -> None:
        self._specs: dict[str, Any] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = PATCHES.get(fullname)
        if patch is not None:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Patching(spec.loader, patch)
            return spec
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


def _torch_load_unpickles() -> None:
    """``torch.load`` without ``weights_only``: a full unpickle, as in Cortex's torch 1.3 (the
    project's own model file; torch reads the variable at each call)."""
    if "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ:
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once); patch what is imported already."""
    _torch_load_unpickles()
    if not any(isinstance(finder, _Moved) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Moved())
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])

"""pandas 0.25's methods that pandas 2.0 removed, put back for projects read from ``cortex.yaml``.

Cortex v0.10's predictor image had pandas 0.25, and 2019 predictors built their one-row frame
with ``DataFrame.append`` (``pd.DataFrame(columns=...).append(sample, ignore_index=True)``) or
walked columns with ``iteritems``. ``legacy_imports`` calls ``install`` when pandas is imported
by such a project; names pandas still has are never replaced.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def install(pandas: ModuleType) -> None:
    """Add ``DataFrame.append``, ``Series.append``, ``iteritems`` and ``pandas.np`` where missing."""
    frame, series = pandas.DataFrame, pandas.Series

    def frame_append(
        self: Any, other: Any, ignore_index: bool = False, verify_integrity: bool = False, sort: bool = False
    ) -> Any:
        """``DataFrame.append`` as pandas 0.25 had it: rows of ``other`` (a frame, a Series, a
        dict with ``ignore_index=True``, or a list of those) after this frame's, in a new frame."""
        if isinstance(other, dict | series):
            if isinstance(other, dict):
                if not ignore_index:
                    raise TypeError("Can only append a dict if ignore_index=True")
                other = series(other)
            if other.name is None and not ignore_index:
                raise TypeError("Can only append a Series if ignore_index=True or if the Series has a name")
            others = [other.to_frame().T.infer_objects()]
        elif isinstance(other, list):
            if other and not isinstance(other[0], frame):
                other = [frame(other)]
            others = other
        else:
            others = [other]
        if not others:
            return self.copy()
        if len(self.index):
            others = [self, *others]
        # An empty frame (``DataFrame(columns=FEATURES)``) gives only its column order.
        result = pandas.concat(
            others, ignore_index=ignore_index, verify_integrity=verify_integrity, sort=sort
        )
        columns = [*self.columns, *(name for name in result.columns if name not in self.columns)]
        return result.reindex(columns=columns)

    def series_append(
        self: Any, to_append: Any, ignore_index: bool = False, verify_integrity: bool = False
    ) -> Any:
        """``Series.append`` as pandas 0.25 had it."""
        others = list(to_append) if isinstance(to_append, list | tuple) else [to_append]
        return pandas.concat([self, *others], ignore_index=ignore_index, verify_integrity=verify_integrity)

    for cls, name, method in (
        (frame, "append", frame_append),
        (series, "append", series_append),
        (frame, "iteritems", frame.items),
        (series, "iteritems", series.items),
    ):
        if not hasattr(cls, name):
            setattr(cls, name, method)
    if not hasattr(pandas, "np"):
        import numpy

        setattr(pandas, "np", numpy)  # noqa: B010  (a module attribute mypy cannot know)

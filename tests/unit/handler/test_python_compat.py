"""Python 3.6's removed names, as put back for cortex.yaml projects (``python_compat``)."""

from __future__ import annotations

import base64
import time

import pytest

from inferd.handler.python_compat import ArgSpec, _removed, getargspec


def test_getargspec_answers_as_python_310_did() -> None:
    def predict(sample, metadata, *rest, scale=2):  # type: ignore[no-untyped-def]
        return sample

    def old(sample, metadata, threshold=0.5):  # type: ignore[no-untyped-def]
        return sample

    assert getargspec(old) == ArgSpec(["sample", "metadata", "threshold"], None, None, (0.5,))
    with pytest.raises(ValueError, match="keyword-only parameters or annotations"):
        getargspec(predict)


def test_the_old_names_mean_what_they_meant() -> None:
    removed = {f"{module.__name__}.{name}": value for module, name, value in _removed()}
    assert removed["time.clock"] is time.process_time  # CPU time, as on Linux then
    assert removed["base64.decodestring"] is base64.decodebytes
    assert removed["base64.encodestring"] is base64.encodebytes  # README names both
    assert removed["inspect.getargspec"] is getargspec
    assert removed["collections.Mapping"].__module__ == "collections.abc"

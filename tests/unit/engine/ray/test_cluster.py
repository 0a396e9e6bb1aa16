"""Reading Ray Serve's state: only "no controller" means no applications."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from inferd.engine.ray.cluster import ClusterError, RayCluster


def test_a_failed_read_is_an_error_not_an_empty_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():  # Ray's own modules use APIs pydantic deprecated
        warnings.simplefilter("ignore")
        from ray.serve import context

    def unreachable(**kwargs: Any) -> Any:
        raise ConnectionError("GCS at 10.0.0.5:6379 did not answer\nmore detail")

    deploying = RayCluster("ray://10.0.0.5:10001")
    deploying.serve_loaded = True  # a deploy reads Serve's state in its own process
    monkeypatch.setattr(context, "_get_global_client", unreachable)
    with pytest.raises(ClusterError, match=r"cannot read Ray Serve's state: .*did not answer"):
        deploying.details()

    monkeypatch.setattr(context, "_get_global_client", lambda **kwargs: None)
    assert deploying.details() == {"applications": {}}

"""Behaviours of Cortex v0.10 that its code shows and its docs do not, found by a third pass
with projects written here: each test cites the Cortex file that shows the behaviour."""

from __future__ import annotations

from pathlib import Path

from inferd.config.load import load_project
from inferd.replica.tracking import tracked_value
from tests.conftest import make_project

TRACKER_WITHOUT_MODEL_TYPE = """- kind: deployment
  name: shop

- kind: api
  name: price
  predictor:
    path: predictor.py
  tracker:
    key: price
"""


def test_a_tracker_without_model_type_tracks_a_regression(tmp_path: Path) -> None:
    # Cortex's validator let model_type be empty (apis.go: AllowEmpty), which parsed as
    # "unknown"; api_utils.py tracked every model type but classification as a regression,
    # and `cortex get` (get.go, predictionMetricsTable) showed its min | max | avg.
    project = make_project(
        tmp_path / "shop",
        TRACKER_WITHOUT_MODEL_TYPE,
        {"predictor.py": "def predict(sample, metadata):\n    return {'price': 2.5}\n"},
    )
    tracker = load_project(project).api("price").api.tracker
    assert tracker is not None
    assert tracker.model_type == "regression"
    assert tracked_value({"price": 2.5}, tracker) == 2.5

"""The operator's state file: deployments keyed by name, API names kept per deployment."""

from __future__ import annotations

import json
from pathlib import Path

from inferd.operator.state import State

# What the version before per-deployment API names wrote: its format is read unchanged, since
# records were already per deployment and deleted APIs are bare names within their deployment.
PREVIOUS = {
    "deployments": {
        "iris": {
            "source": "/src/iris",
            "snapshot": "/home/projects/abc",
            "refresh": "",
            "updated": 1764000000.0,
            "deleted_apis": ["classifier"],
        },
        "garden": {"source": "/src/garden", "snapshot": "/home/projects/def"},
    }
}


def test_a_state_file_of_the_previous_version_loads(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps(PREVIOUS))
    state = State(tmp_path).load()
    assert sorted(state.deployments) == ["garden", "iris"]
    assert state.deployments["iris"].deleted_apis == ["classifier"]
    assert state.deployments["garden"].deleted_apis == []  # deleting iris's classifier left garden's
    state.save()
    assert State(tmp_path).load().deployments == state.deployments

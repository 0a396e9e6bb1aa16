"""API keys from ``keys_from_env`` come from the shell that runs ``inferd deploy``."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import requests

from tests.conftest import make_project, process_alive, wait_for
from tests.integration.conftest import Inferd

CONFIG = (
    "- kind: deployment\n  name: vault\n- kind: api\n  name: guarded\n  onnx:\n    model: m.onnx\n"
    "  auth:\n    keys_from_env: [VAULT_KEY]\n"
)
ROWS = [[5.2, 3.6, 1.4, 0.3]]


def test_keys_come_from_the_deploying_shell(inferd: Inferd, tmp_path: Path, iris_onnx_model: Path) -> None:
    project = make_project(tmp_path / "p", CONFIG, models={"m.onnx": iris_onnx_model})
    inferd.env.pop("VAULT_KEY", None)
    inferd.run("up")  # the operator's environment has no VAULT_KEY

    unset = inferd.run("deploy", str(project), check=False)
    assert unset.returncode == 2
    assert "VAULT_KEY is not set in the shell running `inferd deploy`" in unset.stderr

    inferd.env["VAULT_KEY"] = "shell-secret-1"
    inferd.run("deploy", str(project))
    url = f"{inferd.url}/vault/guarded"
    with_key = {"Authorization": "Bearer shell-secret-1"}
    assert requests.post(url, json=ROWS, headers=with_key, timeout=10).status_code == 200
    assert requests.post(url, json=ROWS, timeout=10).status_code == 401

    secrets = inferd.home / "secrets.json"
    assert secrets.stat().st_mode & 0o777 == 0o600  # as the token file
    for path in (inferd.home / "logs").rglob("*"):
        if path.is_file():
            assert "shell-secret-1" not in path.read_text(errors="replace")
    assert "shell-secret-1" not in (inferd.home / "state.json").read_text()
    assert "shell-secret-1" not in (inferd.home / "operator.log").read_text()
    assert "shell-secret-1" not in inferd.run("get", "guarded", "-v").stdout
    # The curl line `inferd get` prints sends the key as the deploying shell names it.
    (curl,) = [line for line in inferd.run("get", "guarded").stdout.splitlines() if line.startswith("curl ")]
    assert ' -H "Authorization: Bearer $VAULT_KEY" ' in curl
    variable = curl.split(' -H "Authorization: Bearer $', 1)[1].split('"', 1)[0]
    sent = {"Authorization": "Bearer " + inferd.env[variable]}  # what the shell would expand
    assert requests.post(url, json=ROWS, headers=sent, timeout=10).status_code == 200

    # A restarted operator, and a redeploy from a shell without the variable, keep the key.
    del inferd.env["VAULT_KEY"]
    pid = inferd.operator_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(pid), 30, "the operator gone")
    inferd.run("up")
    inferd.wait_status("guarded", "live")
    assert requests.post(url, json=ROWS, headers=with_key, timeout=10).status_code == 200
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment is up-to-date"
    assert requests.post(url, json=ROWS, headers=with_key, timeout=10).status_code == 200

    # A new value from the shell replaces the old key, with no new version.
    inferd.env["VAULT_KEY"] = "shell-secret-2"
    assert inferd.run("deploy", str(project)).stdout.strip() == "deployment is up-to-date"
    assert requests.post(url, json=ROWS, headers=with_key, timeout=10).status_code == 403
    new_key = {"X-API-Key": "shell-secret-2"}
    assert requests.post(url, json=ROWS, headers=new_key, timeout=10).status_code == 200


def test_predict_and_replay_send_the_key_they_are_given(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        CONFIG + "  payload_log: {sample: 1.0}\n",
        {"sample.json": json.dumps(ROWS)},
        models={"m.onnx": iris_onnx_model},
    )
    inferd.env["VAULT_KEY"] = "shell-secret-1"
    inferd.run("deploy", str(project))
    sample = str(project / "sample.json")

    refused = inferd.run("predict", "guarded", sample, check=False)
    assert refused.returncode == 1 and "answered 401" in refused.stderr
    answered = inferd.run("predict", "guarded", sample, "--key", "shell-secret-1")
    assert json.loads(answered.stdout)[0] == [0]
    inferd.env["INFERD_API_KEY"] = "shell-secret-1"  # or from the environment
    assert json.loads(inferd.run("predict", "guarded", sample).stdout)[0] == [0]

    def recorded() -> bool:
        return bool(inferd.json("payloads", "guarded"))

    wait_for(recorded, 30, "the payload records")
    replayed = json.loads(inferd.run("replay", "guarded", "--against", "guarded", "-o", "json").stdout)
    assert replayed["agreement"] == 1.0 and replayed["errors"] == 0, json.dumps(replayed)

"""Commands run at the same time against one operator: what each says, and what is left."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import INFERD, make_project, wait_for
from tests.integration.conftest import Inferd
from tests.integration.test_operator import HeldModel

NEAR = "- kind: deployment\n  name: race\n- kind: api\n  name: near\n  onnx:\n    model: m.onnx\n"


def test_a_delete_during_a_deploy_of_the_same_deployment_is_not_undone(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    """`inferd deploy` then `inferd delete` of the same deployment: the delete waits for the
    deploy in progress, then removes everything (it was: the deploy brought the deleted
    deployment back, and the delete waited for its APIs to drain until its timeout)."""
    project = make_project(tmp_path / "p", NEAR, {}, {"m.onnx": iris_onnx_model})
    inferd.run("deploy", str(project))
    origin = HeldModel(iris_onnx_model)
    try:
        # The update adds an API whose model download waits: the deploy holds the deployment.
        far = f"- kind: api\n  name: far\n  onnx:\n    model: {origin.url}\n"
        (project / "cortex.yaml").write_text(NEAR + far)

        def start(*args: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [str(INFERD), *args],
                env=inferd.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        deploy = start("deploy", str(project))
        assert origin.asked.wait(60)
        delete = start("delete", "race", "--timeout", "60")
        waiting = "deployment 'race': the delete waits for the deploy in progress to finish"
        wait_for(
            lambda: delete.poll() is not None or waiting in (inferd.home / "operator.log").read_text(),
            60,
            "the delete to reach the operator",
        )
        origin.release()
        deployed = deploy.communicate(timeout=120)
        deleted = delete.communicate(timeout=120)
    finally:
        origin.close()
    assert delete.returncode == 0, deleted
    assert deleted[0].strip() == "deleting deployment 'race'"
    # The deploy ends with one sentence saying its APIs went, not with a success.
    assert deploy.returncode == 1, deployed
    assert "api 'far' was removed before it became live" in deployed[1]
    wait_for(lambda: inferd.json("get") == [], 60, "every API of the deleted deployment gone")
    assert "race" not in json.loads((inferd.home / "state.json").read_text())["deployments"]

"""``inferd deploy`` tells the truth: exit 0 once the new version is live, 1 when it failed."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from inferd.engine.capacity import machine_cpus
from tests.conftest import INFERD, Server, example, from_a_terminal, make_project, process_alive, wait_for
from tests.integration.conftest import Inferd
from tests.integration.test_operator import HeldModel

CONFIG = (
    "- kind: deployment\n  name: truth\n"
    "- kind: api\n  name: labels\n  onnx:\n    model: m.onnx\n    request_handler: h.py\n"
)
GOOD = "def post_inference(prediction, signature, metadata):\n    return 'v1'\n"
BROKEN = "import a_module_that_does_not_exist\n"
SAMPLE = [[5.2, 3.6, 1.4, 0.3]]


def test_good_deploy_exits_0_once_live(inferd: Inferd, tmp_path: Path, iris_onnx_model: Path) -> None:
    project = make_project(tmp_path / "p", CONFIG, {"h.py": GOOD}, {"m.onnx": iris_onnx_model})
    result = inferd.run("deploy", str(project))
    assert result.returncode == 0
    assert "labels: live (1/1 replicas up to date)" in result.stderr
    assert inferd.post("/truth/labels", SAMPLE).json() == "v1"  # no waiting after the exit


def test_first_deploy_of_a_broken_handler_exits_1(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(tmp_path / "p", CONFIG, {"h.py": BROKEN}, {"m.onnx": iris_onnx_model})
    inferd.run("up")
    # the failure is said as soon as it is known: a deploy that waited for its 600 s timeout
    # would not have exited within the run's (and would say "not live after 600s")
    result = inferd.run("deploy", str(project), check=False, timeout=120)
    assert result.returncode == 1
    assert result.stdout.strip() == "deployment started"
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: api 'labels' failed (error): ")
    assert "a_module_that_does_not_exist" in last
    assert "previous version" not in last
    detail = inferd.api("labels")["error_detail"]
    logs = inferd.run("logs", "labels").stdout
    for text in (detail, logs):  # tracebacks name the user's file, not inferd's snapshot of it
        assert f'File "{project / "h.py"}", line 1' in text
        assert str(inferd.home / "projects") not in text


def test_update_to_a_broken_handler_exits_1_while_the_old_version_serves(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(tmp_path / "p", CONFIG, {"h.py": GOOD}, {"m.onnx": iris_onnx_model})
    inferd.run("deploy", str(project))
    (project / "h.py").write_text(BROKEN)
    # the failure is said as soon as it is known: a deploy that waited for its 600 s timeout
    # would not have exited within the run's (and would say "not live after 600s")
    result = inferd.run("deploy", str(project), check=False, timeout=120)
    assert result.returncode == 1
    assert result.stdout.strip() == "deployment updated"
    last = result.stderr.strip().splitlines()[-1]
    assert "a_module_that_does_not_exist" in last
    assert last.endswith("; the previous version keeps serving")
    assert inferd.post("/truth/labels", SAMPLE).json() == "v1"

    (project / "h.py").write_text(GOOD.replace("v1", "v2"))
    assert inferd.run("deploy", str(project)).returncode == 0  # a fix rolls out and exits 0
    assert inferd.post("/truth/labels", SAMPLE).json() == "v2"


def test_a_handler_that_exits_while_loading_fails_the_deploy(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(
        tmp_path / "p", CONFIG, {"h.py": "import os\nos._exit(3)\n"}, {"m.onnx": iris_onnx_model}
    )
    result = inferd.run("deploy", str(project), check=False, timeout=120)
    assert result.returncode == 1
    assert "exited with code 3 while loading" in result.stderr


def test_no_wait_returns_at_once_and_delete_waits_for_the_drain(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(tmp_path / "p", CONFIG, {"h.py": BROKEN}, {"m.onnx": iris_onnx_model})
    result = inferd.run("deploy", str(project), "--no-wait")
    assert result.stdout.strip() == "deployment started"
    assert "labels:" not in result.stderr  # no progress: it did not wait
    deleted = inferd.run("delete", "truth")
    assert deleted.stdout.strip() == "deleting deployment 'truth'"
    assert inferd.json("get") == []
    missing = inferd.run("delete", "truth", check=False)
    assert missing.returncode == 1
    assert missing.stderr == "error: no API or deployment named 'truth' (deployed: none)\n"


def test_a_deleted_apis_request_stuck_past_its_timeout_stops_its_replica(
    inferd: Inferd, tmp_path: Path
) -> None:
    # The timeout was applied only to the APIs the gateway routes to: once deleted, a request
    # spinning in the handler held its replica for ever (at full CPU), the API "stopping" and
    # `inferd delete` waiting out its own timeout.
    spin = (
        "import os\ndef predict(sample, metadata):\n"
        "    while sample.get('spin'):\n        pass\n    return os.getpid()\n"
    )
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: spin\n- kind: api\n  name: spin\n  predictor:\n    path: p.py\n"
        "  timeout: 2\n",
        {"p.py": spin},
    )
    inferd.run("deploy", str(project))
    pid = inferd.post("/spin/spin", {}).json()
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(inferd.post, "/spin/spin", {"spin": True})
        wait_for(lambda: inferd.status("spin")["in_flight"] == 1, 30, "the request at the replica")
        deleted = inferd.run("delete", "spin", "--timeout", "60", check=False)
        assert deleted.returncode == 0, deleted.stderr
        assert stuck.result().status_code == 504
    assert not process_alive(pid)


def test_a_hidden_file_the_handler_reads_is_named_as_not_deployed(inferd: Inferd, tmp_path: Path) -> None:
    # `inferd serve` read it from the folder; the deploy said only "FileNotFoundError: ...
    # '.config.json'" of a file the user could see there.
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: dots\n- kind: api\n  name: dots\n  predictor:\n    path: p.py\n",
        {"p.py": "CONFIG = open('.config.json').read()\ndef predict(sample, metadata):\n    return CONFIG\n"},
    )
    (project / ".config.json").write_text("{}")
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 1
    assert (
        f"No such file or directory: '.config.json' (.config.json is in {project}, but hidden files and "
        "folders are not deployed, as Cortex's project zip left them out: give it a name without the "
        "leading dot)"
    ) in result.stderr


def test_a_linked_folder_the_handler_imports_is_named_as_not_deployed(inferd: Inferd, tmp_path: Path) -> None:
    # `inferd test` and `inferd serve` imported it from the folder; the deploy said only
    # "ModuleNotFoundError: No module named 'shared'" of a folder the user could see there.
    (tmp_path / "elsewhere" / "shared").mkdir(parents=True)
    (tmp_path / "elsewhere" / "shared" / "words.py").write_text("WORD = 'linked'\n")
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: links\n- kind: api\n  name: links\n  predictor:\n    path: p.py\n",
        {"p.py": "from shared.words import WORD\ndef predict(sample, metadata):\n    return WORD\n"},
    )
    (project / "shared").symlink_to(tmp_path / "elsewhere" / "shared")
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 1
    assert (
        f"No module named 'shared' (shared is a link to a folder in {project}; a deploy copies the "
        "project's files, and the files that links name, but no linked folder: move the folder into the "
        "project)"
    ) in result.stderr


def test_a_model_folder_that_is_a_link_is_named_as_not_deployed(inferd: Inferd, tmp_path: Path) -> None:
    # `inferd validate`, `test` and `serve` took it; the deploy said "predictor.model: weights
    # does not exist" of a folder the user could see there
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: linked\n- kind: api\n  name: linked\n  predictor:\n    path: p.py\n"
        "    model: weights\n",
        {"p.py": "def predict(sample, metadata):\n    return 1\n", "exports/v1/w.txt": "1\n"},
    )
    (project / "weights").symlink_to("exports/v1")
    assert "warning: weights is a link to a folder" in inferd.run("validate", str(project)).stderr
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 2
    assert result.stderr.endswith(
        "predictor.model: weights does not exist in what is deployed: weights is a link to a folder, "
        "and a deploy copies the project's files, and the files that links name, but no linked folder "
        "(inferd serve runs the folder itself): make it a folder\n"
    )


def test_a_model_in_a_folder_a_deploy_leaves_out_is_named_as_such(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # `inferd validate` said valid and `inferd test` answered; the deploy said "onnx.model:
    # venv/m.onnx does not exist" of a file the user could see there
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: skipped\n- kind: api\n  name: skipped\n"
        "  onnx:\n    model: venv/m.onnx\n",
        models={"venv/m.onnx": iris_onnx_model},
    )
    assert (
        "warning: api 'skipped': onnx.model: venv/m.onnx is in venv, which inferd deploy leaves out"
        in inferd.run("validate", str(project)).stderr
    )
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 2
    assert result.stderr.endswith(
        f"onnx.model: venv/m.onnx does not exist in what is deployed: venv is in {project}, but folders "
        "named venv, node_modules or __pycache__ are not deployed: move it out of venv\n"
    )


def test_an_absolute_path_into_the_project_is_asked_for_relative(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # `inferd validate`, `test` and `serve` took it; the deploy said "onnx.model: '/.../p/m.onnx'
    # is outside the project folder" of a file inside it
    project = tmp_path / "p"
    make_project(
        project,
        "- kind: deployment\n  name: absolute\n- kind: api\n  name: absolute\n"
        f"  onnx:\n    model: {project}/m.onnx\n",
        models={"m.onnx": iris_onnx_model},
    )
    assert (
        f"warning: api 'absolute': onnx.model: {project}/m.onnx is an absolute path into the project folder"
        in inferd.run("validate", str(project)).stderr
    )
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 2
    assert result.stderr.endswith(
        f"in what is deployed: {project}/m.onnx is an absolute path into {project}, but a deploy runs a "
        "copy of the project folder: write it relative to the folder (m.onnx)\n"
    )


def test_a_file_the_handler_reads_from_a_folder_a_deploy_leaves_out_is_named_as_such(
    inferd: Inferd, tmp_path: Path
) -> None:
    # the deploy said only "FileNotFoundError: ... 'node_modules/labels.txt'"
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: nodes\n- kind: api\n  name: nodes\n  predictor:\n    path: p.py\n",
        {
            "p.py": "WORDS = open('node_modules/labels.txt').read()\ndef predict(sample, metadata):\n"
            "    return WORDS\n",
            "node_modules/labels.txt": "a\n",
        },
    )
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 1
    assert (
        f"No such file or directory: 'node_modules/labels.txt' (node_modules/labels.txt is in {project}, "
        "but folders named venv, node_modules or __pycache__ are not deployed: move it out of node_modules)"
    ) in result.stderr


def test_a_file_the_handler_reads_beside_the_project_is_named_as_not_deployed(
    inferd: Inferd, tmp_path: Path
) -> None:
    # `inferd test` and `inferd serve` read it from the project's working folder; the deploy
    # said only "FileNotFoundError: ... '../data/labels.json'" of a file the user could see
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.json").write_text('["a"]')
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: beside\n- kind: api\n  name: beside\n  predictor:\n    path: p.py\n",
        {
            "p.py": "WORDS = open('../data/labels.json').read()\n"
            "def predict(sample, metadata):\n    return WORDS\n"
        },
    )
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 1
    assert (
        f"No such file or directory: '../data/labels.json' (../data/labels.json is beside {project}, "
        "not in it, and a deploy runs a copy of the project folder alone: move it into the project)"
    ) in result.stderr


def test_a_module_the_handler_imports_from_beside_the_project_is_named_as_not_deployed(
    inferd: Inferd, tmp_path: Path
) -> None:
    # sys.path.append("..") then an import: `inferd test` found the module beside the project; the
    # deploy said only "No module named 'common'"
    (tmp_path / "common.py").write_text("WORD = 'beside'\n")
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: besidem\n- kind: api\n  name: besidem\n  predictor:\n    path: p.py\n",
        {
            "p.py": "import sys\nsys.path.append('..')\nfrom common import WORD\n"
            "def predict(sample, metadata):\n    return WORD\n"
        },
    )
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 1
    assert (
        f"No module named 'common' (common is in {tmp_path}, beside {project}, not in it, and a deploy "
        "runs a copy of the project folder alone: move it into the project)"
    ) in result.stderr


def test_compute_unavailable_is_refused_at_once_with_the_reason(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # More cores than any machine has (64 fitted on a CI runner with 64: no compute unavailable)
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: big\n- kind: api\n  name: huge\n  onnx:\n    model: m.onnx\n"
        "  compute:\n    cpu: 4096\n",
        models={"m.onnx": iris_onnx_model},
    )
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 1
    reason = f"needs cpu 4096, this machine has {machine_cpus():g}"
    assert f"api 'huge' failed (compute unavailable): {reason}" in result.stderr
    # A request that waited for a replica instead would take the API's 60 s timeout, past this
    # read timeout: refused at once is the only way to this 503.
    response = inferd.post("/big/huge", SAMPLE, timeout=30)
    assert response.status_code == 503
    assert response.json()["error"] == f"api 'huge' is not ready: compute unavailable: {reason}"
    assert f"compute unavailable: {reason}" in inferd.run("get", "huge").stdout
    assert f"compute unavailable: {reason}" in inferd.run("get", "huge", "-v").stdout
    assert inferd.api("huge")["error"] == reason
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(SAMPLE))
    predicted = inferd.run("predict", "huge", str(sample), check=False)
    assert predicted.returncode == 1
    assert predicted.stderr == f"error: api 'huge' is not ready: compute unavailable: {reason} (503)\n"


def test_inferd_cpus_sets_the_cores_the_operators_replicas_may_reserve(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # 3 cores whatever this machine has: a 2.5-core API fits (on a 2-core machine too), and
    # then a 1-core one does not, with the reason naming the setting.
    inferd.env["INFERD_CPUS"] = "3"
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: set\n"
        "- kind: api\n  name: wide\n  onnx:\n    model: m.onnx\n  compute:\n    cpu: 2.5\n"
        "- kind: api\n  name: more\n  onnx:\n    model: m.onnx\n  compute:\n    cpu: 1\n",
        models={"m.onnx": iris_onnx_model},
    )
    result = inferd.run("deploy", str(project), check=False)
    assert result.returncode == 1
    assert inferd.api("wide")["status"] == "live"
    assert inferd.post("/set/wide", SAMPLE).status_code == 200
    reason = "needs cpu 1, 0.5 of the 3 INFERD_CPUS allows is free (other replicas hold the rest)"
    assert f"api 'more' failed (compute unavailable): {reason}" in result.stderr


def test_an_api_waits_for_the_room_a_removed_api_frees(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # A project whose new API replaces one that holds the whole machine: the new one starts once
    # the old one's replica has drained, and the deploy says so (it exited 1 "failed (compute
    # unavailable)" at once, while the operator went on to start it)
    cores = machine_cpus()
    api = "- kind: api\n  name: {}\n  onnx:\n    model: m.onnx\n  compute:\n    cpu: {}\n"
    head = "- kind: deployment\n  name: swap\n"
    project = make_project(
        tmp_path / "p", head + api.format("old", cores), models={"m.onnx": iris_onnx_model}
    )
    inferd.run("deploy", str(project))
    (project / "cortex.yaml").write_text(head + api.format("new", cores))
    result = inferd.run("deploy", str(project), check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "new: live (1/1 replicas up to date)" in result.stderr
    assert "compute unavailable" not in result.stderr
    assert inferd.post("/swap/new", SAMPLE).status_code == 200


def test_another_folder_with_the_same_name_needs_force_to_remove_apis(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    first = make_project(tmp_path / "a", CONFIG, {"h.py": GOOD}, {"m.onnx": iris_onnx_model})
    inferd.run("deploy", str(first))
    other = make_project(
        tmp_path / "b",
        CONFIG.replace("name: labels", "name: other"),
        {"h.py": GOOD.replace("v1", "b")},
        {"m.onnx": iris_onnx_model},
    )
    refused = inferd.run("deploy", str(other), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: deployment 'truth' was deployed from {first}; deploying {other} under the same "
        "name would remove api 'labels' (use --force to replace it, or give this project another "
        "deployment name)"
    )
    assert inferd.post("/truth/labels", SAMPLE).json() == "v1"  # nothing changed
    assert [api["name"] for api in inferd.json("get")] == ["labels"]

    assert inferd.run("deploy", str(other), "--force").stdout.strip() == "deployment updated"
    assert inferd.post("/truth/other", SAMPLE).json() == "b"
    assert inferd.post("/truth/labels", SAMPLE).status_code == 404

    # On a terminal the deploy asks instead, and a yes replaces them (README).
    asked, code = on_a_terminal(inferd, ["deploy", str(first)], b"y\n")
    assert "would remove api 'other'. Replace it? [y/N]: " in asked and code == 0, asked
    assert inferd.post("/truth/labels", SAMPLE).json() == "v1"


def on_a_terminal(inferd: Inferd, args: list[str], answer: bytes) -> tuple[str, int]:
    """Run ``inferd ARGS`` on a pseudo-terminal, sending ``answer`` once it asks a question."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: inferd, with the pty as its stdin, stdout and stderr
        os.execve(str(INFERD), [str(INFERD), *args], inferd.env)
    shown, deadline = b"", time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([terminal], [], [], 1)[0]:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the child closed the terminal: it exited
                break
            if not chunk:
                break
            if b"? [y/N]: " in shown + chunk and b"? [y/N]: " not in shown:
                os.write(terminal, answer)
            shown += chunk
    os.close(terminal)
    return shown.decode(), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_the_examples_deploy_side_by_side(inferd: Inferd) -> None:
    inferd.run("deploy", str(example("iris-onnx")))
    inferd.run("deploy", str(example("iris-predictor")))
    sample = json.loads((example("iris-onnx") / "sample.json").read_text())
    assert inferd.post("/iris/classifier", sample).json() == "iris-setosa"
    assert inferd.post("/iris-py/predictor", sample).json() == "setosa"
    assert sorted(api["name"] for api in inferd.json("get")) == ["classifier", "predictor"]
    # A Python predictor speaks only the Cortex-style route (README, Protocols).
    document = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [5.2, 3.6, 1.4, 0.3]}]}
    for path, body in (
        ("/v2/models/predictor/infer", document),
        ("/v1/models/predictor:predict", {"instances": [[5.2, 3.6, 1.4, 0.3]]}),
    ):
        refused = inferd.post(path, body)
        assert refused.status_code == 400
        assert refused.json()["error"] == (
            "api 'predictor' is a Python predictor: it answers JSON at POST /iris-py/predictor, "
            "not V2 or TF Serving tensors"
        )
    assert inferd.post(
        "/v2/models/classifier/infer", {**document, "inputs": [{**document["inputs"][0], "name": "input"}]}
    ).ok


def test_one_status_everywhere_and_timeouts_counted_apart(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    slow = "import time\ndef pre_inference(sample, signature, metadata):\n    time.sleep(30)\n"
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: one\n"
        "- kind: api\n  name: cold\n  onnx:\n    model: m.onnx\n"
        "  compute:\n    min_replicas: 0\n    init_replicas: 0\n"
        "- kind: api\n  name: slow\n  onnx:\n    model: m.onnx\n    request_handler: h.py\n  timeout: 1\n",
        {"h.py": slow},
        {"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(project))
    cold = inferd.api("cold")
    assert cold["status"] == "live" and cold["available"] == 0  # scaled to zero
    assert requests.get(f"{inferd.url}/one/cold", timeout=10).json()["status"] == "live"
    assert requests.get(f"{inferd.url}/v2/models/cold/ready", timeout=10).status_code == 200
    assert (
        requests.get(f"{inferd.url}/v1/models/cold", timeout=10).json()["model_version_status"][0]["state"]
        == "AVAILABLE"
    )

    assert inferd.post("/one/slow", SAMPLE).status_code == 504
    wait_for(lambda: inferd.status("slow")["timed_out"] == 1, 30, "the stuck replica counted")
    slow_info = inferd.wait_status("slow", "live")
    assert slow_info["failed"] == 0  # a timeout kill is not a crash
    assert "timed out" in inferd.run("get", "slow").stdout
    assert "overran a request's timeout" in inferd.run("logs", "slow").stdout
    assert "stopped unexpectedly" not in inferd.run("logs", "slow").stdout


def test_inferd_cpus_sets_the_cores_inferd_serve_lets_replicas_reserve(
    serve: Callable[..., Server], tmp_path: Path, iris_onnx_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README: INFERD_CPUS in the environment of `inferd up` (or `inferd serve`) sets the total;
    # an API reserving more cores than the machine has serves once the setting allows it.
    cores = machine_cpus()
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: set\n- kind: api\n  name: wide\n  onnx:\n    model: m.onnx\n"
        f"  compute:\n    cpu: {cores + 0.5}\n",
        models={"m.onnx": iris_onnx_model},
    )
    monkeypatch.setenv("INFERD_CPUS", str(cores + 1))
    assert serve(project).post("/set/wide", SAMPLE).status_code == 200


def test_inferd_host_sets_the_address_the_operators_gateway_listens_on(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # README: the gateway listens on INFERD_HOST:INFERD_PORT (default 127.0.0.1:8888)
    inferd.env["INFERD_HOST"] = "127.0.0.2"
    project = make_project(tmp_path / "p", CONFIG, {"h.py": GOOD}, {"m.onnx": iris_onnx_model})
    inferd.run("deploy", str(project))
    url = f"http://127.0.0.2:{inferd.port}"
    assert requests.post(url + "/truth/labels", json=SAMPLE, timeout=30).json() == "v1"
    assert f"url: {url}/truth/labels" in inferd.run("get", "labels").stdout
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(SAMPLE))
    assert inferd.run("predict", "labels", str(sample)).stdout.strip() == '"v1"'  # the CLI finds it


def test_the_capacity_cap_is_shown_when_it_limits_requested(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    cores = machine_cpus()
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: capped\n- kind: api\n  name: wide\n  onnx:\n    model: m.onnx\n"
        f"  compute:\n    cpu: {cores}\n    init_replicas: 2\n    max_replicas: 2\n"
        "  autoscaling:\n    downscale_window: 600\n",
        models={"m.onnx": iris_onnx_model},
    )
    inferd.run("deploy", str(project))  # live: one replica fits, and serves
    info = inferd.api("wide")
    assert info["requested"] == 2 and info["capacity"]["fit"] == 1
    assert info["capacity"]["reason"].startswith(
        f"needs cpu {cores:g}, 0 of this machine's {cores:g} is free"
    )
    row = inferd.run("get").stdout.splitlines()[1].split()
    assert row[:7] == ["wide", "capped", "live", "1", "1", "2", "(1"]
    assert (
        "capacity: 1 of 2 requested replicas fit on this machine (needs cpu"
        in inferd.run("get", "wide").stdout
    )


def test_ctrl_c_while_waiting_stops_the_waiting_not_the_deploy(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    slow = "import time\ntime.sleep(120)  # a handler whose import takes long, so the deploy waits\n"
    project = make_project(tmp_path / "p", CONFIG, {"h.py": slow}, {"m.onnx": iris_onnx_model})
    inferd.run("up")
    deploying = from_a_terminal(["deploy", str(project)], inferd.env)
    assert deploying.stdout is not None
    assert deploying.stdout.readline() == "deployment started\n"
    deploying.send_signal(signal.SIGINT)
    _, stderr = deploying.communicate(timeout=60)
    assert deploying.returncode == 1
    assert stderr.splitlines()[-1] == (
        "error: stopped waiting (Ctrl-C); the deployment goes on in the operator: "
        "follow it with `inferd get -w`"
    )
    assert "Aborted!" not in stderr and "Traceback" not in stderr
    assert inferd.status("labels")["status"] in ("updating", "pending")  # the rollout goes on


def test_ctrl_c_while_the_operator_prepares_says_the_deploy_goes_on(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    # Ctrl-C while the operator downloads the model, before it answers: the CLI said "stopped
    # (Ctrl-C)", as if nothing had been deployed, and the API went live all the same
    origin = HeldModel(iris_onnx_model)
    try:
        yaml = (
            f"- kind: deployment\n  name: held\n- kind: api\n  name: late\n  onnx:\n    model: {origin.url}\n"
        )
        project = make_project(tmp_path / "p", yaml)
        inferd.run("up")
        deploying = from_a_terminal(["deploy", str(project)], inferd.env)
        assert origin.asked.wait(60)  # the operator downloads the model
        deploying.send_signal(signal.SIGINT)
        stdout, stderr = deploying.communicate(timeout=60)
        origin.release()
        assert (deploying.returncode, stdout) == (1, "")
        assert stderr.splitlines()[-1] == (
            "error: stopped waiting (Ctrl-C) while the operator prepares the deployment (models, "
            "packages); it goes on in the operator: follow it with `inferd get -w`"
        )
        wait_for(lambda: "late" in inferd.run("get").stdout, 60, "the download to end")
        wait_for(lambda: inferd.status("late")["status"] == "live", 120, "the deploy to go on")
    finally:
        origin.close()


def test_ctrl_c_while_down_drains_says_the_operator_goes_on_stopping(inferd: Inferd, tmp_path: Path) -> None:
    # it said "stopped (Ctrl-C)", as if the operator had been kept, and the operator stopped
    gated = (
        "import os, time\n"
        "def predict(sample, metadata):\n"
        "    while not os.path.exists(sample['gate']):\n"
        "        time.sleep(0.02)\n"
        "    return 'done'\n"
    )
    yaml = "- kind: deployment\n  name: gated\n- kind: api\n  name: held\n  predictor:\n    path: p.py\n"
    inferd.run("deploy", str(make_project(tmp_path / "p", yaml, {"p.py": gated})))
    gate = tmp_path / "go"
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(inferd.post, "/gated/held", {"gate": str(gate)})
        wait_for(
            lambda: requests.get(f"{inferd.url}/gated/held", timeout=5).json()["replicas"]["busy"] == 1,
            30,
            "the request to be running",
        )
        stopping = from_a_terminal(["down"], inferd.env)
        log = inferd.home / "operator.log"
        wait_for(lambda: "stopping: draining requests" in log.read_text(), 60, "the operator to drain")
        stopping.send_signal(signal.SIGINT)
        stdout, stderr = stopping.communicate(timeout=60)
        gate.touch()
        assert held.result().json() == "done"
    assert (stopping.returncode, stdout) == (1, "")
    assert stderr.splitlines()[-1] == (
        "error: stopped waiting (Ctrl-C); the operator goes on draining, then stops: "
        "`inferd version` says when"
    )
    wait_for(lambda: "operator: not running" in inferd.run("version").stdout, 60, "the operator to stop")


def test_a_replica_that_crashes_once_ready_is_logged_with_its_exit_code_and_backs_off(
    inferd: Inferd, tmp_path: Path
) -> None:
    crashes_soon = (
        "import os, threading\n"
        "def init(model_path, metadata):\n"
        "    threading.Timer(1.0, os._exit, (3,)).start()\n"
        "def predict(sample, metadata):\n"
        "    return 1\n"
    )
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: flaky\n- kind: api\n  name: crashy\n  predictor:\n    path: p.py\n",
        {"p.py": crashes_soon},
    )
    inferd.run("deploy", str(project), check=False)
    wait_for(lambda: inferd.status("crashy")["failed"] >= 4, 90, "four crashes")

    def crashes() -> list[str]:
        lines = inferd.run("logs", "crashy").stdout.splitlines()
        return [line for line in lines if "exited with code 3" in line]

    wait_for(lambda: len(crashes()) >= 4, 30, "four crashes logged with their exit code")
    # each restart waits longer than the last (a replica that runs well for a minute resets it)
    delays = [float(line.rsplit("starting another in ", 1)[1].rstrip("s")) for line in crashes()]
    assert delays[:4] == sorted(delays[:4]) and delays[3] > delays[0], delays
    # From the third crash in a row, while no replica is ready, the API is in error (as Cortex's
    # was when a pod failed), not `updating`, and requests are refused at once with the reason.
    info = wait_for(lambda: (api := inferd.status("crashy"))["status"] == "error" and api, 60, "error")
    assert "replicas keep stopping once started" in info["error"], info
    assert "exited with code 3" in info["error"], info
    url = f"{inferd.url}/flaky/crashy"

    def refused() -> str | None:
        answer = requests.post(url, json={}, timeout=30)
        return answer.json()["error"] if answer.status_code == 503 else None

    assert "replicas keep stopping once started" in wait_for(refused, 60, "a 503 with the reason")


def test_a_deploy_that_hangs_in_init_gives_up_at_its_timeout(inferd: Inferd, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        "- kind: deployment\n  name: stuck\n- kind: api\n  name: hangs\n  predictor:\n    path: p.py\n",
        {
            "p.py": "import time\ndef init(model_path, metadata):\n    time.sleep(3600)\n"
            "def predict(sample, metadata):\n    return 1\n"
        },
    )
    result = inferd.run("deploy", str(project), "--timeout", "3", check=False, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: hangs not live after 3s; the rollout goes on in the operator: follow it with `inferd get -w`"
    )
    assert inferd.api("hangs")["status"] == "updating"  # it is still trying, as said
    bad = inferd.run("deploy", str(project), "--timeout", "soon", check=False)
    assert bad.returncode == 2 and "'soon' is not a valid float" in bad.stderr


def test_the_previous_version_keeps_serving_after_an_operator_restart(
    inferd: Inferd, tmp_path: Path, iris_onnx_model: Path
) -> None:
    project = make_project(tmp_path / "p", CONFIG, {"h.py": GOOD}, {"m.onnx": iris_onnx_model})
    inferd.run("deploy", str(project))
    (project / "h.py").write_text(BROKEN)
    assert inferd.run("deploy", str(project), check=False).returncode == 1  # "...keeps serving"
    pid = inferd.operator_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # its supervisor starts another, which restores the deployment

    def answer() -> object:
        try:
            response = inferd.post("/truth/labels", SAMPLE, timeout=5)
        except requests.RequestException:
            return None
        return response.status_code == 200 and response.json()

    assert wait_for(answer, 120, "the previous version serving again") == "v1"
    failed = inferd.wait_status("labels", "error")  # and the broken one is still said
    assert "a_module_that_does_not_exist" in failed["error"]
    assert inferd.post("/truth/labels", SAMPLE).json() == "v1"

    # A deploy while the restarted operator brings the deployment back waits for it. Was: the
    # restore went on after it and put the broken version back over the one just deployed.
    (project / "h.py").write_text(GOOD.replace("v1", "v3"))
    os.kill(inferd.operator_pid() or 0, signal.SIGKILL)
    inferd.run("deploy", str(project))
    assert inferd.post("/truth/labels", SAMPLE).json() == "v3"
    assert inferd.run("deploy", str(project)).stdout.startswith("deployment is up-to-date")

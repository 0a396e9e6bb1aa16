"""Cortex v0.10's CLI flags on inferd's commands: ``get -d/-a/-s``, ``predict -d``, ``logs -d``
and ``delete -c``, against a real operator with two deployments that both have a ``classifier``;
in a project folder, a bare name is that project's API (Cortex read the deployment from
``./cortex.yaml``); and the CLI installed under Cortex's name, ``cortex``."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import requests

from tests.conftest import example, from_a_terminal
from tests.integration.conftest import Inferd, inferd

__all__ = ["inferd"]


def deployment(tmp_path: Path, name: str) -> Path:
    project = tmp_path / name
    shutil.copytree(example("iris-onnx"), project, ignore=shutil.ignore_patterns("build_model.py"))
    config = project / "cortex.yaml"
    config.write_text(config.read_text().replace("name: iris\n", f"name: {name}\n"))
    return project


def test_cortex_cli_flags(inferd: Inferd, tmp_path: Path) -> None:
    sample = str(example("iris-onnx") / "sample.json")
    for name in ("iris", "flowers"):
        inferd.run("deploy", str(deployment(tmp_path, name)))
    for key in ("iris/classifier", "flowers/classifier"):
        inferd.wait_status(key, "live")

    assert inferd.run("get", "-s").stdout.strip() == "apis: 2 live"
    assert inferd.run("get", "-d", "flowers", "--summary").stdout.strip() == "apis: 1 live"
    # -o json is JSON with -s too (was: the text line), and each line of -w -o json parses alone
    # (was: a stream of indented documents, which parsed as nothing)
    assert json.loads(inferd.run("get", "-s", "-o", "json").stdout) == {"live": 2}
    # an empty name named every API by prefix (was: get '' showed one, delete '' said "the request
    # body needs 'name'"); a name far past 63 characters is not found (was: the operator's OSError)
    for command in ("get", "logs", "predict", "payloads", "delete"):
        empty = inferd.run(command, "", *([sample] if command == "predict" else []), check=False)
        assert (empty.returncode, empty.stderr) == (2, "error: the API name is empty\n"), command
    long = inferd.run("logs", "a" * 300, check=False)
    assert long.returncode == 1 and long.stderr.startswith("error: no API named 'aaa"), long.stderr
    with from_a_terminal(["get", "-w", "-o", "json"], inferd.env) as watch:
        assert watch.stdout is not None
        firsts = [watch.stdout.readline(), watch.stdout.readline()]
        watch.send_signal(signal.SIGINT)
        watch.communicate(timeout=30)
        assert watch.returncode == 0
    for line in firsts:
        assert sorted(api["deployment"] for api in json.loads(line)) == ["flowers", "iris"]
    only = json.loads(inferd.run("get", "--deployment", "flowers", "-o", "json").stdout)
    assert [(api["deployment"], api["name"]) for api in only] == [("flowers", "classifier")]
    every = json.loads(inferd.run("get", "-a", "-o", "json").stdout)
    assert sorted(api["deployment"] for api in every) == ["flowers", "iris"]
    assert "flowers" in inferd.run("get", "classifier", "-d", "flowers").stdout
    # -v's config has Cortex's defaults filled in, init_replicas (= min_replicas) too (was: left out)
    verbose = inferd.run("get", "classifier", "-d", "flowers", "-v").stdout
    assert "  compute:\n    min_replicas: 1\n    max_replicas: 100\n    init_replicas: 1\n" in verbose

    # The bare name is ambiguous; -d names the deployment, as in Cortex.
    ambiguous = inferd.run("predict", "classifier", sample, check=False)
    assert ambiguous.returncode != 0 and "several deployments" in ambiguous.stderr
    assert json.loads(inferd.run("predict", "classifier", sample, "-d", "flowers").stdout) == "iris-setosa"
    assert json.loads(inferd.run("predict", "class", sample, "--deployment", "iris").stdout) == "iris-setosa"
    assert "replica is ready" in inferd.run("logs", "classifier", "-d", "iris").stdout
    clash = inferd.run("predict", "iris/classifier", sample, "-d", "flowers", check=False)
    assert clash.returncode == 2 and "names deployment 'iris', but -d says 'flowers'" in clash.stderr

    # In a project folder the bare name is that project's API, as in Cortex (whose examples
    # all call their API classifier): `cortex predict classifier sample.json` from the folder.
    flowers = tmp_path / "flowers"
    assert json.loads(inferd.run("predict", "classifier", "sample.json", cwd=flowers).stdout) == "iris-setosa"
    assert "flowers/classifier" in inferd.run("get", "classifier", cwd=flowers).stdout
    # ... and a bare get lists that project's deployment, as Cortex's did; -a lists every one.
    here = inferd.run("get", cwd=flowers).stdout
    assert "flowers" in here and "iris" not in here and "inferd get -a shows all 2" in here
    assert inferd.run("get", "-s", cwd=flowers).stdout.strip() == "apis: 1 live"
    every_here = json.loads(inferd.run("get", "-a", "-o", "json", cwd=flowers).stdout)
    assert sorted(api["deployment"] for api in every_here) == ["flowers", "iris"]
    assert "flowers/classifier" in inferd.run("logs", "classifier", cwd=flowers).stdout
    assert "iris/classifier" in inferd.run("logs", "class", cwd=tmp_path / "iris").stdout  # a prefix too

    inferd.run("delete", "flowers", "-c")
    gone = inferd.run("get", "-d", "flowers", check=False)
    assert gone.returncode != 0 and "no deployment named 'flowers'" in gone.stderr
    assert inferd.run("get", "--summary").stdout.strip() == "apis: 1 live"


def test_the_cli_under_cortex_s_name(inferd: Inferd, tmp_path: Path) -> None:
    # pip installs each [project.scripts] entry as a script of that name calling the function;
    # this one is written the same way, so a Cortex example's README session runs as written.
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    target = pyproject["project"]["scripts"]["cortex"]
    assert target == pyproject["project"]["scripts"]["inferd"]
    module, _, function = target.partition(":")
    script = tmp_path / "bin" / "cortex"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
    )
    script.chmod(0o755)
    project = deployment(tmp_path, "iris")

    def cortex(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], cwd=project, env=inferd.env, capture_output=True, text=True, timeout=300
        )

    assert cortex("deploy").stdout.startswith("deployment started")
    assert json.loads(cortex("predict", "classifier", "sample.json").stdout) == "iris-setosa"
    assert "url: " in cortex("get", "classifier").stdout
    assert "Usage: cortex predict" in cortex("predict", "--help").stdout
    # `cortex logs` streamed until Ctrl-C (docs/cluster/cli.md:39): on a terminal, a request made
    # after it printed what was there shows up in the same run
    pid, terminal = pty.fork()
    if pid == 0:  # the child: `cortex logs` on the pseudo-terminal, Ctrl-C its own to take
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(project)
        os.execve(str(script), [str(script), "logs", "classifier"], inferd.env)
    shown = b""

    def shows(text: bytes) -> bool:
        nonlocal shown
        deadline = time.monotonic() + 120
        while text not in shown and time.monotonic() < deadline:
            if select.select([terminal], [], [], 1)[0]:
                try:
                    shown += os.read(terminal, 4096)
                except OSError:  # the child closed the terminal: it exited
                    break
        return text in shown

    try:
        assert shows(b"replica is ready"), shown
        sample = json.loads((project / "sample.json").read_text())
        requests.post(f"{inferd.url}/iris/classifier?debug=true", json=sample, timeout=30)
        assert shows(b"post_inference: 'iris-setosa'"), shown
    finally:
        os.kill(pid, signal.SIGINT)
        shows(b"never printed: read until the child exits")
        os.close(terminal)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert code == 0
    # through a pipe (a script's), it prints the latest lines and exits, as `inferd logs` does
    piped = cortex("logs", "classifier")
    assert piped.returncode == 0 and "post_inference: 'iris-setosa'" in piped.stdout
    assert cortex("logs", "classifier", "--no-follow").returncode == 0  # prints and exits
    assert cortex("delete").returncode == 0
    assert inferd.run("get", "-s").stdout.strip() == "apis: none deployed"

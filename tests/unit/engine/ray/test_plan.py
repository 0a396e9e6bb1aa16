"""Project -> Ray Serve options: pure translation."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.config.load import load_project
from inferd.engine.ray import plan
from inferd.errors import ConfigError
from inferd.storage import project_files
from tests.conftest import example, make_project

CONFIG = """
- kind: deployment
  name: shop
- kind: api
  name: ranker
  predictor:
    path: predictor.py
  compute:
    min_replicas: 2
    max_replicas: 7
    init_replicas: 3
    cpu: 500m
    mem: 1Gi
    gpu: 1
  autoscaling:
    target_in_flight: 2
    upscale_window: 3
    downscale_window: 30
"""
PREDICTOR = "def predict(sample, metadata):\n    return sample\n"


def project(tmp_path: Path, config: str = CONFIG) -> Path:
    return make_project(tmp_path / "p", config, {"predictor.py": PREDICTOR})


def test_compute_becomes_actor_options_and_autoscaling(tmp_path: Path) -> None:
    (config,) = load_project(project(tmp_path)).apis
    options = plan.deployment_options(config, "v1")
    assert options["name"] == plan.API_DEPLOYMENT
    assert options["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 1, "memory": 1 << 30}
    assert options["autoscaling_config"] == {
        "min_replicas": 2,
        "max_replicas": 7,
        "initial_replicas": 3,
        "target_ongoing_requests": 2.0,
        "upscale_delay_s": 3.0,
        "downscale_delay_s": 30.0,
    }
    assert options["max_ongoing_requests"] == plan.MAX_ONGOING_REQUESTS
    user = {"version": "v1", "deployment": "shop", "model_format": "predictor", "config": config.api.shown()}
    assert options["user_config"] == user
    assert 0 < options["max_surge_percent"] <= 100


def test_cortex_defaults_translate(tmp_path: Path) -> None:
    (config,) = load_project(example("iris-onnx")).apis
    scaling = plan.autoscaling_config(config)
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["initial_replicas"]) == (1, 100, 1)
    assert plan.actor_options(config) == {"num_cpus": 0.2, "num_gpus": 0}


def test_the_project_travels_without_hidden_files_venvs_and_bytecode(tmp_path: Path) -> None:
    root = project(tmp_path)
    names = (
        ".git/config",
        ".env",
        ".venv/lib/x.py",
        "venv/lib/y.py",
        "node_modules/z.js",
        "__pycache__/a.pyc",
    )
    for name in (*names, "sub/b.pyc", "sub/keep.txt"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    files = [str(path.relative_to(root)) for path in project_files(root)]
    assert files == ["cortex.yaml", "predictor.py", "sub/keep.txt"]
    # a Ray cluster's working_dir leaves out the same (README: Scaling out)
    assert {".?*", "venv/", "node_modules/", "__pycache__/", "*.pyc"} <= set(plan.EXCLUDES)


def test_a_project_over_the_limit_names_its_biggest_files_and_s3(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "model.bin").write_bytes(b"\0" * 5000)
    with pytest.raises(ConfigError, match=r"model\.bin .*put large models on s3://"):
        plan.check_size(root, project_files(root), limit=4096)
    assert plan.check_size(root, project_files(root)) > 5000
    with (root / "big.bin").open("wb") as sparse:  # README: up to 100 MiB travel with the project
        sparse.truncate(100 * 2**20)
    with pytest.raises(ConfigError, match=r"more than the 100\.0 MiB that travels"):
        plan.check_size(root, project_files(root))


def test_the_version_follows_config_files_and_refresh(tmp_path: Path) -> None:
    root = project(tmp_path)
    (config,) = load_project(root).apis
    files = project_files(root)
    first = plan.version_id(config, plan.digest_files(root, files), "code")
    assert first == plan.version_id(config, plan.digest_files(root, files), "code")
    (root / "predictor.py").write_text(PREDICTOR + "# changed\n")
    changed = plan.version_id(config, plan.digest_files(root, files), "code")
    assert changed != first
    assert plan.version_id(config, plan.digest_files(root, files), "other inferd") != changed
    assert plan.version_id(config, plan.digest_files(root, files), "code", "refresh-1") != changed


def test_requirements_become_the_pip_list(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert plan.requirements(root) == []
    (root / "requirements.txt").write_text("# pinned\nsix==1.16.0\n\nattrs  # for the handler\n")
    assert plan.requirements(root) == ["six==1.16.0", "attrs"]


def test_a_utf16_requirements_file_and_url_fragments_reach_the_pip_list(tmp_path: Path) -> None:
    # was: UnicodeDecodeError out of `inferd deploy -e CLUSTER` for PowerShell's UTF-16 file, and
    # `#sha256=` cut off a URL (every # was a comment)
    root = project(tmp_path)
    text = "attrs\r\nx @ https://files.example/x-1.0-py3-none-any.whl#sha256=ab  # pinned\r\n"
    (root / "requirements.txt").write_bytes(text.encode("utf-16"))
    assert plan.requirements(root) == ["attrs", "x @ https://files.example/x-1.0-py3-none-any.whl#sha256=ab"]


def test_api_keys_are_refused_rather_than_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path, CONFIG + "  auth:\n    keys_from_env: [SHOP_KEY]\n")
    with pytest.raises(ConfigError, match="api 'ranker': auth:"):
        plan.check_supported(load_project(root))


def test_what_only_the_gateway_does_is_a_warning_when_set(tmp_path: Path) -> None:
    assert plan.unapplied(load_project(project(tmp_path / "plain"))) == []
    set_ = project(tmp_path / "set", CONFIG + "  item_timeout: 5\n  timeout: 30\n")
    (warning,) = plan.unapplied(load_project(set_))
    assert warning.startswith("api 'ranker': timeout: and item_timeout: inferd's gateway enforces them")
    limits = CONFIG.replace("    gpu: 1\n", "    gpu: 1\n    mem_limit: 2Gi\n    gpu_memory: 4Gi\n")
    mem_limit, gpu_memory = plan.unapplied(load_project(project(tmp_path / "limits", limits)))
    assert mem_limit.startswith("api 'ranker': compute.mem_limit: is enforced by the local engine")
    assert gpu_memory.endswith("on a Ray cluster each replica gets a whole GPU")


def test_proxies_on_one_machine_share_one_port() -> None:
    assert plan.serve_options(8000, on_this_machine=True) == plan.ServeOptions("127.0.0.1", 8000, "HeadOnly")
    assert plan.serve_options(8000, on_this_machine=False) == plan.ServeOptions("0.0.0.0", 8000, "EveryNode")


def test_serve_config_v2_has_every_api_and_both_routers() -> None:
    project_ = load_project(example("iris-onnx"))
    config = plan.serve_config_v2(project_, "/app/project")
    apps = {app["name"]: app for app in config["applications"]}
    assert set(apps) == {"classifier", "inferd.v2", "inferd.tfserving"}
    api = apps["classifier"]
    assert api["route_prefix"] == "/iris/classifier"
    assert api["import_path"] == plan.REPLICA_IMPORT_PATH
    assert api["args"]["project_root"] == "/app/project"
    assert api["deployments"][0]["name"] == plan.API_DEPLOYMENT
    assert apps["inferd.v2"]["route_prefix"] == "/v2"
    assert apps["inferd.tfserving"]["route_prefix"] == "/v1"

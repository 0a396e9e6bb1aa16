"""Environments: the store in $INFERD_HOME, the built-in `local`, addresses and URLs."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import pytest

from inferd.environments import (
    ENVIRONMENTS_FORMAT,
    LOCAL,
    Environment,
    EnvironmentStore,
    check_address,
)
from inferd.errors import ConfigError, UsageError


def ray_env(name: str = "lab", address: str = "ray://head:10001", port: int = 8000) -> Environment:
    return Environment(name=name, provider="ray", address=address, http_port=port)


def test_local_always_exists_and_cannot_be_removed_or_replaced(tmp_path: Path) -> None:
    store = EnvironmentStore(tmp_path)
    assert [env.name for env in store.all()] == [LOCAL]
    assert store.get(LOCAL).is_local
    with pytest.raises(UsageError, match="cannot be removed"):
        store.remove(LOCAL)
    with pytest.raises(UsageError, match="cannot be replaced"):
        store.add(Environment(name=LOCAL, provider="ray", address="h:1"))
    assert not (tmp_path / "environments.json").exists()


def test_add_list_remove_in_a_private_file(tmp_path: Path) -> None:
    store = EnvironmentStore(tmp_path)
    assert store.add(ray_env("prod")) is False
    assert store.add(ray_env("lab", "127.0.0.1:6379", 8123)) is False
    assert store.add(ray_env("lab", "127.0.0.1:6380", 8123)) is True  # replaced
    path = tmp_path / "environments.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [env.name for env in store.all()] == [LOCAL, "lab", "prod"]
    assert store.get("lab").address == "127.0.0.1:6380"
    assert json.loads(path.read_text())["environments"]["lab"]["http_port"] == 8123
    store.remove("prod")
    with pytest.raises(UsageError, match="inferd env list"):
        store.get("prod")
    assert not list(tmp_path.glob(".environments.json.*"))  # no scratch file left behind


def test_unknown_name_is_a_usage_error_naming_env_list(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"environment 'nope' does not exist \(see `inferd env list`\)"):
        EnvironmentStore(tmp_path).get("nope")


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"environments": {"lab": {"provider": "k8s"}}}',
        '{"environments": {"lab": {"provider": "ray", "address": "h:1", "http_port": 0}}}',
        '{"environments": {"lab": {"provider": "ray", "address": "h:1", "http_port": true}}}',
        '{"environments": {"lab": {"provider": "ray", "address": 6379}}}',
        '{"environments": {"lab": {"provider": "ray", "address": "h:1", "zone": "eu"}}}',
        '{"environments": {"lab": {"provider": "ray", "name": "other"}}}',
    ],
)
def test_a_corrupt_file_says_which_file(tmp_path: Path, text: str) -> None:
    (tmp_path / "environments.json").write_text(text)
    with pytest.raises(ConfigError, match=r"environments\.json is corrupt"):
        EnvironmentStore(tmp_path).all()


def test_bad_names_and_addresses_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="lower-case"):
        EnvironmentStore(tmp_path).add(ray_env("Prod!"))
    for address in ("head", "ray://head", "http://head:80/x", "head:0", "head:port"):
        with pytest.raises(UsageError, match="ray://HOST:PORT"):
            check_address(address)
    assert check_address("ray://10.0.0.5:10001") == "ray://10.0.0.5:10001"
    assert check_address("[::1]:6379") == "[::1]:6379"


@pytest.mark.parametrize(
    ("address", "host", "loopback"),
    [
        ("ray://head.example.com:10001", "head.example.com", False),
        ("10.0.0.5:6379", "10.0.0.5", False),
        ("127.0.0.1:6379", "127.0.0.1", True),
        ("localhost:6379", "127.0.0.1", True),
        ("[::1]:6379", "::1", True),
    ],
)
def test_the_proxy_url_follows_the_address(address: str, host: str, loopback: bool) -> None:
    env = ray_env(address=address, port=8123)
    assert env.host == host
    assert env.on_this_machine is loopback
    assert env.http_url.endswith(":8123") and host in env.http_url


def test_a_file_of_a_newer_inferd_says_so_and_a_new_field_takes_the_next_format(tmp_path: Path) -> None:
    # Was: "environments.json is corrupt (ValueError); fix it or remove it" after a downgrade
    store = EnvironmentStore(tmp_path)
    store.add(ray_env("lab"))
    data = json.loads((tmp_path / "environments.json").read_text())
    assert data["format"] == ENVIRONMENTS_FORMAT == 1  # older inferd versions read "environments"
    data["format"] = 2
    data["environments"]["lab"]["zone"] = "eu"
    (tmp_path / "environments.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"written by a newer inferd \(format 2; this one reads format 1\)"):
        store.all()
    # the fields format 1 has: a new one (which every older reader refuses) raises the format
    assert {field.name for field in dataclasses.fields(Environment)} == {
        "name",
        "provider",
        "address",
        "http_port",
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not JSON: Expecting property name enclosed in double quotes (line 1)"),
        ("[]", "not what inferd writes: an object with 'environments'"),
        ('{"format": 1}', "not what inferd writes: an object with 'environments'"),
        ('{"environments": {"prod": 5}}', "environment 'prod': not what inferd writes"),
        (
            '{"environments": {"prod": {"provider": "ray", "address": "ray://h:1", "http_port": "x"}}}',
            "environment 'prod': http_port must be a port number (1 to 65535), not 'x'",
        ),
    ],
)
def test_a_corrupt_file_says_what_is_wrong_in_it(tmp_path: Path, text: str, reason: str) -> None:
    # Was: "environments.json is corrupt (KeyError)", Python's name for the error, which says
    # neither what nor where.
    (tmp_path / "environments.json").write_text(text)
    with pytest.raises(ConfigError) as raised:
        EnvironmentStore(tmp_path).all()
    assert raised.value.message == (
        f"{tmp_path / 'environments.json'} is corrupt ({reason}); fix it or remove it "
        "(it lists the environments added with `inferd env add`)"
    )


def test_a_file_that_cannot_be_read_is_not_said_corrupt(tmp_path: Path) -> None:
    # Was: "is corrupt (PermissionError); fix it or remove it" for the file a `sudo inferd env
    # add` made (a folder stands for it here: root reads any file)
    (tmp_path / "environments.json").mkdir()
    with pytest.raises(ConfigError) as raised:
        EnvironmentStore(tmp_path).all()
    assert raised.value.message == f"cannot read {tmp_path / 'environments.json'} (Is a directory)"

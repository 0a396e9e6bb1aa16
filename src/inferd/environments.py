"""Environments: where ``-e NAME`` sends a command (``local``, or a Ray cluster).

Stored in ``$INFERD_HOME/environments.json`` (mode 0600, written atomically). ``local`` is
built in: it is the operator on this machine, never written to the file and never removable.
Nothing here talks to a cluster; the CLI hands the chosen environment to the backend.

Every ``inferd`` command reads its environment here, so this module stays light: a dataclass
checked by hand instead of a pydantic model (importing pydantic took 0.15 s of each command).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from inferd.errors import ConfigError, UsageError
from inferd.storage import inferd_home, write_private

ENVIRONMENTS_FILE = "environments.json"
# The format of environments.json, as ``STATE_FORMAT`` of state.json: a new field of an
# environment (which an older reader refuses) takes the next number, so that an older inferd
# given the file after a downgrade says a newer one wrote it (it said the file was corrupt, and
# to remove it). Older inferd versions read ``environments`` only.
ENVIRONMENTS_FORMAT = 1
LOCAL = "local"
# Cortex's CLI called the environment it used unless told ``default`` (``cortex deploy -e
# default``): unless an environment of that name was added, it is this machine's.
CORTEX_DEFAULT = "default"
NAME = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
DEFAULT_HTTP_PORT = 8000
RAY_CLIENT_SCHEME = "ray://"
PROVIDERS = ("local", "ray")


@dataclass(frozen=True)
class Environment:
    """One place APIs can be deployed to; ``ValueError`` when a field is not what it can be."""

    name: str  # what -e takes
    provider: str  # local: this machine's operator; ray: Ray Serve
    address: str | None = None  # what ray.init takes: ray://host:10001 or host:port
    http_port: int = DEFAULT_HTTP_PORT  # port of Ray Serve's HTTP proxy

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"name must be text, not {self.name!r}")
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, not {self.provider!r}")
        if self.address is not None and not isinstance(self.address, str):
            raise ValueError(f"address must be text, not {self.address!r}")
        port = self.http_port
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"http_port must be a port number (1 to 65535), not {port!r}")

    @classmethod
    def from_fields(cls, name: str, values: dict[str, Any]) -> Environment:
        """An environment as ``environments.json`` stores it (under its name, without it)."""
        unknown = set(values) - {f.name for f in fields(cls) if f.name != "name"}
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        if "provider" not in values:
            raise ValueError("no provider")
        return cls(name=name, **values)

    def as_dict(self) -> dict[str, Any]:
        """The fields, as ``inferd env list -o json`` prints them: ``local`` has no Ray Serve
        proxy, so no ``http_port`` (its gateway's port is INFERD_PORT)."""
        fields_ = asdict(self)
        if self.is_local:
            fields_["http_port"] = None
        return fields_

    @property
    def is_local(self) -> bool:
        return self.provider == "local"

    @property
    def host(self) -> str:
        """The host of the cluster's head, as the user wrote it in the address."""
        if self.address is None:
            return "127.0.0.1"
        rest = self.address.removeprefix(RAY_CLIENT_SCHEME)
        if rest.startswith("["):  # [::1]:6379 (one an older inferd took unclosed: `[::1`)
            return rest[1:].partition("]")[0]
        host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
        return "127.0.0.1" if host in ("", "localhost", "auto") else host

    @property
    def on_this_machine(self) -> bool:
        """True when the cluster is reached on a loopback address (every node is on this machine)."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def http_url(self) -> str:
        """Base URL of Ray Serve's HTTP proxy on the head node."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"

    def describe(self) -> str:
        if self.is_local:
            return "the operator on this machine"
        return f"Ray cluster at {self.address} (HTTP on port {self.http_port})"


LOCAL_ENVIRONMENT = Environment(name=LOCAL, provider="local")


def check_address(address: str) -> str:
    """``ray://host:port`` or ``host:port`` (as ``ray.init`` takes it); raise ``UsageError``."""
    rest = address.removeprefix(RAY_CLIENT_SCHEME)
    host, _, port = rest.rpartition(":")
    # an IPv6 host is in brackets, closed right before the port (`[::1`: `inferd env list` failed)
    bracketed = host.startswith("[") or "]" in host
    if bracketed and not (host.startswith("[") and host.endswith("]") and len(host) > 2):
        host = ""
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise UsageError(
            f"--address {address!r} must be ray://HOST:PORT (from outside the cluster, usually port "
            "10001) or HOST:PORT (the head's GCS address, from a cluster node)"
        )
    return address


class EnvironmentStore:
    """The environments of one ``$INFERD_HOME``."""

    def __init__(self, home: Path | None = None) -> None:
        self.path = (home or inferd_home()) / ENVIRONMENTS_FILE

    def _read(self) -> dict[str, Environment]:
        if not self.path.exists():
            return {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise self._corrupt("not UTF-8 text") from None
        except OSError as exc:  # not corrupt: a file `sudo inferd env add` made, say
            raise ConfigError(f"cannot read {self.path} ({exc.strerror or exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._corrupt(f"not JSON: {exc.msg} (line {exc.lineno})") from None
        if not isinstance(data, dict) or not isinstance(data.get("environments"), dict):
            raise self._corrupt("not what inferd writes: an object with 'environments'")
        found = data.get("format", ENVIRONMENTS_FORMAT)
        if isinstance(found, int) and found > ENVIRONMENTS_FORMAT:
            raise ConfigError(
                f"{self.path} was written by a newer inferd (format {found}; this one reads "
                f"format {ENVIRONMENTS_FORMAT}); nothing was changed: run that inferd, or "
                "upgrade this one"
            )
        environments = {}
        for name, values in data["environments"].items():
            if not isinstance(values, dict):
                raise self._corrupt(f"environment {name!r}: not what inferd writes")
            try:
                environments[name] = Environment.from_fields(name, values)
            except ValueError as exc:
                raise self._corrupt(f"environment {name!r}: {exc}") from None
        return environments

    def _corrupt(self, reason: str) -> ConfigError:
        """Was: "is corrupt (KeyError)", Python's name for the error, saying neither what nor where."""
        return ConfigError(
            f"{self.path} is corrupt ({reason}); fix it or remove it "
            "(it lists the environments added with `inferd env add`)"
        )

    def _write(self, environments: dict[str, Environment]) -> None:
        data = {
            "format": ENVIRONMENTS_FORMAT,
            "environments": {
                name: {
                    key: value for key, value in env.as_dict().items() if key != "name" and value is not None
                }
                for name, env in environments.items()
            },
        }
        write_private(self.path, json.dumps(data, indent=2) + "\n")

    def all(self) -> list[Environment]:
        """``local`` first, then the added environments by name."""
        added = self._read()
        return [LOCAL_ENVIRONMENT, *(added[name] for name in sorted(added))]

    def get(self, name: str) -> Environment:
        """The environment called ``name``; ``UsageError`` (exit 2) when there is none."""
        if name == LOCAL:
            return LOCAL_ENVIRONMENT
        found = self._read().get(name)
        if found is None and name == CORTEX_DEFAULT:
            return LOCAL_ENVIRONMENT
        if found is None:
            raise UsageError(f"environment '{name}' does not exist (see `inferd env list`)")
        return found

    def add(self, environment: Environment) -> bool:
        """Add or replace an environment; True when it replaced one."""
        if environment.name == LOCAL:
            raise UsageError("'local' is built in and cannot be replaced")
        if not NAME.match(environment.name) or len(environment.name) > 63:
            raise UsageError(
                f"environment name {environment.name!r} must be lower-case letters, digits, '-' or '_'"
            )
        environments = self._read()
        replaced = environment.name in environments
        environments[environment.name] = environment
        self._write(environments)
        return replaced

    def remove(self, name: str) -> None:
        if name == LOCAL:
            raise UsageError("'local' is built in and cannot be removed")
        environments = self._read()
        if name not in environments:
            raise UsageError(f"environment '{name}' does not exist (see `inferd env list`)")
        del environments[name]
        self._write(environments)

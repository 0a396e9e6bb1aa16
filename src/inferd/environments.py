"""Environments: where ``-e NAME`` sends a command (``local``, or a Ray cluster).

Stored in ``$INFERD_HOME/environments.json`` (mode 0600, written atomically). ``local`` is
built in: it is the operator on this machine, never written to the file and never removable.
Nothing here talks to a cluster; the CLI hands the chosen environment to the backend.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inferd.errors import ConfigError, UsageError
from inferd.operator.state import write_private
from inferd.storage import inferd_home

ENVIRONMENTS_FILE = "environments.json"
LOCAL = "local"
NAME = re.compile(r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
DEFAULT_HTTP_PORT = 8000
RAY_CLIENT_SCHEME = "ray://"


class Environment(BaseModel):
    """One place APIs can be deployed to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="What -e takes")
    provider: Literal["local", "ray"] = Field(description="local: this machine's operator; ray: Ray Serve")
    address: str | None = Field(None, description="What ray.init takes: ray://host:10001 or host:port")
    http_port: int = Field(DEFAULT_HTTP_PORT, ge=1, le=65535, description="Port of Ray Serve's HTTP proxy")

    @property
    def is_local(self) -> bool:
        return self.provider == "local"

    @property
    def host(self) -> str:
        """The host of the cluster's head, as the user wrote it in the address."""
        if self.address is None:
            return "127.0.0.1"
        rest = self.address.removeprefix(RAY_CLIENT_SCHEME)
        if rest.startswith("["):  # [::1]:6379
            return rest[1 : rest.index("]")]
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
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                name: Environment.model_validate({**fields, "name": name})
                for name, fields in data["environments"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
            raise ConfigError(
                f"{self.path} is corrupt ({type(exc).__name__}); fix it or remove it "
                "(it lists the environments added with `inferd env add`)"
            ) from None

    def _write(self, environments: dict[str, Environment]) -> None:
        data = {
            "environments": {
                name: env.model_dump(exclude={"name"}, exclude_none=True)
                for name, env in environments.items()
            }
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

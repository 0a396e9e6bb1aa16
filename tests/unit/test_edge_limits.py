"""Edge limits from flags and the environment, and readiness waiting for the project's APIs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inferd.errors import UsageError
from inferd.gateway.app import Gateway
from inferd.gateway.edge import EdgeLimits


def test_defaults_flags_and_environment() -> None:
    assert EdgeLimits.from_env({}) == EdgeLimits()
    limits = EdgeLimits.from_env(
        {"INFERD_HEADER_TIMEOUT": "2.5", "INFERD_MAX_CONNECTIONS": "50"}, max_connections=70
    )
    assert limits.header_timeout == 2.5
    assert limits.max_connections == 70  # a flag wins over the environment
    assert isinstance(limits.max_connections, int)
    assert limits.max_header_bytes == 64 * 1024


def test_the_defaults_are_the_readmes_table() -> None:
    """README, "Limits at the edge": 65536 bytes, 10 s, 60 s, 10000 connections, 8 pipelined,
    1 GiB of bodies arriving."""
    limits = EdgeLimits.from_env({})
    assert (limits.max_header_bytes, limits.header_timeout, limits.keepalive_timeout) == (65536, 10, 60)
    assert (limits.max_connections, limits.max_pipeline, limits.max_body_buffer) == (10000, 8, 1 << 30)


RAISE = """
import resource
from inferd.gateway.edge import raise_fd_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
now = raise_fd_limit()
print(now == resource.getrlimit(resource.RLIMIT_NOFILE)[0], now > 256 or hard == 256)
"""


def test_the_gateway_raises_its_open_file_limit_to_the_hard_limit() -> None:
    """README: --max-connections is at most the open-file limit, which the gateway raises to its
    hard limit (in a child process: this one's limit stays as it is)."""
    child = subprocess.run([sys.executable, "-c", RAISE], capture_output=True, text=True, timeout=60)
    assert child.stdout.split() == ["True", "True"], child.stderr


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_a_bad_setting_is_one_sentence(value: str) -> None:
    with pytest.raises(UsageError, match="INFERD_KEEPALIVE_TIMEOUT must be"):
        EdgeLimits.from_env({"INFERD_KEEPALIVE_TIMEOUT": value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INFERD_MAX_CONNECTIONS", "nan"),  # was: ValueError: cannot convert float NaN to integer
        ("INFERD_MAX_CONNECTIONS", "inf"),  # was: OverflowError
        ("INFERD_MAX_PIPELINE", "0.5"),  # was: 0, below the limit's own minimum
        ("INFERD_MAX_BODY_BUFFER", "1e400"),
        ("INFERD_HEADER_TIMEOUT", "nan"),  # was: no timeout at all (no age is above NaN)
    ],
)
def test_a_setting_that_is_no_number_of_its_kind_is_one_sentence(variable: str, value: str) -> None:
    with pytest.raises(UsageError, match=f"^{variable} must be .*, not '{value}'$"):
        EdgeLimits.from_env({variable: value})


def test_readiness_waits_for_expected_apis_that_do_not_exist_yet() -> None:
    gateway = Gateway()
    assert gateway.ready
    gateway.expect(["classifier"])
    assert not gateway.ready
    assert gateway.not_ready() == ["classifier"]
    gateway.remove_api("classifier")  # deleted: no longer awaited
    assert gateway.ready

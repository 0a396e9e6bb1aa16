"""The S3 client's timeouts: ``INFERD_S3_TIMEOUT`` per read, a connect at most 10 s of it."""

from __future__ import annotations

import pytest

from inferd.errors import LoadError
from inferd.storage import remote


@pytest.mark.parametrize(
    ("setting", "connect", "read"), [(None, 10.0, 60.0), ("2", 2.0, 2.0), ("90", 10.0, 90.0)]
)
def test_inferd_s3_timeout_bounds_each_read_and_a_connect_at_most_10_s(
    monkeypatch: pytest.MonkeyPatch, setting: str | None, connect: float, read: float
) -> None:
    if setting is None:
        monkeypatch.delenv("INFERD_S3_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("INFERD_S3_TIMEOUT", setting)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = remote._s3_client()
    try:
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (connect, read)
        assert config.retries["total_max_attempts"] == 1  # inferd's three tries, none inside botocore
    finally:
        client.close()


@pytest.mark.parametrize("setting", ["abc", "0", "-5", "inf"])
def test_an_inferd_s3_timeout_that_is_no_number_of_seconds_is_named(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """It was `ValueError: could not convert string to float: 'abc'`, naming no setting."""
    monkeypatch.setenv("INFERD_S3_TIMEOUT", setting)
    with pytest.raises(
        LoadError, match=f"INFERD_S3_TIMEOUT must be a number of seconds above 0, not '{setting}'"
    ):
        remote._s3_client()

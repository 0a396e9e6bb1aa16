"""API keys as clients send them: the field value is what HTTP says it is."""

from __future__ import annotations

import pytest

from inferd.gateway.auth import check

KEYS = [b"sekrit", b"other"]


@pytest.mark.parametrize("name", [b"x-api-key", b"authorization"])
@pytest.mark.parametrize("value", [b"sekrit", b"sekrit ", b"sekrit \t", b" sekrit"])
def test_whitespace_around_a_key_is_not_part_of_it(name: bytes, value: bytes) -> None:
    """RFC 9110 5.5: whitespace before and after a field value is not part of it (httptools keeps
    the trailing kind). ``X-API-Key: KEY `` from curl -H, Go or Java was a 403 'wrong API key',
    while ``Authorization: Bearer KEY `` with the same space was accepted."""
    given = b"Bearer " + value if name == b"authorization" else value
    assert check({name: given}, KEYS) is None


def test_a_wrong_or_missing_key_is_still_refused() -> None:
    assert check({b"x-api-key": b"sekri"}, KEYS) == 403
    assert check({b"x-api-key": b"sekrit x"}, KEYS) == 403
    assert check({b"x-api-key": b"  "}, KEYS) == 401
    assert check({}, KEYS) == 401

from __future__ import annotations

import pytest

from inferd.gateway.wire import origin_form


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/d/iris?debug=true", b"/d/iris?debug=true"),
        (b"http://127.0.0.1:8888/d/iris", b"/d/iris"),
        (b"HTTPS://gateway/d/iris?debug=true", b"/d/iris?debug=true"),
        (b"http://gateway", b"/"),
        (b"http://gateway?debug=true", b"/?debug=true"),
        (b"*", b"*"),  # OPTIONS *
        (b"evil:443", b"evil:443"),  # CONNECT's authority form: answered as it was
    ],
)
def test_an_absolute_form_target_becomes_its_path_and_query(target: bytes, expected: bytes) -> None:
    assert origin_form(target) == expected

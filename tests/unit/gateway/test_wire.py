from __future__ import annotations

import pytest

from inferd.gateway.wire import debug_asked, origin_form, valid_id


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


def test_debug_is_the_debug_parameter_alone_as_flask_read_it() -> None:
    assert debug_asked(b"debug=true") and debug_asked(b"x=1&debug=TRUE")
    assert not debug_asked(b"") and not debug_asked(b"debug=false")
    assert not debug_asked(b"nodebug=true") and not debug_asked(b"x=debug=true")
    assert debug_asked(b"debug=true&debug=false")  # the first one, as request.args.get


def test_a_request_id_is_kept_when_it_is_printable_ascii_of_up_to_128_characters() -> None:
    assert valid_id(b"order-42/retry#1") and valid_id(b"r" * 128)
    assert not valid_id(b"r" * 129)  # replaced by a generated id
    assert not valid_id(b"with space") and not valid_id("caf\u00e9".encode())

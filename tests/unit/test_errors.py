"""The error tree: every class fixes an HTTP status and an exit code, and names map back."""

from __future__ import annotations

from inferd import errors


def subclasses(cls: type[errors.InferdError]) -> list[type[errors.InferdError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(subclasses(sub))
    return found


def test_every_error_has_a_status_and_exit_code() -> None:
    classes = subclasses(errors.InferdError)
    assert len(classes) > 10
    for cls in classes:
        assert 400 <= cls.status_code < 600, cls
        assert cls.exit_code in (1, 2), cls
        assert errors.error_type(cls.__name__) is cls


def test_client_errors_are_4xx_and_user_code_errors_5xx() -> None:
    assert errors.InputError.status_code == 400
    assert errors.NotFoundError.status_code == 404
    assert errors.HandlerError.status_code == 500
    assert errors.LoadError.status_code == 503
    assert errors.ConfigError.exit_code == 2
    assert errors.error_type("NoSuchError") is errors.InferdError


def test_apis_are_named_as_a_sentence_names_them() -> None:
    # was "would remove api 'plain', 'slow'"
    assert errors.apis_named(["labels"]) == "api 'labels'"
    assert errors.apis_named(["plain", "slow"]) == "apis 'plain' and 'slow'"
    assert errors.apis_named(["a", "b", "c"]) == "apis 'a', 'b' and 'c'"

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


def test_a_name_not_deployed_is_told_the_nearest_apis_by_their_names_or_their_deployments() -> None:
    keys = [f"{deployment}/a{i:02d}" for deployment in ("scale10", "scale100", "other") for i in range(12)]
    assert errors.deployed_hint("x", keys[:3]) == "deployed: scale10/a00, scale10/a01, scale10/a02"
    # a deployment's name, as `inferd delete scale1000` gives: that deployment's APIs
    hint = errors.deployed_hint("scale1000", keys)
    assert hint.startswith("36 apis deployed, the nearest: scale100/a00, scale100/a01, "), hint
    assert hint.endswith("scale100/a09; inferd get lists them all"), hint
    # an API's name, in a deployment not deployed: the APIs of that name first, whatever their deployment
    assert errors.deployed_hint("nope/a11x", keys).startswith(
        "36 apis deployed, the nearest: other/a11, scale10/a11, scale100/a11, "
    )

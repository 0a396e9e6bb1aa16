"""A deploy's outcome from API statuses: live, failed (with the reason), or still rolling out."""

from __future__ import annotations

from typing import Any

import pytest

from inferd.cli.outcome import judge, wait_deleted, wait_outcome
from inferd.errors import DeployFailedError, InferdError, OperatorError


def api(name: str = "a", status: str = "live", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "deployment": "d",
        "status": status,
        "version": "v2",
        "up_to_date": 1 if status == "live" else 0,
        "available": 1 if status == "live" else 0,
        "requested": 1,
        **extra,
    }


class Statuses:
    """A backend whose ``apis()`` answers from a script, one answer per poll."""

    def __init__(self, *answers: list[dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.polls = 0

    def apis(self) -> list[dict[str, Any]]:
        self.polls += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def api(self, name: str) -> dict[str, Any]:
        raise AssertionError("not used")

    def delete(self, name: str) -> dict[str, Any]:
        raise AssertionError("not used")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_live_new_version_is_done_even_while_old_replicas_drain() -> None:
    outcome = judge("a", api(stale=1, available=2), "v2")
    assert outcome.done and not outcome.failed


def test_a_live_api_with_a_warning_says_it() -> None:
    # a requirements.txt pin inferd's own package shadows: was in the API's log only
    warning = "requirements.txt: numpy<2 conflicts with numpy 2.4.6, which inferd itself runs with"
    outcome = judge("a", api(warning=warning), "v2")
    assert outcome.line == f"a: live (1/1 replicas up to date); warning: {warning}"


def test_old_version_still_live_is_not_done() -> None:
    outcome = judge("a", api(status="updating", available=1, up_to_date=0), "v2")
    assert not outcome.done


def test_failed_update_says_the_previous_version_keeps_serving() -> None:
    outcome = judge("a", api(status="error", available=1, up_to_date=0, error="cannot import h.py"), "v2")
    assert outcome.done and outcome.failed
    assert outcome.failure == (
        "api 'a' failed (error): cannot import h.py; the previous version keeps serving"
    )


def test_failed_first_deploy_names_the_reason_only() -> None:
    outcome = judge("a", api(status="compute unavailable", error="needs cpu 64, this machine has 2"), "v2")
    assert outcome.failure == "api 'a' failed (compute unavailable): needs cpu 64, this machine has 2"


def test_a_later_version_ends_the_wait() -> None:
    assert judge("a", api(status="updating", version="v3"), "v2") == judge("a", api(version="v3"), "v2")
    assert not judge("a", api(version="v3"), "v2").failed


def test_wait_outcome_returns_once_live() -> None:
    clock = Clock()
    backend = Statuses([api(status="updating")], [api(status="updating")], [api()])
    wait_outcome(backend, {"a": "v2"}, clock=clock, sleep=clock.sleep)
    assert backend.polls == 3


def test_wait_outcome_raises_with_every_failure() -> None:
    clock = Clock()
    backend = Statuses([api("a", "error", error="boom"), api("b"), api("c", "error (out of memory)")])
    with pytest.raises(DeployFailedError, match=r"api 'a' failed \(error\): boom; api 'c' failed"):
        wait_outcome(backend, {"a": "v2", "b": "v2", "c": "v2"}, clock=clock, sleep=clock.sleep)


def test_apis_that_failed_for_the_same_reason_are_said_once() -> None:
    # Sixty APIs on a 2-core machine: forty "compute unavailable" APIs were forty copies of one
    # long sentence (10 KB of error). Now one sentence names them, other reasons stay apart.
    clock = Clock()
    short = "needs cpu 0.1, 0 of this machine's 2 is free"
    listing = [api(f"a{i}", "compute unavailable", error=short) for i in range(40)]
    listing.append(api("b", "error", error="boom"))
    with pytest.raises(DeployFailedError) as failure:
        wait_outcome(
            Statuses(listing), {item["name"]: "v2" for item in listing}, clock=clock, sleep=clock.sleep
        )
    message = str(failure.value)
    assert message.count(short) == 1 and "api 'b' failed (error): boom" in message
    assert message.startswith(f"40 apis failed (compute unavailable): {short}: 'a0', 'a1', ")


def test_wait_outcome_gives_up_after_the_timeout() -> None:
    clock = Clock()
    backend = Statuses([api(status="updating")])
    with pytest.raises(DeployFailedError, match="a not live after 5s"):
        wait_outcome(backend, {"a": "v2"}, timeout=5, clock=clock, sleep=clock.sleep)


def test_wait_deleted() -> None:
    clock = Clock()
    wait_deleted(Statuses([api("a", "stopping")], []), ["d/a"], clock=clock, sleep=clock.sleep)
    with pytest.raises(DeployFailedError, match="d/a still draining"):
        wait_deleted(Statuses([api("a", "stopping")]), ["d/a"], timeout=1, clock=clock, sleep=clock.sleep)
    # Listed, never seen stopping (a backend slow to say so): still waited for.
    with pytest.raises(DeployFailedError, match="d/a still draining"):
        wait_deleted(Statuses([api("a")]), ["d/a"], timeout=1, clock=clock, sleep=clock.sleep)


def test_a_deleted_api_deployed_again_is_not_waited_for(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    backend = Statuses(
        [api("a", "stopping"), api("b", "stopping")], [api("a", "updating"), api("b", "stopping")], []
    )
    wait_deleted(backend, ["d/a", "d/b"], clock=clock, sleep=clock.sleep)
    assert backend.polls == 3  # b, still draining, was waited for
    assert capsys.readouterr().err == "d/a was deployed again while it drained\n"


def test_a_deleted_api_deployed_again_before_the_first_look_is_not_waited_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the operator answers a delete with its APIs already stopping: one listed live at the first
    # look was deployed again (was: waited for until the timeout, 600 s, then exit 1)
    clock = Clock()
    backend = Statuses([api("a", "live"), api("b", "stopping")], [api("a", "live")])
    wait_deleted(backend, ["d/a", "d/b"], clock=clock, sleep=clock.sleep, draining=True)
    assert backend.polls == 2
    assert capsys.readouterr().err == "d/a was deployed again while it drained\n"


def test_wait_outcome_looks_at_its_own_deployment_only() -> None:
    clock = Clock()
    other = {**api("a", status="error", error="boom"), "deployment": "other"}
    backend = Statuses([other, api("a")])
    wait_outcome(backend, {"a": "v2"}, clock=clock, sleep=clock.sleep, deployment="d")


def interrupted(seconds: float) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_while_waiting_says_the_operator_goes_on() -> None:
    with pytest.raises(
        InferdError, match=r"^stopped waiting \(Ctrl-C\); the deployment goes on in the operator"
    ):
        wait_outcome(Statuses([api(status="updating")]), {"a": "v2"}, sleep=interrupted)
    with pytest.raises(InferdError, match=r"^stopped waiting \(Ctrl-C\); the deleted APIs' replicas go on"):
        wait_deleted(Statuses([api("a")]), ["d/a"], sleep=interrupted)


def test_a_long_quiet_rollout_is_shown_again_every_10_s(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    backend = Statuses(*[[api(status="updating")]] * 100, [api()])  # 25 s updating, then live
    wait_outcome(backend, {"a": "v2"}, clock=clock, sleep=clock.sleep)
    assert capsys.readouterr().err.splitlines() == [
        "a: updating (0/1 replicas up to date)",
        "a: updating (0/1 replicas up to date), 10s so far",
        "a: updating (0/1 replicas up to date), 20s so far",
        "a: live (1/1 replicas up to date)",
    ]


class Restarting(Statuses):
    """An operator killed mid-wait: ``down`` polls answer 'not running', then it is back."""

    def __init__(self, down: int, *answers: list[dict[str, Any]]) -> None:
        super().__init__(*answers)
        self.down = down

    def apis(self) -> list[dict[str, Any]]:
        if self.down:
            self.down -= 1
            raise OperatorError("the inferd operator is not running (start it: `inferd up`)")
        return super().apis()


def test_the_wait_outlives_an_operator_its_supervisor_restarts(capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock()
    # 5 s away, then back without the API for a while (it restores deployments one by one)
    wait_outcome(Restarting(20, [], [], [api()]), {"a": "v2"}, clock=clock, sleep=clock.sleep)
    assert "the operator stopped answering; waiting for it to come back" in capsys.readouterr().err
    gone = clock.now
    with pytest.raises(OperatorError, match="is not running"):  # one that stays away is said
        wait_outcome(Restarting(1000, [api()]), {"a": "v2"}, clock=clock, sleep=clock.sleep)
    assert 30 <= clock.now - gone < 32  # README: an error after 30 s away


def test_progress_lines_of_apis_failing_alike_leave_the_reason_to_the_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Each of forty APIs short of cores printed the whole reason, 170 characters, before the
    # error said it once: progress lines now fit an 80-column terminal; a reason of its own stays.
    clock = Clock()
    short = (
        "needs cpu 0.2, 0.19 of this machine's 2 is free (other replicas hold the rest; set INFERD_CPUS ...)"
    )
    listing = [api(f"a{i}", "compute unavailable", error=short) for i in range(40)]
    listing.append(api("b", "error", error="boom"))
    with pytest.raises(DeployFailedError) as failure:
        wait_outcome(
            Statuses(listing), {item["name"]: "v2" for item in listing}, clock=clock, sleep=clock.sleep
        )
    assert str(failure.value).count(short) == 1
    lines = capsys.readouterr().err.splitlines()
    assert "40 apis: compute unavailable (the reason is below)" in lines
    assert "b: error: boom" in lines
    assert short not in "\n".join(lines)


def test_many_apis_at_the_same_step_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # A first deploy of 150 APIs printed 300 lines, "api000: updating (...)" to "api149: live (...)".
    clock = Clock()
    names = [f"a{i}" for i in range(10)]
    updating = [api(name, "updating") for name in names]

    def live_below(count: int) -> list[dict[str, Any]]:
        return [api(name, "live" if i < count else "updating") for i, name in enumerate(names)]

    backend = Statuses(updating, live_below(6), live_below(8), live_below(10))
    wait_outcome(backend, dict.fromkeys(names, "v2"), clock=clock, sleep=clock.sleep)
    assert capsys.readouterr().err.splitlines() == [
        "10 apis: updating (0/1 replicas up to date)",
        "6 apis: live (1/1 replicas up to date)",
        "a6: live (1/1 replicas up to date)",  # fewer than four at one step: each by name
        "a7: live (1/1 replicas up to date)",
        "a8: live (1/1 replicas up to date)",
        "a9: live (1/1 replicas up to date)",
    ]


def test_a_wait_that_times_out_still_says_why_apis_failing_alike_failed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Their progress lines say "the reason is below"; the timeout's error named only the API still
    # rolling out, so the reason of the forty was never shown.
    clock = Clock()
    short = "needs cpu 0.2, 0.19 of this machine's 2 is free"
    listing = [api(f"a{i}", "compute unavailable", error=short) for i in range(40)]
    listing.append(api("slow", "updating"))
    with pytest.raises(DeployFailedError) as failure:
        wait_outcome(
            Statuses(listing),
            {item["name"]: "v2" for item in listing},
            timeout=5,
            clock=clock,
            sleep=clock.sleep,
        )
    assert "40 apis: compute unavailable (the reason is below)" in capsys.readouterr().err.splitlines()
    message = str(failure.value)
    assert message.count(short) == 1, message
    assert "slow not live after 5s" in message

"""Waiting for a deploy's outcome: each API's new version live, or failed with a reason.

A deploy is done when the version it created is live (or has failed); replicas of the previous
version that are still draining do not hold it up. Failures name the reason and, for an
update, say that the previous version keeps serving, so scripts can rely on the exit code.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import click

from inferd.cli.backends import Backend, key_of
from inferd.errors import DeployFailedError, InferdError, OperatorError

WAIT_TIMEOUT = 600.0
POLL_SECONDS = 0.25
# Ctrl-C once the operator took a deploy or a delete: the CLI stops, the operator goes on.
STILL_DRAINING = (
    "stopped waiting (Ctrl-C); the deleted APIs' replicas go on draining in the operator: see `inferd get`"
)
STOPPED_WAITING = (
    "stopped waiting (Ctrl-C); the deployment goes on in the operator: follow it with `inferd get -w`"
)
# Ctrl-C while `inferd down` waits: the operator had the request and goes on (it said "stopped
# (Ctrl-C)", as if it had been kept running, and stopped all the same)
STILL_STOPPING = (
    "stopped waiting (Ctrl-C); the operator goes on draining, then stops: `inferd version` says when"
)
# Ctrl-C while the operator prepares a deploy (downloads models, installs packages) before it
# answers: the operator goes on with it all the same (it said "stopped (Ctrl-C)", as if nothing
# had been deployed)
STOPPED_PREPARING = (
    "stopped waiting (Ctrl-C) while the operator prepares the deployment (models, packages); "
    "it goes on in the operator: follow it with `inferd get -w`"
)
STILL_SECONDS = 10.0  # an unchanged rollout is shown again this often
FAILED = ("error", "error (out of memory)", "compute unavailable")
# An operator killed while a deploy waits is back within seconds (its supervisor restarts it and
# it restores the deployment): the wait goes on; one away longer than this is an error.
OPERATOR_GRACE = 30.0
ALIKE = 4  # APIs failing for the same reason from which the reason is said once for all


@dataclass(frozen=True)
class Outcome:
    """Where one API's rollout stands: ``done`` once live or failed."""

    done: bool
    failed: bool = False
    line: str = ""
    failure: str = ""
    why: str = ""  # the failure less the API's name: APIs that failed alike are said once
    brief: str = ""  # the line without the reason, for APIs that failed alike


def judge(name: str, info: dict[str, Any] | None, version: str | None) -> Outcome:
    """The outcome of ``name``'s rollout to ``version`` (None: any version) from its status."""
    if info is None:
        return Outcome(True, True, f"{name}: removed", f"api '{name}' was removed before it became live")
    if version is not None and info.get("version") not in (None, version):
        return Outcome(True, False, f"{name}: replaced by a later deploy")
    status = str(info["status"])
    up_to_date = int(info.get("up_to_date", 0))
    requested = int(info.get("requested", 0))
    if status == "live":
        # a requirements.txt pin shadowed by inferd's own package, a cached model standing in
        warning = f"; warning: {info['warning']}" if info.get("warning") else ""
        return Outcome(True, False, f"{name}: live ({up_to_date}/{requested} replicas up to date){warning}")
    if status in FAILED:
        reason = info.get("error") or status
        why = f"({status}): {reason}"
        if int(info.get("available", 0)) > up_to_date:
            why += "; the previous version keeps serving"
        brief = f"{name}: {status} (the reason is below)"
        return Outcome(True, True, f"{name}: {status}: {reason}", f"api '{name}' failed {why}", why, brief)
    return Outcome(False, False, f"{name}: {status} ({up_to_date}/{requested} replicas up to date)")


def wait_outcome(
    backend: Backend,
    versions: dict[str, str | None],
    timeout: float = WAIT_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    deployment: str | None = None,
    unchanged: Collection[str] = (),
) -> None:
    """Show each API's progress until every one is live or failed; raise if any failed.

    ``versions`` is keyed by API name, within ``deployment`` when given (names are unique per
    deployment, so other deployments' APIs of the same name are not looked at). ``unchanged``:
    APIs the deploy left as they were; from ``ALIKE`` of them, those live are one line.
    """
    try:
        _wait_outcome(backend, versions, timeout, clock, sleep, deployment, unchanged)
    except KeyboardInterrupt:  # Ctrl-C stops the waiting, not the rollout the operator runs
        raise InferdError(STOPPED_WAITING) from None


def _wait_outcome(
    backend: Backend,
    versions: dict[str, str | None],
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    deployment: str | None,
    unchanged: Collection[str] = (),
) -> None:
    started = clock()
    # An update of one API of sixty listed the 59 others as live, one line each, every time.
    quiet = set(unchanged) if len(unchanged) >= ALIKE else set()
    deadline = started + timeout
    shown: dict[str, tuple[str, float]] = {}  # the line last shown per API, and when
    lost: float | None = None  # since when the operator has not answered
    back = -OPERATOR_GRACE  # when it answered again after that
    while True:
        try:
            listing = backend.apis()
        except OperatorError:
            now = clock()
            if lost is None:
                lost = now
                click.echo("the operator stopped answering; waiting for it to come back", err=True)
            if now - lost >= OPERATOR_GRACE or now >= deadline:
                raise
            sleep(POLL_SECONDS)
            continue
        if lost is not None:
            lost, back = None, clock()
        apis = {api["name"]: api for api in listing if deployment is None or api["deployment"] == deployment}
        now = clock()
        outcomes = {name: judge(name, apis.get(name), version) for name, version in versions.items()}
        if now - back < OPERATOR_GRACE:  # a restarted operator restores deployments one by one
            restoring = "waiting for the restarted operator to restore it"
            outcomes.update(
                {name: Outcome(False, False, f"{name}: {restoring}") for name in versions if name not in apis}
            )
        if quiet:  # said once, at the first answer: later changes of theirs are shown as any
            alive = {name for name in quiet if outcomes[name].done and not outcomes[name].failed}
            shown.update({name: (outcomes[name].line, now) for name in alive})
            if alive:
                click.echo(f"{len(alive)} unchanged apis: live", err=True)
            quiet = set()
        # forty APIs short of cores printed the same 170-character reason forty times
        sharing = Counter(outcome.why for outcome in outcomes.values() if outcome.failed and outcome.why)
        said: list[tuple[str, str]] = []  # (API, what it says) this poll
        for name, outcome in outcomes.items():
            line, at = shown.get(name, ("", now))
            if line != outcome.line:
                shown[name] = (outcome.line, now)
                said.append((name, outcome.brief if sharing[outcome.why] >= ALIKE else outcome.line))
            elif not outcome.done and now - at >= STILL_SECONDS:
                # a first TensorFlow load or a pip install is quiet for long: say it goes on
                shown[name] = (line, now)
                said.append((name, f"{line}, {now - started:.0f}s so far"))
        for line in _grouped(said):
            click.echo(line, err=True)
        if all(outcome.done for outcome in outcomes.values()):
            break
        if clock() >= deadline:
            waiting = sorted(name for name, outcome in outcomes.items() if not outcome.done)
            # the reasons that progress lines left to the error ("the reason is below") first
            raise DeployFailedError(
                "; ".join(
                    [
                        *_failures(outcomes),
                        f"{', '.join(waiting)} not live after {timeout:.0f}s; the rollout goes on in "
                        "the operator: follow it with `inferd get -w`",
                    ]
                )
            )
        sleep(POLL_SECONDS)
    failed = _failures(outcomes)
    if failed:
        raise DeployFailedError("; ".join(failed))


def _failures(outcomes: dict[str, Outcome]) -> list[str]:
    """What the failed APIs of ``outcomes`` are told, those that failed alike in one sentence."""
    alike: dict[str, list[str]] = {}  # APIs that failed for the same reason, said once
    failed: list[str] = []
    for name, outcome in outcomes.items():
        if outcome.failed and outcome.why:
            if outcome.why not in alike:
                alike[outcome.why] = []
                failed.append(outcome.why)
            alike[outcome.why].append(name)
        elif outcome.failed:
            failed.append(outcome.failure)
    return [_failed(alike[why], why) if why in alike else why for why in failed]


def _grouped(said: list[tuple[str, str]]) -> list[str]:
    """The lines of one poll, ``ALIKE`` or more APIs at the same step said once: a first deploy
    of 150 APIs printed 300 lines, ``api000: updating (...)`` to ``api149: live (...)``."""
    steps = Counter(line[len(name) + 2 :] for name, line in said)
    lines: list[str] = []
    folded: set[str] = set()
    for name, line in said:
        step = line[len(name) + 2 :]
        if steps[step] < ALIKE:
            lines.append(line)
        elif step not in folded:  # where the first of them is: the line for all
            folded.add(step)
            lines.append(f"{steps[step]} apis: {step}")
    return lines


def _failed(names: list[str], why: str) -> str:
    """The APIs ``names`` that failed for the same reason: a few named one by one, more in one
    sentence (forty APIs short of the machine's cores were forty copies of one long sentence)."""
    if len(names) < ALIKE:
        return "; ".join(f"api '{name}' failed {why}" for name in names)
    return f"{len(names)} apis failed {why}: " + ", ".join(f"'{name}'" for name in names)


def wait_deleted(
    backend: Backend,
    names: list[str],
    timeout: float = WAIT_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    draining: bool = False,
) -> None:
    """Wait until the APIs ``names`` (keys, ``deployment/api``) are gone; raise after ``timeout``.

    An API seen ``stopping`` that is listed again with another status was deployed again while
    it drained (a deploy run beside the delete): it is not waited for. ``draining``: the backend
    answered the delete with every API of ``names`` gone or stopping (the operator does), so
    each counts as seen stopping from the start: a deploy that came before the first look
    (a quarter of a second after the delete) was waited for until the timeout.
    """
    deadline = clock() + timeout
    stopping: set[str] = set(names) if draining else set()
    again: set[str] = set()
    try:
        while True:
            listed = {key_of(api): str(api["status"]) for api in backend.apis() if key_of(api) in names}
            stopping.update(key for key, status in listed.items() if status == "stopping")
            for key in sorted(stopping - again):
                if listed.get(key, "stopping") != "stopping":
                    again.add(key)
                    click.echo(f"{key} was deployed again while it drained", err=True)
            remaining = sorted(set(listed) - again)
            if not remaining:
                return
            if clock() >= deadline:
                raise DeployFailedError(
                    f"{', '.join(remaining)} still draining after {timeout:.0f}s; see `inferd get`"
                )
            sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        raise InferdError(STILL_DRAINING) from None

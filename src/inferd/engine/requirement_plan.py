"""What each line of a project's ``requirements.txt`` becomes before pip runs.

Each requirement is checked against inferd's own environment and the index:
- already installed in a version that fits: nothing to install;
- installed in a version that does not fit (``numpy==1.17.*``): user code would import
  inferd's version anyway, so it is not installed and the conflict is reported as a warning;
- not installable on this Python (no wheel for it: Cortex's 2019 pins): an error naming the
  pin and the nearest installable version, or with ``relax`` (``--relax-pins``) that version
  (inferd's own one where it has the package) and a warning;
- no wheel for this Python but its source on the index (``emoji==0.5.4``, ``future==0.18.2``:
  pure-Python 2019 releases never had a wheel): pip builds it, as it did for Cortex; if the
  build fails, the error names the nearest installable version as above.

``engine.packages`` runs the plan once per distinct file content.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from inferd.engine.package_index import NotOnIndex, many_wheel_versions, source_versions, wheel_versions
from inferd.engine.requirements_file import frozen_elsewhere, joined, not_editable, requirement_lines
from inferd.errors import LoadError

INDEX_LOOKUPS = 8  # at once: each is a pip process, mostly waiting on the index
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
VersionsOf = Callable[[str], list[Version]]


@dataclass
class Plan:
    """What to hand pip, and what to tell the user about the rest."""

    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Pins handed to pip to build from source: what to say if that build fails.
    built: list[str] = field(default_factory=list)
    # Packages built against one of inferd's own (torchvision for torch): installed without
    # their dependencies, which would pull a second, shadowed copy of that package.
    no_deps: list[str] = field(default_factory=list)
    # The file names another index (``--extra-index-url``, ``--find-links``): what the index
    # lacks may be there, so pip is asked.
    elsewhere: bool = False


# Distributions that install the same importable package as the one named: inferd runs with
# ``tensorflow-cpu`` and ``xgboost-cpu``, so a ``tensorflow`` or ``xgboost`` line (Cortex
# pre-installed both) is met by them instead of pip fetching the full package, which replicas
# would never import (inferd's own copy comes first on sys.path).
SAME_PACKAGE: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow-cpu", "tensorflow-intel"),
    "tensorflow-gpu": ("tensorflow", "tensorflow-cpu"),
    "onnxruntime": ("onnxruntime-gpu",),
    "xgboost": ("xgboost-cpu",),
}


# Packages whose every release is built for one release of a package inferd runs with, and
# that release's version from it: torchvision 0.4 went with torch 1.3, 0.15 with torch 2.0.
BUILT_FOR: dict[str, tuple[str, Callable[[Version], Version]]] = {
    "torchvision": ("torch", lambda torch: Version(f"0.{torch.minor + (15 if torch.major >= 2 else 1)}")),
    "torchaudio": ("torch", lambda torch: Version(f"{torch.major if torch.major >= 2 else 0}.{torch.minor}")),
}


# Names 2019 projects installed that PyPI now refuses: ``sklearn`` was a stand-in that pulled
# ``scikit-learn``; since 2023 it fails to build on purpose, telling you to use the real name.
RENAMED = {"sklearn": "scikit-learn"}


def _renamed(requirement: Requirement, line: str, result: Plan) -> tuple[Requirement, str]:
    """``requirement`` under the name PyPI serves it as now (``sklearn`` -> ``scikit-learn``)."""
    new = RENAMED.get(canonicalize_name(requirement.name))
    if new is None:
        return requirement, line
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    specifier = (
        "" if str(requirement.specifier) == "==0.0" else str(requirement.specifier)
    )  # the stand-in's one version
    marker = f"; {requirement.marker}" if requirement.marker is not None else ""
    renamed = f"{new}{extras}{specifier}{marker}"
    result.warnings.append(
        f"requirements.txt: {line} is read as {renamed} ({requirement.name} is its old name)"
    )
    return Requirement(renamed), renamed


def installed_version(name: str) -> Version | None:
    """The version of ``name`` in inferd's own environment (or of a distribution that installs
    the same package, ``SAME_PACKAGE``), if it is installed there."""
    for candidate in (name, *SAME_PACKAGE.get(canonicalize_name(name), ())):
        try:
            return Version(importlib.metadata.version(candidate))
        except (importlib.metadata.PackageNotFoundError, InvalidVersion):
            continue
    return None


def _anchor(requirement: Requirement) -> Version | None:
    """The version a pin names (``0.21`` for ``==0.21.*``), to measure nearness from."""
    for spec in requirement.specifier:
        try:
            return Version(spec.version.removesuffix(".*"))
        except InvalidVersion:
            continue
    return None


def nearest(requirement: Requirement, versions: list[Version]) -> Version | None:
    """The closest of ``versions`` to the pin: the oldest newer one, else the newest older one."""
    anchor = _anchor(requirement)
    if not versions:
        return None
    if anchor is None:
        return versions[-1]
    newer = [v for v in versions if v >= anchor]
    return newer[0] if newer else versions[-1]


def plan(
    text: str, relax: bool, versions_of: VersionsOf = wheel_versions, sources_of: VersionsOf = source_versions
) -> Plan:
    """Check each line of a requirements file; raise ``LoadError`` naming every pin that cannot install.

    ``versions_of`` gives the versions with a wheel for this Python, ``sources_of`` every
    version pip could install (asked only for a pin no wheel fits).
    """
    result = Plan()
    refused: list[str] = []  # every pin that cannot install, said at once (a pip freeze has dozens)
    lines = joined(requirement_lines(text))
    elsewhere = any(_OTHER_INDEX.match(line) for line in lines)  # what the index lacks, another may have
    if versions_of is wheel_versions:  # a pip freeze's hundreds of pins: asked in a few processes
        versions_of = _known_first(many_wheel_versions(_asked_about(lines, relax)))
    # each pin not met here is a lookup on the index of about a second: a pip freeze's at once
    with ThreadPoolExecutor(max_workers=INDEX_LOOKUPS) as pool:
        outcomes = list(
            pool.map(lambda line: _attempt(line, relax, versions_of, sources_of, elsewhere), lines)
        )
    for outcome in outcomes:
        if isinstance(outcome, LoadError):
            refused.append(outcome.message.removeprefix("requirements.txt: "))
            continue
        result.lines += outcome.lines
        result.warnings += outcome.warnings
        result.built += outcome.built
        result.no_deps += outcome.no_deps
    if refused:
        raise LoadError("requirements.txt: " + "; ".join(refused))
    return result


def _asked_about(lines: list[str], relax: bool) -> set[str]:
    """The packages of ``lines`` the index is asked about: pinned ones inferd's environment does
    not meet (that it has at all: unless ``relax``), and those built for one of inferd's
    (``BUILT_FOR``)."""
    names: set[str] = set()
    for line in lines:
        try:
            requirement = Requirement(not_editable(line).split(" --", 1)[0])
        except InvalidRequirement:
            continue
        name = canonicalize_name(RENAMED.get(canonicalize_name(requirement.name), requirement.name))
        have = installed_version(name)
        unmet = have is None or not (relax or requirement.specifier.contains(have, prereleases=True))
        if name in BUILT_FOR or (requirement.specifier and unmet):
            names.add(name)
    return names


def _known_first(known: dict[str, list[Version]]) -> VersionsOf:
    def versions_of(name: str) -> list[Version]:
        found = known.get(canonicalize_name(name))
        return found if found is not None else wheel_versions(name)

    return versions_of


_OTHER_INDEX = re.compile(r"^(-i|--index-url|--extra-index-url|-f|--find-links)\b")


def _attempt(
    line: str, relax: bool, versions_of: VersionsOf, sources_of: VersionsOf, elsewhere: bool
) -> Plan | LoadError:
    """What one line of the file hands pip and says; the error when it cannot install.
    ``elsewhere``: the file names another index, which may have what this one lacks."""
    result = Plan(elsewhere=elsewhere)
    line = not_editable(line)
    frozen = frozen_elsewhere(line)
    if frozen is not None:
        return LoadError(frozen)
    if line.startswith("-") or "://" in line or " @ " in line:
        result.lines.append(line)  # options, URLs and paths go to pip as they are
        return result
    # `pkg==1.0 --hash=sha256:...`: the requirement is checked, its options go with it to pip
    pin, options = (line.split(" --", 1)[0], " --" + line.split(" --", 1)[1]) if " --" in line else (line, "")
    try:
        requirement = Requirement(pin)
    except InvalidRequirement:
        result.lines.append(line)  # let pip say what is wrong with it
        return result
    if requirement.marker is not None and not requirement.marker.evaluate():
        return result
    requirement, pin = _renamed(requirement, pin, result)
    try:
        _check(requirement, pin, relax, versions_of, sources_of, result)
    except LoadError as exc:
        return exc
    result.lines = [planned + options if planned == pin else planned for planned in result.lines]
    return result


def _check(
    requirement: Requirement,
    line: str,
    relax: bool,
    versions_of: VersionsOf,
    sources_of: VersionsOf,
    result: Plan,
) -> None:
    name = canonicalize_name(requirement.name)
    spec = requirement.specifier
    have = installed_version(name)
    if have is not None:
        _extras(requirement, have, result)  # `requests[socks]`: PySocks, pinned to inferd's requests
    if have is not None and spec.contains(have, prereleases=True):
        return  # inferd's environment already provides it
    if have is None and name in BUILT_FOR and _built_for(requirement, line, relax, versions_of, result):
        return
    if not spec:
        result.lines.append(line)
        return
    if have is not None and relax:
        # Replicas import inferd's own copy first, so that is the version user code gets.
        result.warnings.append(
            f"requirements.txt: {line} relaxed to {name} {have}, which inferd itself runs with"
        )
        return
    # pre-releases only for a pin naming one (``==2.0rc1``), as pip takes them
    versions = [v for v in versions_of(name) if spec.prereleases or not v.is_prerelease]
    if not versions and have is None:
        try:
            if not result.elsewhere:
                sources_of(name)  # the index has no such package: said with every other, at once
        except NotOnIndex:
            raise LoadError(
                f"requirements.txt: {line}: the index has no package {name} (a conda package, or one "
                "of a private index: add its --extra-index-url line, or its wheel in the project with "
                "--find-links)"
            ) from None
        result.lines.append(line)  # no wheel, or the index is unreachable: pip says why
        return
    fits = [v for v in versions if spec.contains(v, prereleases=True)]
    if not fits and (result.elsewhere or not versions):
        # the file's own index (``--extra-index-url``, ``--find-links``) may have it: a private
        # package whose name the default index has too, in other versions; or the index did not
        # answer (inferd's own package: what it has is unknown): pip says
        if have is not None:
            result.warnings.append(
                f"requirements.txt: {line} conflicts with {name} {have}, which inferd itself runs "
                "with; handlers import that version"
            )
        else:
            result.lines.append(line)
        return
    if have is not None:
        # Replicas import inferd's own copy first, so another version would be shadowed.
        if not fits:
            near = nearest(requirement, versions)
            raise LoadError(
                f"requirements.txt: {line} cannot be installed on Python {PYTHON}"
                + (f" (the nearest installable version is {near})" if near else "")
                + f"; --relax-pins uses {name} {have}, which inferd runs with"
            )
        result.warnings.append(
            f"requirements.txt: {line} conflicts with {name} {have}, which inferd itself runs "
            "with; handlers import that version"
        )
        return
    if fits:
        result.lines.append(line)
        return
    near = nearest(requirement, versions)
    if not relax and any(
        spec.contains(v, prereleases=True)
        for v in sources_of(name)
        if spec.prereleases or not v.is_prerelease
    ):
        result.lines.append(line)  # no wheel, but pip can build the pinned source
        if near is not None:
            result.built.append(
                f"{line} has no wheel for Python {PYTHON}; the nearest installable version is "
                f"{near} (--relax-pins installs it)"
            )
        return
    if near is None:
        raise LoadError(f"requirements.txt: {line}: no version of {name} installs on Python {PYTHON}")
    if not relax:
        raise LoadError(
            f"requirements.txt: {line} cannot be installed on Python {PYTHON}; the nearest "
            f"installable version is {near} (--relax-pins installs it)"
        )
    result.lines.append(f"{requirement.name}=={near}")
    result.warnings.append(
        f"requirements.txt: {line} cannot be installed on Python {PYTHON}; relaxed to {near}"
    )


def _extras(requirement: Requirement, have: Version, result: Plan) -> None:
    """Hand pip the extras of a package inferd runs with when their packages are not all in
    inferd's environment, as ``name[extras]==`` inferd's version (the package's own copy is
    removed after the install: ``engine.shadowed``)."""
    if not requirement.extras:
        return
    for candidate in (requirement.name, *SAME_PACKAGE.get(canonicalize_name(requirement.name), ())):
        try:
            requires = importlib.metadata.distribution(candidate).requires or []
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    else:
        return
    for text in requires:
        try:
            needed = Requirement(text)
        except InvalidRequirement:
            continue
        if needed.marker is None or "extra" not in str(needed.marker):
            continue  # the package's own dependencies: inferd's environment has them
        if not any(needed.marker.evaluate({"extra": extra}) for extra in requirement.extras):
            continue
        found = installed_version(needed.name)
        if found is None or not needed.specifier.contains(found, prereleases=True):
            extras = ",".join(sorted(requirement.extras))
            result.lines.append(f"{requirement.name}[{extras}]=={have}")
            return


def _built_for(
    requirement: Requirement, line: str, relax: bool, versions_of: VersionsOf, result: Plan
) -> bool:
    """Plan a package built against one inferd runs with (``BUILT_FOR``): the release made for
    inferd's version of it, without dependencies; False when it does not apply."""
    base_name, release_for = BUILT_FOR[canonicalize_name(requirement.name)]
    base = installed_version(base_name)
    if base is None:
        return False
    wanted = release_for(base).release
    made = [
        v
        for v in versions_of(requirement.name)
        if v.release[: len(wanted)] == wanted and (base.is_prerelease or not v.is_prerelease)
    ]
    if not made:
        return False
    # A local build (torch 2.13.0+cpu) goes with the same build of the other when the index has it.
    match = ([v for v in made if v.local == base.local] or made)[-1]
    built = f"the {requirement.name} built for {base_name} {base}, which inferd runs with"
    if requirement.specifier and not requirement.specifier.contains(match, prereleases=True):
        if not relax:
            raise LoadError(
                f"requirements.txt: {line} does not fit {base_name} {base}, which inferd runs with; "
                f"--relax-pins installs {requirement.name} {match}, the one built for it"
            )
        result.warnings.append(f"requirements.txt: {line} relaxed to {match}, {built}")
    result.no_deps.append(f"{requirement.name}=={match}")
    return True

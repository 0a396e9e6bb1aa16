"""What a deploy is checked against, and given, before it runs: the folder a deployment's name
belongs to (one project may not remove the APIs another folder deployed under that name), and
the API keys' variables (``auth.keys_from_env``) from the deploying shell."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from inferd.config.schema import Project
from inferd.engine.state import ApiState
from inferd.errors import ConfigError, ReplaceError, apis_named
from inferd.operator.state import State


def key_variables(project: Project, state: State, environ: dict[str, str]) -> dict[str, str]:
    """The variables ``keys_from_env`` names: from the deploying shell, else the last deploy's."""
    previous = state.secrets.get(project.deployment.name, {})
    values: dict[str, str] = {}
    for config in project.apis:
        for variable in config.api.auth.keys_from_env if config.api.auth else []:
            value = environ.get(variable) or previous.get(variable)
            if not value:
                raise ConfigError(
                    f"api '{config.name}': auth.keys_from_env: {variable} is not set in the shell "
                    "running `inferd deploy` (export it first)"
                )
            values[variable] = value
    return values


def check_other_folder(project: Project, state: State, apis: Iterable[ApiState]) -> None:
    """Refuse to remove APIs (of ``apis``, the engine's) that another folder deployed under this
    deployment's name."""
    name = project.deployment.name
    record = state.deployments.get(name)
    if record is None or Path(record.source) == project.root:
        return
    keep = {config.name for config in project.apis}
    removed = sorted(
        api.config.name
        for api in apis
        if api.config.deployment == name and not api.deleting and api.config.name not in keep
    )
    if removed:
        raise ReplaceError(
            f"deployment '{name}' was deployed from {record.source}; deploying {project.root} "
            f"under the same name would remove {apis_named(removed)} (use --force to replace it, or "
            "give this project another deployment name)"
        )

"""The user-facing Python client: Cortex v0.10's ``cortex.Client``, deploying from Python.

``Client().deploy("iris", "classifier", "iris.onnx", pre_inference=..., post_inference=...)``
writes a project folder (``$INFERD_HOME/workspace/<deployment>/``) holding the model, a
``cortex.yaml`` and the handler functions pickled with cloudpickle (so lambdas and closures
work: ``handler/pickling.py``), deploys it like ``inferd deploy`` and returns the API's URL
once it is live. The replica loads the pickle as it loads any handler file, so the API answers
exactly like one deployed from a folder.

(``inferd.client`` is something else: the CLI's connection to the operator's admin API.)
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inferd.errors import ConfigError, DeployFailedError, ReplaceError, UsageError
from inferd.handler.pickling import pickle_functions
from inferd.storage import CREATED_MARK

HANDLER_FILE = "handlers.pickle"
API_FILE = "api.json"
FORMATS = ("onnx", "tensorflow")
REMOTE = ("s3://", "gs://", "http://", "https://")
POLL_SECONDS = 0.25


def _check_names(deployment: str, api: str) -> None:
    """The names a Cortex project would accept (DNS-1123 and DNS-1035), else ``UsageError``."""
    from inferd.config.names import DNS_1035, DNS_1123

    for what, name, pattern in (("deployment_name", deployment, DNS_1123), ("api_name", api, DNS_1035)):
        if not isinstance(name, str) or not pattern.match(name) or len(name) > 63:
            raise UsageError(
                f"{what} {name!r} must be lower-case letters, digits and '-', at most 63 characters"
            )


class Client:
    """Deploys models with handler functions, as Cortex v0.10's Python client did.

    Cortex's arguments are accepted so that its scripts run unchanged. What they mean here:

    - ``aws_access_key_id`` / ``aws_secret_access_key``: unused. Nothing is uploaded; an
      ``s3://`` model is read by whoever deploys (the local operator, or the Ray cluster) with
      the standard AWS credential chain (``AWS_*`` variables, ``~/.aws``).
    - ``operator_url``: the name of an inferd environment (``inferd env list``), same as
      ``env``; ``None`` or an http(s) URL (Cortex's cluster address) means this machine's
      operator, which is found through ``$INFERD_HOME`` and started when it is not running.
    - ``env``: the environment to deploy to: ``local`` (default), or a Ray environment added
      with ``inferd env add``, whose cluster must run the same Python version (the functions
      travel as Python code).
    """

    def __init__(
        self,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        operator_url: str | None = None,
        *,
        env: str | None = None,
        home: Path | None = None,
    ) -> None:
        from inferd.environments import LOCAL, EnvironmentStore
        from inferd.storage import inferd_home

        self.aws_access_key_id = aws_access_key_id
        self.aws_secret_access_key = aws_secret_access_key
        self.operator_url = operator_url
        self.home = home or inferd_home()
        if env is None and operator_url is not None and not operator_url.startswith(("http://", "https://")):
            env = operator_url
        self.environment = EnvironmentStore(self.home).get(env or LOCAL)
        self.workspace = self.home / "workspace"

    def deploy(
        self,
        deployment_name: str,
        api_name: str,
        model_path: str | Path,
        pre_inference: Callable[..., Any] | None = None,
        post_inference: Callable[..., Any] | None = None,
        model_format: str | None = None,
        tf_serving_key: str | None = None,
        *,
        timeout: float = 600.0,
    ) -> str:
        """Deploy ``model_path`` as API ``api_name`` of ``deployment_name``; return its URL once live.

        ``pre_inference(sample, signature, metadata)`` and ``post_inference(prediction,
        signature, metadata)`` are any callables (lambdas and closures too). ``model_format``
        is ``onnx`` or ``tensorflow`` (default: ``onnx`` for a ``.onnx`` file, else
        ``tensorflow``); ``tf_serving_key`` is the SavedModel's signature key. Another API of
        the same deployment deployed earlier by this client stays; the same API is updated.
        Raises ``UsageError`` for arguments it cannot use (a ``model_path`` that does not
        exist, another ``model_format``, a function that cannot be pickled), before anything is
        deployed, and ``DeployFailedError`` with the reason when the API cannot go live; both
        are ``inferd.errors.InferdError``. Interrupted (Ctrl-C), it leaves the deployment's
        project as the operator runs it.
        """
        handlers = {"pre_inference": pre_inference, "post_inference": post_inference}
        for name, function in handlers.items():
            if function is not None and not callable(function):
                raise UsageError(f"{name} must be a function, not {type(function).__name__}")
        functions = {name: function for name, function in handlers.items() if function is not None}
        model_format = _model_format(str(model_path), model_format)
        _check_names(deployment_name, api_name)
        _check_model(str(model_path))
        pickled = pickle_functions(functions) if functions else None  # before anything starts
        try:
            with self._backend() as backend:
                with self._locked(deployment_name):
                    result = self._write_and_deploy(
                        backend,
                        deployment_name,
                        api_name,
                        str(model_path),
                        pickled if pickled is not None else {},
                        model_format,
                        tf_serving_key,
                    )
                return self._wait(backend, f"{deployment_name}/{api_name}", result, timeout)
        except OSError as exc:  # a home that is a file, or that cannot be written: as the CLI says it
            from inferd.storage import home_refusal

            refusal = home_refusal(exc, self.home)
            if refusal is None:
                raise
            raise UsageError(refusal) from None

    def _write_and_deploy(
        self,
        backend: Any,
        deployment: str,
        api: str,
        model_path: str,
        functions: dict[str, Callable[..., Any]] | bytes,
        model_format: str,
        tf_serving_key: str | None,
    ) -> dict[str, Any]:
        """Write the API into the deployment's project and hand that to the backend (its answer)."""
        # APIs removed since (`inferd delete`) are left out of the project, or they would come
        # back with this deploy. None listed: keep them all (an operator that has just started
        # lists a deployment only once it has restored it).
        deployed = {info["name"] for info in backend.apis() if info.get("deployment") == deployment}
        previous = self._set_aside(deployment, api)
        asked = False
        try:
            project = self._write_project(
                deployment, api, model_path, functions, model_format, tf_serving_key, deployed
            )
            asked = True
            result: dict[str, Any] = backend.deploy(project)
        except BaseException as error:
            # Refused (nothing deployed) or interrupted (Ctrl-C) while the project was written:
            # it goes back to what the operator runs, or every later deploy to this deployment
            # would be refused for this API, or (its folder gone or half written) would remove
            # it. Interrupted once the operator was asked, it stays: the operator goes on with
            # it whether or not this process waits (put back, the next deploy beside it sent the
            # previous version back).
            if isinstance(error, Exception) or not asked:
                self._put_back(deployment, api, previous)
            if isinstance(error, ConfigError):  # the config is ours: the arguments are wrong
                # (its file and line are the client's own cortex.yaml, which the user never wrote)
                reason = re.sub(r"^cortex\.yaml:\d+: (api '[^']*': )?", "", str(error))
                raise DeployFailedError(f"api '{deployment}/{api}' was not deployed: {reason}") from None
            if isinstance(error, ReplaceError):  # its advice (`--force`) is the CLI's
                raise DeployFailedError(
                    f"api '{deployment}/{api}' was not deployed: deployment '{deployment}' was deployed "
                    "from a project folder, whose other APIs this deploy would remove; deploy under "
                    f"another deployment name, or delete it first (inferd delete {deployment})"
                ) from None
            raise
        if previous is not None:
            shutil.rmtree(previous)
        return result

    @contextmanager
    def _locked(self, deployment: str) -> Iterator[None]:
        """One deploy at a time into a deployment's project, across threads and processes: two
        at once each wrote the project the other was deploying (and the operator refuses a
        deploy while another one of the same deployment is being applied)."""
        from inferd.storage.private import make_private_folders

        make_private_folders(self.home)  # the models and handlers it writes are the user's only
        locks = self.workspace / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        with (locks / deployment).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield

    # the project folder

    def _write_project(
        self,
        deployment: str,
        api: str,
        model_path: str,
        handlers: dict[str, Callable[..., Any]] | bytes,
        model_format: str,
        tf_serving_key: str | None,
        deployed: set[str] | None = None,
    ) -> Path:
        """Write ``api`` into the deployment's project; ``handlers``: its functions, or their
        pickle; ``deployed``: the deployment's APIs that the operator runs (the others'
        folders are removed; none given keeps them all)."""
        _check_names(deployment, api)  # they name folders this removes: never `..` or `/`
        _check_model(model_path)
        root = self.workspace / deployment
        folder = root / api
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if deployed:
            for other in root.iterdir():
                if other.name not in {api, *deployed} and (other / API_FILE).is_file():
                    shutil.rmtree(other)
        block: dict[str, Any] = {"model": model_path}
        if not model_path.startswith(REMOTE):
            source = Path(model_path).expanduser().resolve()
            target = folder / source.name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
            block["model"] = f"{api}/{source.name}"
        if handlers:
            pickled = handlers if isinstance(handlers, bytes) else pickle_functions(handlers)
            (folder / HANDLER_FILE).write_bytes(pickled)
            block["request_handler"] = f"{api}/{HANDLER_FILE}"
        if tf_serving_key is not None:
            block["signature_key"] = tf_serving_key
        (folder / API_FILE).write_text(json.dumps({"name": api, model_format: block}))
        _write_config(root, deployment)
        # Marked as deployed to this home's operator: `inferd prune` removes it once the
        # deployment is gone; one deployed to a Ray cluster (not in this home's state) it leaves.
        mark = root / CREATED_MARK
        if self.environment.is_local:
            mark.write_text("")
        else:
            mark.unlink(missing_ok=True)
        return root

    def _set_aside(self, deployment: str, api: str) -> Path | None:
        """Move the API's current folder out of the project (put back if the deploy is refused)."""
        folder = self.workspace / deployment / api
        if not folder.is_dir():
            return None
        aside = self.workspace / ".previous" / deployment / api
        if aside.exists():
            shutil.rmtree(aside)
        aside.parent.mkdir(parents=True, exist_ok=True)
        folder.rename(aside)
        return aside

    def _put_back(self, deployment: str, api: str, previous: Path | None) -> None:
        root = self.workspace / deployment
        folder = root / api
        if folder.exists():
            shutil.rmtree(folder)
        if previous is not None:
            previous.rename(folder)
        _write_config(root, deployment)

    # deploying and waiting

    @contextmanager
    def _backend(self) -> Iterator[Any]:
        """The operator (started when it is not running) or the Ray cluster to deploy to."""
        if not self.environment.is_local:
            from inferd.engine.ray.backend import RayBackend

            yield RayBackend(self.environment)
            return
        from inferd.client import Client as OperatorClient

        backend = OperatorClient(self.home)
        try:
            backend.start()
            yield backend
        finally:
            backend.close()  # its connection to the operator (a long-lived caller keeps none)

    def _wait(self, backend: Any, key: str, result: dict[str, Any], timeout: float) -> str:
        from inferd.cli.outcome import judge

        name = key.partition("/")[2]
        version = (result.get("versions") or {}).get(name)
        deadline = time.monotonic() + timeout
        while True:
            info: dict[str, Any] = backend.api(key)
            outcome = judge(name, info, version)
            if outcome.done:
                if outcome.failed:
                    raise DeployFailedError(_in_the_clients_words(outcome.failure))
                return str(info["url"])
            if time.monotonic() > deadline:
                raise DeployFailedError(f"api '{key}' is not live after {timeout:.0f}s: {info['status']}")
            time.sleep(POLL_SECONDS)


def _in_the_clients_words(failure: str) -> str:
    """A deploy's failure as the caller of ``deploy`` acts on it: the signature key is the
    ``tf_serving_key`` argument, not the ``signature_key`` of a cortex.yaml the client wrote."""
    return failure.replace("set tensorflow.signature_key to one of:", "pass tf_serving_key, one of:").replace(
        "failed (error): signature_key '", "failed (error): tf_serving_key '"
    )


def _write_config(root: Path, deployment: str) -> None:
    """The deployment's cortex.yaml: every API folder of the project."""
    apis = [
        json.loads((path / API_FILE).read_text())
        for path in sorted(root.iterdir())
        if (path / API_FILE).is_file()
    ]
    resources = [{"kind": "deployment", "name": deployment}, *({"kind": "api", **a} for a in apis)]
    (root / "cortex.yaml").write_text(json.dumps(resources, indent=2) + "\n")  # JSON is YAML


def _check_model(model_path: str) -> None:
    if not model_path.startswith(REMOTE) and not Path(model_path).expanduser().exists():
        raise UsageError(f"model_path {model_path} does not exist")


def _model_format(model_path: str, model_format: str | None) -> str:
    if model_format is None:
        return "onnx" if model_path.lower().endswith(".onnx") else "tensorflow"
    if model_format not in FORMATS:
        raise UsageError(f"model_format must be 'onnx' or 'tensorflow', not {model_format!r}")
    return model_format

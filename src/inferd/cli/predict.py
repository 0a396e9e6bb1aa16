"""``inferd predict``: send a JSON sample to an API (or a traffic splitter) and print the answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from inferd.cli.api_http import post_sample
from inferd.cli.backends import Backend, backend_for
from inferd.cli.inspect import resolve
from inferd.cli.options import deployment_option, env_option, in_deployment, key_option
from inferd.cli.traffic import find_splitter
from inferd.client import Client
from inferd.errors import InferdError, NotFoundError, OperatorError, UsageError

if TYPE_CHECKING:
    import requests

    from inferd.environments import Environment


def _read_by_apis(body: bytes) -> bool:
    """Whether an API reads ``body`` although orjson does not (NaN, Infinity: Python's json)."""
    from inferd import codec
    from inferd.errors import InputError

    try:
        codec.loads(body)
    except InputError:
        return False
    return True


@click.command()
@click.argument("api")
@click.argument("sample", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--debug", is_flag=True, help="Log every stage of the pipeline in the API's log.")
@key_option
@deployment_option
@env_option
def predict(
    api: str, sample: Path, debug: bool, api_key: str | None, deployment: str | None, env: Environment
) -> None:
    """Send a JSON sample to an API and print the prediction.

    API is a name (or a unique prefix of one), or DEPLOYMENT/API when several deployments have
    an API of that name; or a traffic splitter's name (the API it picks answers). SAMPLE is a
    JSON file, or - for standard input.

    \b
    Examples:
      inferd predict classifier examples/iris-onnx/sample.json
      inferd predict classifier - < examples/iris-onnx/sample.json   # the sample on stdin
      inferd predict iris/classifier examples/iris-onnx/sample.json
      inferd predict classifier sample.json -d iris   # Cortex's -d
      inferd predict guarded sample.json --key "$MY_KEY"   # an API with auth:
    """
    stdin = str(sample) == "-"
    body = sys.stdin.buffer.read() if stdin else sample.read_bytes()
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # say so here, not as the API's 400 about "its" input
        if not _read_by_apis(body):
            where = "stdin" if stdin else sample
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as bad:  # orjson's message spoke of surrogates, at column 1
                raise UsageError(
                    f"{where} is not UTF-8 text (byte 0x{body[bad.start]:02x} at offset {bad.start}): "
                    "a sample is a JSON request body, sent as UTF-8"
                ) from None
            raise UsageError(f"{where} is not JSON ({exc}): a sample is a JSON request body") from None
    api = in_deployment(api, deployment)
    client = backend_for(env)
    info = _target(client, api)
    response = post_sample(info["url"], body, debug=debug, key=api_key, stream=True, local=env.is_local)
    name = response.headers.get("X-Inferd-Api", info["name"])  # through a splitter: the API that answered
    with response:
        if response.ok and response.headers.get("content-type") == "application/x-ndjson":
            _print_stream(name, response)
            return
        _print_answer(name, response, info.get("error"))


def _print_answer(name: str, response: requests.Response, error: str | None = None) -> None:
    """Print an answer, or raise one line for an error (``error``: why the API cannot serve, as
    ``inferd get`` says; on Ray, Serve's proxy answers a failed API's requests, not inferd)."""
    import requests

    try:
        response.content  # noqa: B018 (read whole here: a cut-off answer is said as one line)
    except requests.RequestException as exc:
        raise OperatorError(f"cannot reach {response.url}: {exc}") from None
    answer: Any
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    if response.status_code >= 400:
        said = answer.get("error") if isinstance(answer, dict) else None
        if said is None and response.status_code == 503 and error:  # Serve's, in the gateway's words
            raise InferdError(f"api '{name}' is not ready: {error} (503)")
        message = str(answer if said is None else said)
        if message.startswith(f"api '{name}' "):  # the gateway named the API already
            raise InferdError(f"{message} ({response.status_code})")
        raise InferdError(f"api '{name}' answered {response.status_code}: {message}")
    click.echo(_pretty(answer))
    sys.stdout.flush()


def _pretty(answer: Any) -> str:
    """The answer as `cortex predict` printed it (Go's json.MarshalIndent): keys sorted, text in
    UTF-8; escaped only where stdout cannot write it."""
    text = json.dumps(answer, indent=2, sort_keys=True, ensure_ascii=False)
    try:
        text.encode(getattr(sys.stdout, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return json.dumps(answer, indent=2, sort_keys=True)
    return text


def _target(client: Backend, name: str) -> dict[str, Any]:
    """What ``inferd predict NAME`` posts to: the API ``name`` names, or the traffic splitter of
    that very name (which beats an API whose name only begins with it)."""
    try:
        key = resolve(client, name)
    except NotFoundError:
        splitter = _splitter(client, name) if isinstance(client, Client) else None
        if splitter is None:
            raise
        return splitter
    if key.partition("/")[2] != name.rpartition("/")[2] and isinstance(client, Client):
        splitter = _splitter(client, name)
        if splitter is not None:
            return splitter
    return client.api(key)


def _splitter(client: Client, name: str) -> dict[str, Any] | None:
    """The name and URL of the traffic splitter ``name`` names (``None``: none does)."""
    try:
        deployment, bare, apis = find_splitter(client, name)
    except NotFoundError:
        return None
    endpoint = next(
        s["endpoint"] for s in client.splitters() if (s["deployment"], s["name"]) == (deployment, bare)
    )
    first = client.api(f"{deployment}/{apis[0]}")  # the gateway's address, from one of its APIs
    return {"name": bare, "url": str(first["url"])[: -len(first["endpoint"])] + endpoint}


def _print_stream(name: str, response: requests.Response) -> None:
    """A streamed answer (NDJSON): each item on its line as it arrives; a last ``{"error": ...}``
    line fails."""
    import requests

    try:
        for line in response.iter_lines():
            if not line:
                continue
            item = json.loads(line)
            if isinstance(item, dict) and list(item) == ["error"]:
                raise InferdError(f"api '{name}' failed mid-stream: {item['error']}")
            click.echo(json.dumps(item))
            sys.stdout.flush()
    except requests.RequestException as exc:
        raise InferdError(f"api '{name}': the stream was cut off: {exc}") from None

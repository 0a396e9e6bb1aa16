"""The developer's loop: ``inferd init`` (a new project) and ``inferd test`` (samples in-process)."""

from __future__ import annotations

import functools
import json
import logging
import shlex
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from inferd.cli.options import relax_pins_option
from inferd.errors import InferdError, UsageError

if TYPE_CHECKING:
    from inferd.config.schema import Project

SHOWN_LIMIT = 2000


def _shown(value: Any) -> str:
    """An answer as the client receives its JSON: an integer beyond 64 bits too (orjson's
    TypeError ended the run), a lone surrogate as its escape."""
    from inferd import codec

    text = codec.dumps_answer(value).decode()
    return text if len(text) <= SHOWN_LIMIT else text[:SHOWN_LIMIT] + "..."


def _read_json(path: Path, limit: int | None = None) -> Any:
    """A sample (or expected answer) as the APIs read a body: NaN and Infinity included.

    ``limit``: the largest body an API of the project takes; a larger sample is refused unread
    (a 20 GiB sample.json was read whole into memory).
    """
    from inferd import codec
    from inferd.errors import InputError
    from inferd.operator.prune import human_bytes

    try:
        size = path.stat().st_size
        if limit is not None and size > limit:
            raise UsageError(
                f"{path} is {human_bytes(size)}; no API of the project takes a request body over "
                f"{human_bytes(limit)} (max_body_size), so it could never be sent to one"
            )
        body = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return codec.loads(body)  # an integer beyond 64 bits as written too (orjson: a float)
    except InputError:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:  # its message says where the JSON goes wrong
            raise UsageError(f"{path} is not valid JSON: {exc}") from None
        raise


def _distance(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    """A tolerance: a number 0 or above (not NaN, which no difference is within)."""
    if not value >= 0:
        raise click.BadParameter(f"{value} is not a distance: give a number 0 or above")
    return value


@click.command("test")
@click.argument("project_dir", default=".", type=click.Path(path_type=Path))
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--api", "api_name", help="Test this API only (default: every API of the project).")
@click.option(
    "--tolerance",
    type=float,
    default=1e-6,
    callback=_distance,
    show_default=True,
    help="How far numbers may be from expected*.json (absolute, or relative to the expected value).",
)
@relax_pins_option
def test(
    project_dir: Path, files: tuple[Path, ...], api_name: str | None, tolerance: float, relax_pins: bool
) -> None:
    """Run samples through each API's handlers and model in this process (no server).

    Runs every sample*.json of the project folder (or the FILES given) through
    pre_inference, the model and post_inference (or predict), and prints each answer. When
    expected<name>.json lies beside sample<name>.json, the answer must match it (numbers
    within --tolerance); any difference or error exits 1, as does an expected<name>.json
    with no sample<name>.json. Handler errors show the traceback down to your line.

    \b
    Examples:
      inferd test examples/iris-onnx
      inferd test . my-request.json --api classifier
      inferd test my-cortex-project --relax-pins   # 2019 pins, as inferd serve and deploy
    """
    from inferd.config.load import load_project
    from inferd.testing import samples_in, unmatched_expected_in

    project = load_project(project_dir)
    if relax_pins:
        project = project.relaxed()
    samples = list(files) or samples_in(project.root)
    # Only for the folder's own samples: FILES named on the command line are the whole run.
    unmatched = [] if files else unmatched_expected_in(project.root)
    if not samples:
        raise UsageError(f"no sample*.json in {project_dir}: add one, or name the sample files to run")
    limit = max(config.api.body_limit for config in project.apis) if project.apis else None
    bodies = {sample: _read_json(sample, limit) for sample in samples}
    # The traceback is shown below, trimmed to the user's frames; no second copy from the log.
    handler_log = logging.getLogger("inferd.handler")
    quiet = logging.NullHandler()
    handler_log.addHandler(quiet)
    handler_log.propagate = False
    try:
        passed, failed = _run(project, samples, bodies, api_name, tolerance)
    finally:
        handler_log.propagate = True
        handler_log.removeHandler(quiet)
    for path in unmatched:
        failed += 1
        sample = "sample" + path.name[len("expected") :]
        click.echo(f"{path.name}: no {sample} beside it, so nothing was compared with it")
    total = passed + failed
    if failed:
        click.echo(f"{failed} of {total} failed")
        raise SystemExit(1)
    click.echo(f"{passed} passed")


def _run(
    project: Project, samples: list[Path], bodies: dict[Path, Any], api_name: str | None, tolerance: float
) -> tuple[int, int]:
    """Each sample through each API, its answer printed and checked: (passed, failed)."""
    from inferd import codec
    from inferd.testing import build_api, differences, expected_for, select_apis, user_traceback

    failed = passed = 0
    for config in select_apis(project, api_name, one=False):
        try:
            api = build_api(project, config, functools.partial(_warn, config.name))
        except InferdError as exc:
            failed += len(samples)
            summary, _, detail = exc.message.partition("\n")
            click.echo(f"{config.name}: cannot load: {summary}")
            shown = user_traceback(exc) if exc.__cause__ is not None else detail
            if shown:
                click.echo(textwrap.indent(shown, "  "))
            continue
        for sample in samples:
            label = f"{config.name}  {sample.name}"
            try:
                answer = api.predict(bodies[sample])
            except InferdError as exc:
                failed += 1
                click.echo(f"{label}: error: {exc.message}")
                if exc.__cause__ is not None:
                    click.echo(textwrap.indent(user_traceback(exc), "  "))
                continue
            expected_file = expected_for(sample)
            if expected_file is None:
                passed += 1
                click.echo(f"{label}: {_shown(answer)}")
                continue
            # as a client receives it: NaN and Infinity in the answer are null (codec.dumps_answer)
            # (json: an integer beyond 64 bits as written, as the answer is read)
            expected = json.loads(codec.dumps_answer(_read_json(expected_file)))
            found = differences(answer, expected, tolerance)
            if not found:
                passed += 1
                click.echo(f"{label}: {_shown(answer)}  (matches {expected_file.name})")
                continue
            failed += 1
            click.echo(f"{label}: {_shown(answer)}")
            click.echo(f"  differs from {expected_file.name}:")
            for line in found[:20]:
                click.echo(f"    {line}")
            if len(found) > 20:
                click.echo(f"    ... and {len(found) - 20} more")
    return passed, failed


def _warn(api: str, text: str) -> None:
    """Say a warning of ``api``'s requirements.txt, as ``inferd serve`` and ``deploy`` do."""
    click.echo(f"{api}: warning: {text}", err=True)


@click.command("init")
@click.argument("project_dir", type=click.Path(path_type=Path))
@click.option(
    "--onnx", "onnx", is_flag=True, help="An ONNX model (the default, but for a SavedModel given to --model)."
)
@click.option("--tensorflow", "tensorflow", is_flag=True, help="A TensorFlow SavedModel.")
@click.option("--predictor", "predictor", is_flag=True, help="A Python predictor (init/predict).")
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="Your model (a .onnx file, with the external data files it names, or a .zip of them; a "
    "SavedModel folder or its .zip, which makes a TensorFlow project; any file for a predictor), copied in. "
    "Without it the project gets a small starter model, built on the spot.",
)
def init(project_dir: Path, onnx: bool, tensorflow: bool, predictor: bool, model: Path | None) -> None:
    """Write a new project folder that `inferd serve` runs at once.

    It holds a commented cortex.yaml, a handler (or predictor) with its hooks documented, the
    model, and sample.json. Without --model the starter model classifies iris flowers, and
    expected.json and a pytest file come with it.

    \b
    Examples:
      inferd init my-api                                   # ONNX, starter model
      inferd init my-api --model ~/models/churn.onnx       # your ONNX model
      inferd init my-api --model export/1                  # your SavedModel (--tensorflow is implied)
      inferd init my-api --predictor
    """
    from inferd.scaffold import flavour_of, init_project

    chosen = [
        name
        for name, given in (("onnx", onnx), ("tensorflow", tensorflow), ("predictor", predictor))
        if given
    ]
    if len(chosen) > 1:
        raise UsageError(f"--{chosen[0]} and --{chosen[1]} ask for two kinds of project: choose one")
    flavour = chosen[0] if chosen else flavour_of(model)  # a SavedModel given: a TensorFlow project
    if flavour == "tensorflow" and model is None:
        click.echo("building the starter TensorFlow model (importing TensorFlow takes a while) ...")
    written = init_project(project_dir, flavour, model)
    click.echo(f"wrote a new {flavour} project in {project_dir}:")
    for name in written:
        click.echo(f"  {name}")
    # Commands to paste into a shell: a folder with a space is quoted, one named -x not an option.
    shown = str(project_dir)
    shown = shlex.quote(f"./{shown}" if shown.startswith("-") else shown)
    click.echo("next:")
    click.echo(f"  inferd serve {shown} --reload     # edits roll out as you save")
    click.echo(f"  inferd test {shown}               # sample.json through the API, no server")

"""``inferd export DIR --kubernetes OUT [--ray]``: a Docker build context and manifests."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path

import click
from packaging.requirements import Requirement

from inferd import __version__
from inferd.cli.options import relax_pins_option
from inferd.config.load import load_project
from inferd.config.schema import Project
from inferd.engine import build_context, kuberay
from inferd.engine import kubernetes as k8s
from inferd.engine.ray import plan
from inferd.errors import UsageError
from inferd.operator.snapshots import copy_sparse, key_files
from inferd.storage import project_files

EXTRAS = ("all", "onnx", "tensorflow", "gpu", "cortex")
# What `pip install inferd` installs besides the modules (pyproject.toml's package-data: the
# dashboard's page) and its commands: the image's inferd is built with the same, and with the
# `cortex` package beside inferd (Cortex's client and the `cortex.lib.log` its handlers import).
PACKAGE_DATA = {"inferd": ["py.typed", "operator/static/*"], "cortex": ["py.typed"]}
SCRIPTS = {"inferd": "inferd.cli.main:main", "cortex": "inferd.cli.main:main"}
# An image reference as `docker build -t` and Kubernetes take it (the grammar of
# distribution/reference): [REGISTRY[:PORT]/]NAME[:TAG][@DIGEST], NAME's parts in lower case.
_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_NAME_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = re.compile(
    rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?/)?{_NAME_PART}(?:/{_NAME_PART})*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)


def _image_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An image name Docker and Kubernetes take: was written as given into every manifest (an
    InvalidImageName in the cluster) and into the README's `docker build -t` line."""
    if value is None:
        return None
    head, slash, last = value.partition("@")[0].rpartition("/")
    name = head + slash + last.partition(":")[0]  # without its tag and digest: 255 at most
    if not IMAGE.fullmatch(value) or len(name) > 255:
        raise click.BadParameter(
            f"{value!r} is not an image name (as `docker build -t` takes it: "
            "[REGISTRY/]NAME[:TAG], NAME in lower case)"
        )
    return value


def image_extras(project: Project) -> str:
    """The extras the image installs: the CUDA runtimes (``gpu``) when an API asks for a GPU,
    else the CPU ones (``all``); and ``cortex`` (what Cortex's image pre-installed) when this
    inferd has it, so that handlers importing those packages run in the pods as they run here."""
    runtimes = "gpu" if any(config.api.compute.gpu for config in project.apis) else "all"
    return f"{runtimes},cortex" if _has_extra("cortex") else runtimes


def _has_extra(extra: str) -> bool:
    try:
        requires = metadata.requires("inferd") or []
    except metadata.PackageNotFoundError:
        return False
    names = [
        Requirement(line).name
        for line in requires
        if re.search(rf"extra\s*==\s*['\"]{extra}['\"]", line.partition(";")[2])
    ]
    try:
        return bool(names) and all(metadata.version(name) for name in names)
    except metadata.PackageNotFoundError:
        return False


def inferd_pyproject() -> str:
    """A pyproject for the inferd source copied into the build context (installed metadata:
    the same dependencies and runtime extras as this inferd)."""
    try:
        requires = metadata.requires("inferd") or []
    except metadata.PackageNotFoundError:
        requires = []
    base: list[str] = []
    extras: dict[str, list[str]] = {}
    for line in requires:
        spec, _, marker = line.partition(";")
        found = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", marker)
        if found is None:
            base.append(spec.strip())
        elif found.group(1) in EXTRAS:
            extras.setdefault(found.group(1), []).append(spec.strip())
    lines = [
        "[build-system]",
        'requires = ["setuptools>=69", "wheel"]',
        'build-backend = "setuptools.build_meta"',
        "",
        "[project]",
        'name = "inferd"',
        f'version = "{__version__}"',
        'requires-python = ">=3.11"',
        "dependencies = [" + ", ".join(f'"{r}"' for r in base) + "]",
        "",
        "[project.optional-dependencies]",
        *(f"{name} = [" + ", ".join(f'"{r}"' for r in specs) + "]" for name, specs in sorted(extras.items())),
        "",
        "[project.scripts]",
        *(f'{name} = "{target}"' for name, target in SCRIPTS.items()),
        "",
        "[tool.setuptools.packages.find]",
        'where = ["src"]',
        "",
        "[tool.setuptools.package-data]",
        *(f"{name} = " + json.dumps(patterns) for name, patterns in PACKAGE_DATA.items()),
    ]
    return "\n".join(lines) + "\n"


def _package_files(package: Path, data: list[str]) -> list[Path]:
    """The package's modules and the files of ``data`` (package-data patterns)."""
    return [
        path
        for path in project_files(package)
        if path.suffix == ".py" or any(path.relative_to(package).match(pattern) for pattern in data)
    ]


def _copy_tree(files: list[Path], root: Path, target: Path) -> None:
    for path in files:
        destination = target / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        copy_sparse(path, destination)  # a sparse file was written in full


MARKER = ".inferd-export"


def prepare_folder(out: Path, project: Project) -> None:
    """Make ``out`` ready for an export: empty, or one inferd wrote before (its marker file).

    Only the files the earlier export listed in its marker are removed; anything else stays.
    Raises ``UsageError`` (one sentence, nothing touched) for any other folder.
    """
    root = project.root
    target = out.resolve()
    if target == root or root in target.parents:
        raise UsageError(f"--kubernetes {out} must be outside the project folder")
    if target in root.parents:
        raise UsageError(f"--kubernetes {out} holds the project folder; choose an empty folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--kubernetes {out} is a file, not a folder")
    entries = list(out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    marker = out / MARKER
    try:
        listed = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(
            f"--kubernetes {out} is not empty and was not written by inferd export; "
            "choose an empty or new folder"
        ) from None
    for relative in listed:
        path = (out / str(relative)).resolve()
        if target in path.parents and path.is_file() and not path.is_symlink():
            path.unlink()
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()


def write_export(project: Project, out: Path, ray: bool, image: str, relax_pins: bool = False) -> list[Path]:
    """Write the build context and manifests into ``out``; the files written. ``relax_pins``: as
    ``inferd deploy --relax-pins`` (or the deployment's ``relax_pins``) for the image's install."""
    if ray:
        plan.check_supported(project)  # as `inferd deploy -e` on a Ray cluster
    else:
        k8s.check_exportable(project)
    prepare_folder(out, project)
    out.mkdir(parents=True, exist_ok=True)
    secret = key_files(project)
    files = [path for path in project_files(project.root) if path.resolve() not in secret]
    _copy_tree(files, project.root, out / "project")
    packages = Path(plan.__file__).resolve().parents[3]  # site-packages, or the checkout's src
    for name, data in PACKAGE_DATA.items():
        _copy_tree(_package_files(packages / name, data), packages / name, out / "inferd/src" / name)
    (out / "inferd/pyproject.toml").write_text(inferd_pyproject())
    ray_version = _ray_version() if ray else None
    (out / "Dockerfile").write_text(
        build_context.dockerfile(
            ray_version,
            relax_pins or project.deployment.relax_pins,
            image_extras(project),
            requirements=any(config.api.installs_requirements for config in project.apis),
        )
    )
    manifests = out / "kubernetes"
    manifests.mkdir(exist_ok=True)
    if ray:
        assert ray_version is not None
        (manifests / "rayservice.yaml").write_text(
            k8s.dump_all([kuberay.ray_service(project, image, ray_version)])
        )
    else:
        single: dict[str, str] = {}
        if len(project.apis) > 1:  # each API's pods serve that API only
            single = k8s.single_api_configs(project.config_file.read_text(encoding="utf-8"))
        for config in project.apis:
            project_path = k8s.PROJECT_IN_IMAGE
            if single:
                name = f"inferd-{config.name}.yaml"
                (out / "project" / name).write_text(single[config.name])
                project_path = f"{k8s.PROJECT_IN_IMAGE}/{name}"
            documents = k8s.api_manifests(config, image, project_path)
            (manifests / f"{config.name}.yaml").write_text(k8s.dump_all(documents))
    (out / "README.md").write_text(build_context.readme(project, image, ray))
    written = sorted(path for path in out.rglob("*") if path.is_file() and path.name != MARKER)
    listed = [str(path.relative_to(out)) for path in written]
    (out / MARKER).write_text(json.dumps({"files": listed}, indent=1) + "\n", encoding="utf-8")
    return written


def _ray_version() -> str:
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return kuberay.DEFAULT_RAY_VERSION


@click.command("export")
@click.argument("project_dir", type=click.Path(path_type=Path))
@click.option(
    "--kubernetes",
    "out",
    required=True,
    metavar="OUT",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the Dockerfile, the build context and the manifests into.",
)
@click.option("--ray", is_flag=True, help="A KubeRay RayService instead of Deployments of `inferd serve`.")
@click.option(
    "--image",
    default=None,
    callback=_image_name,
    help="Image name the manifests use (default inferd-<deployment>:latest).",
)
@relax_pins_option
def export(project_dir: Path, out: Path, ray: bool, image: str | None, relax_pins: bool) -> None:
    """Write a Dockerfile and Kubernetes manifests for a project.

    OUT must be new, empty, or a folder an earlier export wrote (it keeps a .inferd-export
    list of its files: only those are replaced). API key files (auth.keys_file) are not copied.

    Per API: a Deployment of pods running `inferd serve` (inferd's gateway and replicas),
    a Service and a HorizontalPodAutoscaler. With --ray: one KubeRay RayService. OUT/README.md
    says how to build the image and apply the manifests.

    \b
    Examples:
      inferd export examples/iris-onnx --kubernetes build/iris
      inferd export examples/iris-onnx --kubernetes build/iris-ray --ray
    """
    project = load_project(project_dir)
    image = image or f"inferd-{project.deployment.name}:latest"
    written = write_export(project, out, ray, image, relax_pins)
    for warning in plan.unapplied(project) if ray else k8s.unapplied(project):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote {len(written)} files into {out} (see {out / 'README.md'})")

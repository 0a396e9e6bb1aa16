"""The project schema: Cortex v0.10's ``cortex.yaml`` resources with their defaults, plus extensions.

Every field carries a description; unknown keys are errors. An api's blocks besides its model
are in ``blocks.py``; the rules that span the project and its files in ``rules.py``. After this
layer only these typed objects travel, never raw dicts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from inferd.config.blocks import (
    Auth,
    Autoscaling,
    Batching,
    Block,
    Compute,
    Count,
    Number,
    PayloadLog,
    Shadow,
    Tracker,
)
from inferd.config.names import canonical_endpoint, dns_1035, dns_1123
from inferd.config.quantity import parse_quantity

URI_SCHEMES = ("s3://", "gs://", "gcs://", "http://", "https://")


class FieldError(Exception):
    """A project-level rule failed at ``location`` (a path into the YAML document)."""

    def __init__(self, location: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


def _metadata_keys(value: dict[Any, Any]) -> dict[str, Any]:
    for key in value:
        if not isinstance(key, str):
            raise ValueError(f"keys must be strings (found {key!r})")
    return value


V09_HANDLERS = (
    "Cortex v0.9's handler arguments: pre_inference(sample, signature) and "
    "post_inference(prediction, signature); set by v0.9's flat form (model: on the api)"
)
V09_KEYS = ("model", "model_format", "request_handler", "tf_signature_key", "tags")


def from_v09(data: dict[Any, Any]) -> dict[Any, Any]:
    """Cortex v0.9's flat api (``model``, ``model_format``, ``request_handler``,
    ``tf_signature_key``, ``tags``) as v0.10's nested ``tensorflow:`` / ``onnx:`` block."""
    if not any(key in data for key in V09_KEYS):
        return data
    if any(key in data for key in ("tensorflow", "onnx", "predictor")):
        raise ValueError(
            "use either Cortex v0.9's flat model/model_format/request_handler or a "
            "tensorflow/onnx/predictor block, not both"
        )
    model = data.get("model")
    if not isinstance(model, str):
        raise ValueError("model: required (a string) in Cortex v0.9's flat form")
    default = "onnx" if model.endswith(".onnx") else "tensorflow"
    model_format = data.get("model_format") or default
    if model_format not in ("tensorflow", "onnx"):
        raise ValueError(f"model_format: must be tensorflow or onnx (found {model_format!r})")
    block: dict[str, Any] = {"model": model, "v09_handlers": True}
    if data.get("request_handler") is not None:
        block["request_handler"] = data["request_handler"]
    if data.get("tf_signature_key") is not None:
        if model_format == "onnx":
            raise ValueError("tf_signature_key: only for a tensorflow model")
        block["signature_key"] = data["tf_signature_key"]
    nested = {key: value for key, value in data.items() if key not in V09_KEYS}
    nested[model_format] = block
    return nested


class TensorFlowSpec(Block):
    """``tensorflow:``: a TensorFlow SavedModel served in-process."""

    model: str = Field(description="SavedModel folder, a parent of numeric version folders, or a .zip")
    request_handler: str | None = Field(None, description="Python file with pre/post_inference")
    signature_key: str | None = Field(None, description="SignatureDef to serve")
    python_path: str | None = Field(None, description="Folder added to sys.path for the handler")
    metadata: dict[Any, Any] = Field(default_factory=dict, description="Passed to the handlers")
    full_shapes: bool = Field(
        False,
        description="inferd extension: give handlers outputs in their full shapes instead of "
        "flattened to one dimension as Cortex did",
    )
    v09_handlers: bool = Field(False, description=V09_HANDLERS)

    _keys = field_validator("metadata")(_metadata_keys)


class OnnxSpec(Block):
    """``onnx:``: an ONNX model served with onnxruntime."""

    model: str = Field(description="Path or URI of the .onnx file")
    request_handler: str | None = Field(None, description="Python file with pre/post_inference")
    python_path: str | None = Field(None, description="Folder added to sys.path for the handler")
    metadata: dict[Any, Any] = Field(default_factory=dict, description="Passed to the handlers")
    tensorrt: bool = Field(
        False,
        description="inferd extension: on a GPU, try TensorRT's execution provider before CUDA's "
        "(used when onnxruntime has it)",
    )
    v09_handlers: bool = Field(False, description=V09_HANDLERS)

    _keys = field_validator("metadata")(_metadata_keys)


class PredictorSpec(Block):
    """``predictor:``: a Python file with ``init(model_path, metadata)`` and ``predict``."""

    path: str = Field(description="Python file defining predict(sample, metadata)")
    model: str | None = Field(None, description="File or folder handed to init() as model_path")
    python_path: str | None = Field(None, description="Folder added to sys.path for the predictor")
    metadata: dict[Any, Any] = Field(default_factory=dict, description="Passed to init and predict")

    _keys = field_validator("metadata")(_metadata_keys)


class Api(Block):
    """``kind: api``: one model served at one endpoint."""

    kind: Literal["api"] = Field(description="Always 'api'")
    name: str = Field(description="DNS-1035 name, unique in the file")
    endpoint: str | None = Field(None, description="URL path (default /<deployment>/<api>)")
    tensorflow: TensorFlowSpec | None = Field(None, description="A TensorFlow SavedModel")
    onnx: OnnxSpec | None = Field(None, description="An ONNX model")
    predictor: PredictorSpec | None = Field(None, description="A Python predictor")
    tracker: Tracker | None = Field(None, description="Prediction monitoring")
    compute: Compute = Field(default_factory=Compute, description="Resources and replicas")
    autoscaling: Autoscaling = Field(
        default_factory=Autoscaling, description="inferd extension: how replicas follow the load"
    )
    max_queue_length: Count = Field(
        1000, ge=1, description="inferd extension: requests that may wait for a replica; beyond, 503"
    )
    timeout: Number = Field(
        60.0,
        gt=0,
        le=86400,
        description="inferd extension: seconds a request (or a whole stream) may take (queue + run); 504",
    )
    item_timeout: Number | None = Field(
        None,
        gt=0,
        le=86400,
        description="inferd extension: seconds a stream may go between two items (default: timeout)",
    )
    max_body_size: str | int = Field("10Mi", description="inferd extension: largest request body; 413")
    auth: Auth | None = Field(None, description="inferd extension: API keys")
    batching: Batching | None = Field(None, description="inferd extension: adaptive batching")
    payload_log: PayloadLog | None = Field(
        None, description="inferd extension: record sampled requests and answers (off by default)"
    )
    shadow: Shadow | None = Field(
        None, description="inferd extension: copy requests to another API and record its answers"
    )

    @field_validator("max_body_size", mode="before")
    @classmethod
    def _body_size(cls, value: object) -> object:
        if parse_quantity(value) < 1:
            raise ValueError("must be at least 1 byte")
        return value

    @property
    def body_limit(self) -> int:
        return int(parse_quantity(self.max_body_size))

    _name = field_validator("name")(dns_1035)
    _endpoint = field_validator("endpoint")(canonical_endpoint)

    @model_validator(mode="before")
    @classmethod
    def _flat_v09(cls, data: Any) -> Any:
        return from_v09(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _one_format(self) -> Api:
        count = sum(block is not None for block in (self.tensorflow, self.onnx, self.predictor))
        if count == 0:
            raise ValueError("please specify a model format (tensorflow, onnx, or predictor)")
        if count > 1:
            raise ValueError("please specify only one model format (tensorflow, onnx, or predictor)")
        return self

    @model_validator(mode="after")
    def _interval_within_timeout(self) -> Api:
        # A partial batch that waited past its requests' timeout answered them 504, replica idle.
        interval = self.batching.batch_interval if self.batching is not None else 0
        if interval >= self.timeout:
            raise ValueError(
                f"batching.batch_interval ({interval:g}s) must be less than timeout ({self.timeout:g}s): "
                "a request waiting that long for company would time out"
            )
        return self

    def shown(self) -> dict[str, Any]:
        """The config as ``inferd get -v`` shows it, locally and on Ray: defaults filled in, unset
        fields left out, ``init_replicas`` the replicas it starts with (as Cortex's -v showed it)."""
        shown = self.model_dump(mode="json", exclude_none=True)
        start = self.compute.model_copy(update={"init_replicas": self.compute.replicas_at_start})
        shown["compute"] = start.model_dump(mode="json", exclude_none=True)
        return shown

    @property
    def model_format(self) -> Literal["tensorflow", "onnx", "predictor"]:
        if self.tensorflow is not None:
            return "tensorflow"
        if self.onnx is not None:
            return "onnx"
        return "predictor"

    @property
    def model_uri(self) -> str | None:
        block = self.tensorflow or self.onnx or self.predictor
        assert block is not None
        return block.model

    @property
    def handler_file(self) -> str | None:
        """The user's Python file: the request handler or the predictor."""
        if self.predictor is not None:
            return self.predictor.path
        block = self.tensorflow or self.onnx
        assert block is not None
        return block.request_handler

    @property
    def installs_requirements(self) -> bool:
        """Whether the project's ``requirements.txt`` is installed for this API: only when it
        runs the user's Python (a request handler or a predictor), as in Cortex, whose operator
        downloaded the project (and so its requirements.txt) for those alone."""
        return self.handler_file is not None

    @property
    def v09_handlers(self) -> bool:
        """Whether the handlers take Cortex v0.9's arguments (sample/prediction, signature)."""
        block = self.tensorflow or self.onnx
        return block is not None and block.v09_handlers

    @property
    def python_path(self) -> str | None:
        block = self.tensorflow or self.onnx or self.predictor
        assert block is not None
        return block.python_path

    @property
    def metadata(self) -> dict[str, Any]:
        block = self.tensorflow or self.onnx or self.predictor
        assert block is not None
        return block.metadata


class SplitterApi(Block):
    """One entry of a traffic splitter's ``apis``."""

    name: str = Field(description="An API of the project")
    weight: Count = Field(ge=0, le=100, description="Percent of the splitter's requests it gets")


class TrafficSplitter(Block):
    """``kind: traffic_splitter`` (Cortex's later shape): one endpoint over several APIs by weight."""

    kind: Literal["traffic_splitter"] = Field(description="Always 'traffic_splitter'")
    name: str = Field(description="DNS-1035 name, unique among the APIs and splitters of the file")
    endpoint: str | None = Field(None, description="URL path (default /<deployment>/<splitter>)")
    apis: tuple[SplitterApi, ...] = Field(min_length=1, description="The APIs and their weights")
    shadow: Shadow | None = Field(
        None, description="inferd extension: copy requests to another API and record its answers"
    )

    _name = field_validator("name")(dns_1035)
    _endpoint = field_validator("endpoint")(canonical_endpoint)


class Deployment(Block):
    """``kind: deployment``: names the group of APIs; exactly one per file."""

    kind: Literal["deployment"] = Field(description="Always 'deployment'")
    name: str = Field(description="DNS-1123 name of the deployment")
    relax_pins: bool = Field(
        False,
        description="inferd extension: install the nearest installable version of a "
        "requirements.txt pin that cannot install on this Python (as --relax-pins)",
    )

    _name = field_validator("name")(dns_1123)


class ApiConfig(Block):
    """One API with everything derived from the project filled in (endpoint, paths)."""

    api: Api
    deployment: str = Field(description="Name of the deployment the API belongs to")
    endpoint: str = Field(description="The canonical endpoint path")
    project_root: Path | None = Field(None, description="The project folder (for relative paths)")

    @property
    def name(self) -> str:
        return self.api.name

    @property
    def key(self) -> str:
        """``deployment/api``: the API's identity on an operator (names are unique per deployment)."""
        return f"{self.deployment}/{self.api.name}"

    def identity(self, exclude: set[str] | None = None) -> str:
        """The config as text for a version's hash: its JSON, and after it each non-finite float
        (YAML's ``.inf``, ``-.inf``, ``.nan`` in ``metadata``) with where it is, since JSON writes
        all three as null. A config without one keeps the hash it always had."""
        text = self.model_dump_json(exclude=exclude)
        found = list(_nonfinite(self.model_dump(exclude=exclude), ()))
        return text + (repr(found) if found else "")


def _nonfinite(value: Any, where: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield where, repr(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nonfinite(item, (*where, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _nonfinite(item, (*where, index))


class SplitterConfig(Block):
    """A traffic splitter with its endpoint filled in."""

    splitter: TrafficSplitter
    deployment: str = Field(description="Name of the deployment the splitter belongs to")
    endpoint: str = Field(description="The canonical endpoint path")

    @property
    def name(self) -> str:
        return self.splitter.name

    @property
    def weights(self) -> dict[str, int]:
        return {entry.name: entry.weight for entry in self.splitter.apis}


class Project(Block):
    """A validated project folder."""

    root: Path = Field(description="The project folder (absolute)")
    config_file: Path = Field(description="Its cortex.yaml / inferd.yaml")
    deployment: Deployment
    apis: tuple[ApiConfig, ...]
    splitters: tuple[SplitterConfig, ...] = Field(default=(), description="Traffic splitters")

    def relaxed(self) -> Project:
        """This project with ``relax_pins`` on (``--relax-pins``)."""
        deployment = self.deployment.model_copy(update={"relax_pins": True})
        return self.model_copy(update={"deployment": deployment})

    def api(self, name: str) -> ApiConfig:
        for config in self.apis:
            if config.name == name:
                return config
        raise KeyError(name)


def is_remote(uri: str) -> bool:
    return uri.startswith(URI_SCHEMES)

"""The blocks an api holds besides its model: compute, autoscaling, tracker, auth, batching,
payload_log and shadow; each a frozen pydantic model that refuses unknown keys, as every
resource of ``schema.py`` does.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from inferd.config.quantity import parse_quantity

# Cortex's replica counts were int32s: a larger number was an error there, and is one here.
INT32_MAX = 2**31 - 1


def _number_only(value: object) -> object:
    """pydantic's lax mode takes true as 1 and '2' as 2; Cortex's int32 fields took numbers only."""
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    return value


# A count in the config: an integer (or a whole float, 4.0), never true or '2'.
Count = Annotated[int, BeforeValidator(_number_only)]


def _real_only(value: object) -> object:
    """As ``_number_only``, for a field that takes fractions (seconds, a share)."""
    if isinstance(value, bool | str):
        raise ValueError("must be a number")
    return value


# A number in the config (0.5, 60): never true or '5'.
Number = Annotated[float, BeforeValidator(_real_only)]


class Block(BaseModel):
    """A block of the config: unknown keys are errors, and it never changes once read."""

    # allow_inf_nan: YAML's .nan passed every bound (NaN compares false) and .inf every lower one
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Tracker(Block):
    """``tracker:``: prediction monitoring."""

    key: str | None = Field(None, description="Key of the response object to track")
    model_type: Literal["classification", "regression"] = Field(
        "regression",
        description="classification (class counts) or regression (min/max/avg; also when left out)",
    )

    @field_validator("model_type", mode="before")
    @classmethod
    def _empty_is_regression(cls, value: object) -> object:
        # Cortex's validator let model_type be empty ("unknown"), and its runtime tracked every
        # model type but classification as a regression (api_utils.py, extract_prediction).
        return "regression" if value is None or value == "" else value


class Compute(Block):
    """``compute:``: resources of each replica and bounds of the replica count."""

    min_replicas: Count = Field(
        1, ge=0, le=INT32_MAX, description="Fewest replicas (0: inferd's scale to zero)"
    )
    max_replicas: Count = Field(100, ge=1, le=INT32_MAX, description="Most replicas")
    init_replicas: Count | None = Field(
        None,
        ge=0,
        le=INT32_MAX,
        description="Replicas at start (= min_replicas; 1 when min_replicas is 0, so that a deploy "
        "shows whether the API loads)",
    )
    target_cpu_utilization: Count = Field(
        80,
        gt=0,
        le=100,
        description="Cortex's CPU target (percent); inferd scales on in-flight requests",
    )
    cpu: str | int | float = Field("200m", description="CPU per replica (200m, 0.5, 2)")
    mem: str | int | None = Field(
        None, description="Memory per replica (512Mi, 2G): a request, for placement and capacity (Cortex)"
    )
    mem_limit: str | int | None = Field(
        None,
        description="inferd extension: a hard cap on each replica's memory (cgroup v2 memory.max where "
        "inferd may create one, else stopped when its RSS passes it)",
    )
    gpu: Count = Field(
        0, ge=0, le=INT32_MAX, description="Whole GPUs per replica, each replica on its own devices"
    )
    gpu_memory: str | int | None = Field(
        None,
        description="inferd extension: with gpu: 1, share a device: each replica gets this much of "
        "one GPU's memory (4Gi) and replicas are packed onto a device while their shares fit",
    )
    cpu_fallback: bool = Field(
        False,
        description="inferd extension: run on the CPU when the replica's GPU cannot be used (no "
        "CUDA-enabled onnxruntime/TensorFlow, no driver) instead of failing to load",
    )

    # before the type's union, so that a list or an infinite number says "not a quantity", not
    # pydantic's "compute.cpu.str: must be a string"
    @field_validator("cpu", "mem", "mem_limit", "gpu_memory", mode="before")
    @classmethod
    def _quantity(cls, value: object) -> object:
        if value is not None and parse_quantity(value) <= 0:
            raise ValueError("must be > 0")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Compute:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        if self.init_replicas is not None:
            if self.init_replicas < self.min_replicas:
                raise ValueError("init_replicas must be >= min_replicas")
            if self.init_replicas > self.max_replicas:
                raise ValueError("init_replicas must be <= max_replicas")
        if self.gpu_memory is not None and self.gpu != 1:
            raise ValueError("gpu_memory is a share of one device: set gpu: 1 with it")
        if self.mem is not None and self.mem_limit is not None and self.mem_limit_bytes < self.mem_bytes:  # type: ignore[operator]
            raise ValueError("mem_limit must be >= mem (mem is what a replica asks for, mem_limit its cap)")
        return self

    @property
    def replicas_at_start(self) -> int:
        """``init_replicas``, else ``min_replicas``, and one for an API that scales to zero: as a
        Knative service's initial scale, its first replica proves the version loads (a deploy
        with a broken handler fails), and it goes once idle for the downscale window."""
        if self.init_replicas is not None:
            return self.init_replicas
        return max(1, self.min_replicas)

    @property
    def cpu_cores(self) -> float:
        return parse_quantity(self.cpu)

    @property
    def mem_bytes(self) -> int | None:
        return None if self.mem is None else int(parse_quantity(self.mem))

    @property
    def mem_limit_bytes(self) -> int | None:
        return None if self.mem_limit is None else int(parse_quantity(self.mem_limit))

    @property
    def gpu_memory_bytes(self) -> int | None:
        return None if self.gpu_memory is None else int(parse_quantity(self.gpu_memory))


class Autoscaling(Block):
    """``autoscaling:`` (inferd extension): scale on in-flight requests per replica."""

    target_in_flight: Number = Field(
        1.0, gt=0, description="In-flight requests (queued + running) per replica to aim for"
    )
    upscale_window: Number = Field(5.0, gt=0, description="Seconds of load averaged to scale up")
    downscale_window: Number = Field(60.0, gt=0, description="Seconds of low load before scaling down")


class Auth(Block):
    """``auth:`` (inferd extension): API keys, sent as ``Authorization: Bearer KEY`` or ``X-API-Key``.

    Keys are read when the API is deployed, from environment variables of the shell that runs
    ``inferd deploy`` (or ``inferd serve``) and/or a file with one key per line; they never appear
    in logs or state (the variables' values are kept apart, in ``secrets.json``).
    """

    keys_from_env: list[str] = Field(default_factory=list, description="Environment variables holding keys")
    keys_file: str | None = Field(
        None, description="File with one key per line (absolute, or in the project)"
    )

    @model_validator(mode="after")
    def _some_source(self) -> Auth:
        if not self.keys_from_env and self.keys_file is None:
            raise ValueError("give keys_from_env and/or keys_file")
        return self


class Batching(Block):
    """``batching:`` (inferd extension): group queued requests into one model call."""

    max_batch_size: Count = Field(ge=1, le=4096, description="Most samples in one model call")
    batch_interval: Number = Field(
        0.0, ge=0, le=10, description="Seconds a partial batch may wait for more requests (0: never wait)"
    )


class PayloadLog(Block):
    """``payload_log:`` (inferd extension): record sampled requests and answers under $INFERD_HOME."""

    sample: Number = Field(gt=0, le=1, description="Fraction of requests recorded (1.0: every one)")
    max_size: str | int = Field(
        "16Mi", description="Size at which the log rotates (one older file is kept, then dropped)"
    )

    @field_validator("max_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        if parse_quantity(value) < 4096:
            raise ValueError("must be at least 4Ki")
        return value

    @property
    def max_bytes(self) -> int:
        return int(parse_quantity(self.max_size))


class Shadow(Block):
    """``shadow:`` (inferd extension): copy a share of the requests to another API of the project;
    its answers are recorded beside the primary's, never returned."""

    api: str = Field(description="The API of this project that gets the copies")
    percent: Number = Field(100.0, ge=0, le=100, description="Percent of the requests copied")

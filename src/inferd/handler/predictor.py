"""The pipeline of one API inside a replica: pre_inference -> cast -> model -> post_inference.

No I/O here: the replica decodes the request and encodes the answer. Exceptions from user code
become ``HandlerError`` naming the function and file; the traceback goes to the API's log.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from inferd.config.load import find_config
from inferd.config.schema import Api
from inferd.errors import ConfigError, HandlerError, InferdError, InputError, LoadError, ModelError
from inferd.handler import cortex_paths, legacy_imports, numpy_compat, python_compat
from inferd.handler.batches import RowCheck, stack_key
from inferd.handler.convert import (
    MAP_TYPE,
    DimensionGroups,
    check_dimension_names,
    dimension_groups,
    stacks_by_rows,
    to_model_inputs,
)
from inferd.handler.cortex_outputs import flat_output
from inferd.handler.cortex_packages import missing_package_hint
from inferd.handler.debug import logged, preview
from inferd.handler.loader import UserCode, add_import_paths, load_user_code
from inferd.handler.user_errors import USER_MODULE_PREFIX, check_prepared, raised
from inferd.runtimes import Devices, Runtime, TensorSpec, load_runtime

log = logging.getLogger("inferd.handler")


@runtime_checkable
class TensorFlowRuntimeLike(Protocol):
    """A runtime that serves several signatures (TensorFlow's signature_name)."""

    def signature_specs(self, key: str) -> tuple[list[TensorSpec], list[TensorSpec]]: ...

    def run_signature(self, key: str, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]: ...


# The runtimes' "these inputs do not fit" errors (TensorFlow's InvalidArgumentError, onnxruntime's
# InvalidArgument) on tensors the signature took: TF Serving and Triton answer them 400.
REJECTED = ("InvalidArgumentError", "InvalidArgument")


def _failed(exc: Exception) -> InferdError:
    """The error of a model run that raised ``exc``: the client's 400 for what the runtime calls
    an invalid argument (on every route: the Cortex route's was a 500), else a 500, logged."""
    if any(kind.__name__ in REJECTED for kind in type(exc).__mro__):
        said = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return InputError(f"the model rejected the input: {type(exc).__name__}: {said}")
    log.error("the model failed:\n%s", traceback.format_exc().rstrip())
    return ModelError(f"the model failed: {type(exc).__name__}: {exc}")


def cortex_project(project_root: Path) -> bool:
    """Whether the project is read from ``cortex.yaml`` (Cortex compatibility shims apply)."""
    try:
        return find_config(project_root).name.startswith("cortex.")
    except ConfigError:
        return False


class Predictor:
    """Everything one API needs to answer a sample, built once per replica process."""

    def __init__(
        self, api: Api, project_root: Path, model_path: Path | None, devices: Devices | None = None
    ) -> None:
        self.api = api
        self.metadata = api.metadata
        self.runtime: Runtime | None = None
        self.code: UserCode | None = None
        # Seconds spent in each stage of the last predict() (read by the replica for metrics).
        self.timings: dict[str, float] = {}
        self._ignored: set[str] = set()  # ONNX input keys already logged as ignored
        # the dimension names (ONNX's "batch") the inputs share, and where (none: nothing to check)
        self._named_dimensions: DimensionGroups = ()
        self._whole_map = False  # whether the one input is an ONNX map (a body may be the map)
        self._v09 = api.v09_handlers  # read once: the property costs ~0.5 us, twice a request
        python_path = None if api.python_path is None else (project_root / api.python_path).resolve()
        user_file = None if api.handler_file is None else (project_root / api.handler_file).resolve()
        add_import_paths(project_root, python_path, user_file)
        if cortex_project(project_root):
            numpy_compat.install()
            python_compat.install()
            legacy_imports.install()
            cortex_paths.install(project_root)
        module = f"{USER_MODULE_PREFIX}{api.name.replace('-', '_')}"
        if api.predictor is not None:
            self.code = load_user_code(
                project_root / api.predictor.path, "predictor", module, api.predictor.path
            )
            init = self.code.get("init")
            if init is not None:
                shown_path = None if model_path is None else str(model_path)
                try:
                    init(shown_path, self.metadata)
                except BaseException as exc:  # sys.exit("no GPU") too: its reason, not "exited with code 1"
                    detail = "".join(traceback.format_exception(exc)).rstrip()
                    said = f"{raised(exc)}{missing_package_hint(exc)}"
                    raise LoadError(f"init in {api.predictor.path} failed: {said}\n{detail}") from exc
            return
        assert model_path is not None
        signature_key = api.tensorflow.signature_key if api.tensorflow is not None else None
        devices = devices_of(api) if devices is None else devices
        self.runtime = load_runtime(api.model_format, model_path, signature_key, devices)
        self._input_names = frozenset(spec.name for spec in self.runtime.inputs)
        self._named_dimensions = dimension_groups(self.runtime.inputs)
        inputs = self.runtime.inputs
        self._whole_map = len(inputs) == 1 and inputs[0].type_name.startswith(MAP_TYPE)
        self._rows = RowCheck(stacks_by_rows(self.runtime.inputs, self.runtime.outputs))
        if api.handler_file is not None:
            kind = "handler-v0.9" if api.v09_handlers else "handler"
            self.code = load_user_code(project_root / api.handler_file, kind, module, api.handler_file)
        self.full_shapes = api.tensorflow is not None and api.tensorflow.full_shapes

    def _call(self, name: str, *args: Any) -> Any:
        assert self.code is not None
        function = self.code.functions[name]
        if self._v09 and name != "predict":
            args = args[:2]  # Cortex v0.9: (sample or prediction, signature), no metadata
        try:
            return function(*args)
        except BaseException as exc:
            # sys.exit() and KeyboardInterrupt too: the request's 500, the replica serves on.
            # From the user's function down: the frame above it is this method, not theirs.
            below = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
            shown = "".join(traceback.format_exception(type(exc), exc, below)).rstrip()
            log.error("%s in %s failed:\n%s", name, self.code.file, shown)
            raise HandlerError(f"{name} in {self.code.file} failed: {raised(exc)}") from exc

    def predict(self, sample: Any, debug: bool = False) -> Any:
        """Answer one sample (the parsed JSON body) as the user's handlers define it."""
        clock = time.perf_counter
        timings = self.timings = {}
        if debug:
            log.info("sample: %s", preview(sample))
        if self.runtime is None:
            started = clock()
            result = self._call("predict", sample, self.metadata)
            timings["model"] = clock() - started
            return logged("prediction", result) if debug else result
        runtime = self.runtime
        started = clock()
        inputs = self._inputs(sample, debug)
        timings["pre_inference"] = (now := clock()) - started
        prediction = self.run_model(inputs)
        timings["model"] = (started := clock()) - now
        if debug:
            log.info("inference: %s", preview(prediction))
        post = self.code.get("post_inference") if self.code else None
        if post is None:
            return prediction
        result = self._call("post_inference", prediction, runtime.handler_signature("post"), self.metadata)
        timings["post_inference"] = clock() - started
        return logged("post_inference", result) if debug else result

    def _inputs(self, sample: Any, debug: bool = False) -> dict[str, np.ndarray[Any, Any]]:
        """pre_inference (if any), then the cast to the model's inputs."""
        assert self.runtime is not None
        pre = self.code.get("pre_inference") if self.code else None
        prepared = sample
        if pre is not None:
            prepared = self._call(
                "pre_inference", sample, self.runtime.handler_signature("pre"), self.metadata
            )
            if debug:
                log.info("pre_inference: %s", preview(prepared))
            check_prepared(prepared, self.code.file if self.code else "the handler")
        ignore_extra = self.api.onnx is not None
        if ignore_extra and isinstance(prepared, dict):
            self._note_ignored(prepared)
        try:
            inputs = to_model_inputs(prepared, self.runtime.inputs, ignore_extra)
            if self._named_dimensions:
                check_dimension_names(inputs, self._named_dimensions)
            return inputs
        except InputError as exc:
            if pre is not None:
                shown = self.code.file if self.code else "the handler"
                raise InputError(f"{exc} (as returned by pre_inference in {shown})") from None
            raise

    def _note_ignored(self, prepared: dict[Any, Any]) -> None:
        """Log, once per key, the keys of an ONNX input object that are not model inputs."""
        assert self.runtime is not None
        extra = prepared.keys() - self._input_names
        if not extra or (self._whole_map and not prepared.keys() & self._input_names):
            return  # none, or the object is the map input itself: its keys are data
        ignored = sorted(str(key) for key in extra if key not in self._ignored)
        if ignored:
            self._ignored.update(ignored)
            log.warning(
                "ignoring keys that are not inputs of the ONNX model (as Cortex did): %s (logged once)",
                ", ".join(ignored),
            )

    def predict_batch(self, samples: list[Any]) -> list[tuple[Any, InferdError | None, dict[str, float]]]:
        """Answer several samples with as few model calls as fit: (result, error, timings) per sample.

        ``pre_inference`` (exactly once per sample) and ``post_inference`` run per sample, so
        handlers written for one sample work unchanged. Samples whose inputs agree on every
        dimension but the batch one are stacked and run together; the others (ragged, or no batch
        dimension) run alone. A sample that fails (bad input, a handler error) fails alone.
        Models whose outputs do not keep one row per input row are run per sample instead.
        """
        results: list[tuple[Any, InferdError | None, dict[str, float]]] = [(None, None, {})] * len(samples)
        if self.runtime is None or len(samples) == 1:
            return [self._one(sample) for sample in samples]
        clock = time.perf_counter
        groups: dict[Any, list[Prepared]] = {}
        for index, sample in enumerate(samples):
            started = clock()
            try:
                inputs = self._inputs(sample)
            except InferdError as exc:
                results[index] = (None, exc, {})
                continue
            entry = (index, inputs, clock() - started)
            groups.setdefault(stack_key(inputs) or ("alone", index), []).append(entry)
        for group in groups.values():
            self._run_group(group, results)
        return results

    def _run_group(
        self, group: list[Prepared], results: list[tuple[Any, InferdError | None, dict[str, float]]]
    ) -> None:
        """Run samples whose inputs stack as one model call (or each alone when they cannot)."""
        runtime = self.runtime
        assert runtime is not None
        if len(group) > 1 and self._rows.stacks:
            clock = time.perf_counter
            given = group[0][1]  # the group's samples give the same inputs (``stack_key``)
            stacked = {
                spec.name: np.concatenate([inputs[spec.name] for _, inputs, _ in group])
                for spec in runtime.inputs
                if spec.name in given  # an optional input left out is left out of the batch
            }
            counts = [int(next(iter(inputs.values())).shape[0]) for _, inputs, _ in group]
            started = clock()
            try:
                batched = self._run_raw(stacked)
            except (ModelError, InputError):  # one bad sample must not fail its batch: each alone below
                batched = None
            parts = (
                None
                if batched is None
                else self._rows.cut(batched, counts, group[0][1], group[-1][1], self._run_raw)
            )
            model_time = clock() - started
            if parts is not None:
                for (index, _, pre_time), raw in zip(group, parts, strict=True):
                    timings = {"pre_inference": pre_time, "model": model_time}
                    results[index] = self._post(self._shaped(raw), timings)
                return
        for index, inputs, pre_time in group:
            started = time.perf_counter()
            timings = {"pre_inference": pre_time}
            try:
                prediction = self.run_model(inputs)
            except InferdError as exc:
                results[index] = (None, exc, timings)
                continue
            timings["model"] = time.perf_counter() - started
            results[index] = self._post(prediction, timings)

    def _post(
        self, prediction: Any, timings: dict[str, float]
    ) -> tuple[Any, InferdError | None, dict[str, float]]:
        """post_inference (if any) on one sample's prediction."""
        post = self.code.get("post_inference") if self.code else None
        if post is None:
            return prediction, None, timings
        assert self.runtime is not None
        started = time.perf_counter()
        try:
            result = self._call(
                "post_inference", prediction, self.runtime.handler_signature("post"), self.metadata
            )
        except InferdError as exc:
            return None, exc, timings
        timings["post_inference"] = time.perf_counter() - started
        return result, None, timings

    def _one(self, sample: Any) -> tuple[Any, InferdError | None, dict[str, float]]:
        try:
            result = self.predict(sample)
            return result, None, self.timings
        except InferdError as exc:
            return None, exc, self.timings

    def run_model(self, inputs: dict[str, np.ndarray[Any, Any]]) -> Any:
        """Run the model; TensorFlow outputs are flattened per output as Cortex delivered them."""
        return self._shaped(self._run_raw(inputs))

    def _run_raw(self, inputs: dict[str, np.ndarray[Any, Any]]) -> Any:
        assert self.runtime is not None
        try:
            return self.runtime.run(inputs)
        except InputError:  # the runtime's own check of what it can take (text for onnxruntime)
            raise
        except Exception as exc:
            raise _failed(exc) from exc

    def _shaped(self, prediction: Any) -> Any:
        if isinstance(prediction, dict) and not self.full_shapes:
            return {name: flat_output(value) for name, value in prediction.items()}
        return prediction

    def tensor_specs(self, signature: str | None = None) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """Inputs and outputs of the model (or of another TensorFlow signature) for tensor protocols."""
        if self.runtime is None:
            raise InputError(f"api '{self.api.name}' is a Python predictor: it takes JSON at its endpoint")
        runtime = self.runtime
        if signature in (None, "", getattr(runtime, "signature_key", "serving_default")):
            return runtime.inputs, runtime.outputs
        if isinstance(runtime, TensorFlowRuntimeLike):
            return runtime.signature_specs(signature)
        raise InputError(f"signature {signature!r} is not in the model (it has: serving_default)")

    def run_tensors(
        self, inputs: dict[str, np.ndarray[Any, Any]], signature: str | None = None
    ) -> dict[str, Any]:
        """Run the model on named arrays with no handler (tensor protocols); outputs by name."""
        assert self.runtime is not None
        runtime = self.runtime
        if self._named_dimensions:
            check_dimension_names(inputs, self._named_dimensions)
        started = time.perf_counter()
        try:
            if (
                signature
                and signature != getattr(runtime, "signature_key", signature)
                and isinstance(runtime, TensorFlowRuntimeLike)
            ):
                outputs = runtime.run_signature(signature, inputs)
            else:
                outputs = runtime.output_arrays(runtime.run(inputs))
        except InputError:
            raise
        except Exception as exc:
            raise _failed(exc) from exc
        self.timings = {"model": time.perf_counter() - started}
        return outputs

    def describe(self) -> dict[str, Any]:
        """The API's signature for ``GET <endpoint>`` and the protocols' metadata routes."""
        gpus = (
            {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")} if self.api.compute.gpu else {}
        )
        if self.runtime is None:
            return {"model_format": "predictor", "inputs": None, "outputs": None, **gpus}
        info: dict[str, Any] = {
            **gpus,
            "model_format": self.api.model_format,
            "handler_functions": sorted(self.code.functions) if self.code else [],
            "platform": self.runtime.platform,
            "device": self.runtime.device,
            "inputs": [spec.describe() for spec in self.runtime.inputs],
            "outputs": [spec.describe() for spec in self.runtime.outputs],
        }
        if self.api.tensorflow is not None:
            info["signature_key"] = getattr(self.runtime, "signature_key", None)
            info["signature_def"] = self.runtime.handler_signature("pre")
        return info


def devices_of(api: Api) -> Devices:
    """The devices an API's replica runs its model on, from ``compute`` and ``onnx``."""
    compute = api.compute
    return Devices(
        gpus=compute.gpu,
        gpu_memory=compute.gpu_memory_bytes,
        tensorrt=api.onnx is not None and api.onnx.tensorrt,
        cpu_fallback=compute.cpu_fallback,
    )


Prepared = tuple[int, dict[str, np.ndarray[Any, Any]], float]  # sample index, model inputs, pre time

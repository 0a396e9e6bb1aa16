"""Traffic splitters: one endpoint over several API queues, each request to one API by weight.

The gateway consults these only when a path names no API (the miss path), so routes without a
splitter pay nothing. A redeploy swaps a deployment's splitters in one assignment: requests
already admitted keep their API, the next ones use the new weights.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from random import random
from typing import Any

from inferd.config.schema import SplitterConfig
from inferd.gateway.queue import ApiQueue
from inferd.gateway.shadow import ShadowRoute


class Splitter:
    """One ``traffic_splitter``: its weights, and how many requests each API got."""

    __slots__ = (
        "apis",
        "bounds",
        "config",
        "counts",
        "endpoint",
        "headers",
        "keys",
        "name",
        "shadow",
        "weights",
    )

    def __init__(self, config: SplitterConfig, counts: dict[str, int] | None = None) -> None:
        self.config = config
        self.name = config.name
        self.endpoint = config.endpoint
        self.weights = config.weights
        # APIs with weight 0 get nothing; the cumulative bounds of the others, out of 100.
        self.apis = [name for name, weight in self.weights.items() if weight > 0]
        self.bounds: list[float] = []
        total = 0
        for name in self.apis:
            total += self.weights[name]
            self.bounds.append(total / 100)
        self.bounds[-1] = 1.0
        # The gateway's queues are keyed ``deployment/api``; answers name the API.
        self.keys = [f"{config.deployment}/{name}" for name in self.apis]
        self.headers = {
            key: b"X-Inferd-Api: " + name.encode() + b"\r\n"
            for key, name in zip(self.keys, self.apis, strict=True)
        }
        # Requests sent to each API through this splitter since the gateway started.
        self.counts = {name: (counts or {}).get(name, 0) for name in self.weights}
        self.shadow: ShadowRoute | None = None  # set by the gateway (gateway/shadow.py)

    def pick(
        self, queues: Mapping[str, ApiQueue], counted: bool = True, tensors: bool = False
    ) -> ApiQueue | None:
        """The API of the next request (``None`` when that API does not exist in the gateway);
        ``counted``: a prediction (not a GET of the API's description, metadata or readiness);
        ``tensors``: a V2 infer or TF Serving request, which a Python predictor cannot answer.

        An API that cannot serve (in error, no replica ready), or a predictor asked for tensors,
        passes its share to the splitter's others that can, by their weights: a broken candidate
        costs its clients nothing, nor does a predictor beside a model its tensor clients reach."""
        index = bisect_right(self.bounds, random()) if len(self.apis) > 1 else 0
        queue = queues.get(self.keys[index])
        if (
            queue is not None
            and len(self.apis) > 1
            and ((queue.error is not None and not queue.ready) or (tensors and not queue.tensors))
        ):
            index = self._instead_of(index, queues, tensors)
            queue = queues.get(self.keys[index])
        if counted:
            self.counts[self.apis[index]] += 1
        return queue

    def _instead_of(self, index: int, queues: Mapping[str, ApiQueue], tensors: bool) -> int:
        """An API to take the request of the API at ``index``, which cannot answer it: one of
        the others that can, by their weights (``index`` itself when none can; for tensors, the
        models by their weights: their 503 says what is wrong, a predictor's 400 would not)."""
        able = []
        for other, key in enumerate(self.keys):
            queue = queues.get(key)
            if (
                other != index
                and queue is not None
                and (queue.error is None or queue.ready)
                and (not tensors or queue.tensors)
            ):
                able.append(other)
        if not able and tensors:  # no model can: a model's 503 (not ready), not a predictor's 400
            able = [
                other for other, key in enumerate(self.keys) if getattr(queues.get(key), "tensors", False)
            ]
        if not able:
            return index
        point = random() * sum(self.weights[self.apis[other]] for other in able)
        for other in able:
            point -= self.weights[self.apis[other]]
            if point < 0:
                return other
        return able[-1]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "deployment": self.config.deployment,
            "endpoint": self.endpoint,
            "apis": [
                {"name": name, "weight": weight, "requests": self.counts[name]}
                for name, weight in self.weights.items()
            ],
            "shadow": self.shadow.describe() if self.shadow is not None else None,
        }


def routing(configs: Iterable[SplitterConfig]) -> list[str]:
    """Splitter configs in a comparable form (JSON, sorted): whether a deploy changed them."""
    return sorted(config.model_dump_json() for config in configs)


class Splitters:
    """Every splitter of the gateway: by ``deployment/name``, by endpoint, and by the model name the
    V2 and TF Serving routes use (``deployment.name``, or the bare name when no other deployment
    has a splitter of that name, as for APIs)."""

    def __init__(self) -> None:
        self.by_key: dict[str, Splitter] = {}
        self.by_endpoint: dict[bytes, Splitter] = {}
        self.by_name: dict[str, Splitter] = {}
        self.clashes: dict[str, list[str]] = {}  # a bare name several deployments' splitters have

    def __bool__(self) -> bool:
        return bool(self.by_key)

    def replace(self, deployment: str, configs: tuple[SplitterConfig, ...]) -> None:
        """Make ``configs`` the splitters of ``deployment`` (keeping the counts of those that stay)."""
        by_key = {key: s for key, s in self.by_key.items() if s.config.deployment != deployment}
        for config in configs:
            key = f"{deployment}/{config.name}"
            before = self.by_key.get(key)
            by_key[key] = Splitter(config, before.counts if before is not None else None)
        names = Counter(s.name for s in by_key.values())
        by_name = {f"{s.config.deployment}.{s.name}": s for s in by_key.values()}
        by_name.update((s.name, s) for s in by_key.values() if names[s.name] == 1)
        self.clashes = {
            name: sorted(f"{s.config.deployment}.{name}" for s in by_key.values() if s.name == name)
            for name, count in names.items()
            if count > 1
        }
        self.by_endpoint = {s.endpoint.encode(): s for s in by_key.values()}
        self.by_name = by_name
        self.by_key = by_key

    def configs_of(self, deployment: str) -> list[str]:
        """``deployment``'s splitters as they route now (see ``routing``)."""
        return routing(s.config for s in self.by_key.values() if s.config.deployment == deployment)

    def find(self, name: str) -> list[Splitter]:
        """The splitters ``name`` (``SPLITTER`` or ``DEPLOYMENT/SPLITTER``) names."""
        deployment, _, bare = name.rpartition("/")
        return [s for s in self.by_key.values() if s.name == bare and deployment in ("", s.config.deployment)]

    def at(self, path: bytes) -> Splitter | None:
        """The splitter whose endpoint is ``path`` (with or without a trailing slash)."""
        splitter = self.by_endpoint.get(path)
        if splitter is None and path.endswith(b"/") and len(path) > 1:
            splitter = self.by_endpoint.get(path.rstrip(b"/"))
        return splitter

    def named_in(self, path: bytes) -> Splitter | None:
        """The splitter a splitter endpoint, or a V2 / TF Serving model path, names."""
        splitter = self.at(path)
        if splitter is None:
            for prefix in (b"/v2/models/", b"/v1/models/"):
                if path.startswith(prefix):
                    name = path[len(prefix) :].split(b"/", 1)[0].split(b":", 1)[0]
                    return self.by_name.get(name.decode("utf-8", "replace"))
        return splitter

    def body_limit_of(self, path: bytes, queues: Mapping[str, ApiQueue]) -> int | None:
        """The largest body the APIs behind the splitter ``path`` names take (``None``: not a splitter)."""
        splitter = self.named_in(path)
        if splitter is None:
            return None
        limits = [queues[key].body_limit for key in splitter.keys if key in queues]
        return max(limits) if limits else None

    def describe(self) -> list[dict[str, Any]]:
        return [splitter.describe() for splitter in self.by_key.values()]


def splitter_endpoints(splitters: Splitters, visible: Iterable[ApiQueue]) -> list[str]:
    """The endpoints a listing shows: the ``visible`` APIs', and those of the splitters over them
    (a splitter's APIs take the same keys: it is shown where they are)."""
    queues = list(visible)
    keys = {queue.key for queue in queues}
    shown = [queue.endpoint for queue in queues]
    for splitter in splitters.by_key.values():
        if all(f"{splitter.config.deployment}/{name}" in keys for name in splitter.weights):
            shown.append(splitter.endpoint)
    return shown

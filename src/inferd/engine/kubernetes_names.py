"""Names of the Kubernetes objects an export writes: valid for every kind, distinct per API.

The API server takes a Service's name only as a DNS-1035 label (a lower-case letter first, at
most 63 characters); Deployments and HorizontalPodAutoscalers take that too. Cortex allows a
deployment name that starts with a digit and 63 characters for each name, so the plain
``<deployment>-<api>`` may start with a digit or run to 127 characters, and two names cut to 63
characters could become the same object.
"""

from __future__ import annotations

import hashlib

MAX_LENGTH = 63
DIGEST_LENGTH = 8
PREFIX = "inferd-"  # before a name that starts with a digit
# KubeRay names a RayService's Service '<name>-serve-svc' and cuts such names to their last 50
# characters (its utils.CheckName): a RayService name of at most 40 keeps that Service's name
# what the export's README says.
RAY_SERVICE_LENGTH = 50 - len("-serve-svc")


def object_name(*parts: str, max_length: int = MAX_LENGTH) -> str:
    """``parts`` joined with '-' as a DNS-1035 label.

    A name starting with a digit gets ``inferd-`` in front; one longer than ``max_length`` is
    cut and ends with a digest of the whole name, so two long names never meet. Names that fit
    are kept as they are.
    """
    name = "-".join(parts)
    if not name[:1].isalpha():
        name = PREFIX + name
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:DIGEST_LENGTH]
    return f"{name[: max_length - DIGEST_LENGTH - 1].rstrip('-')}-{digest}"

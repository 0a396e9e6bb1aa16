"""Names and endpoints in a project: what Kubernetes (whose rules Cortex kept) and the gateway allow."""

from __future__ import annotations

import re

DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ENDPOINT = re.compile(r"^[a-zA-Z0-9_\-\./]*$")
# Paths the gateway answers itself (and everything under them); an API endpoint may not shadow
# them. Only these: Cortex let an endpoint be any path, and /v1/iris or /v2/classifier are
# ordinary API versions (endpoints are matched before the protocol routes).
RESERVED_PATHS = ("/v1/models", "/v2/health", "/v2/models")
# Answered as they are, nothing under them: /metrics/classifier, the default endpoint of a
# deployment named metrics, is free (so are docs, healthz and dashboard, whose pages have their
# own listener). /v2 is the V2 server metadata; /v2/<other> is free.
RESERVED_EXACT = ("/v2", "/healthz", "/metrics", "/docs", "/openapi.json", "/dashboard")


def reserved(endpoint: str) -> bool:
    """Whether ``endpoint`` would shadow a route the gateway answers itself."""
    return endpoint in RESERVED_EXACT or any(
        endpoint == path or endpoint.startswith(path + "/") for path in RESERVED_PATHS
    )


def dns_1123(value: str) -> str:
    """A deployment's name: Kubernetes' DNS-1123 label (Cortex's rule)."""
    if len(value) > 63:
        raise ValueError(f"{value[:20]!r}... may be at most 63 characters (it has {len(value)})")
    if not DNS_1123.match(value):
        raise ValueError(
            f"{value!r} must contain only lower-case letters, digits and '-', and start "
            "and end with a letter or digit (underscores are not allowed)"
        )
    return value


def dns_1035(value: str) -> str:
    """An API's or splitter's name: Kubernetes' DNS-1035 label (Cortex's rule)."""
    if len(value) > 63:
        raise ValueError(f"{value[:20]!r}... may be at most 63 characters (it has {len(value)})")
    if not DNS_1035.match(value):
        raise ValueError(
            f"{value!r} must start with a lower-case letter and contain only lower-case "
            "letters, digits and '-' (DNS-1035)"
        )
    return value


MAX_ENDPOINT = 2048  # a 70,000-character endpoint was live, and each request to it a 431


def canonical_endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_ENDPOINT:
        raise ValueError(
            f"may be at most {MAX_ENDPOINT:,} characters (it has {len(value):,}): the gateway, clients "
            "and proxies refuse longer request lines"
        )
    if not ENDPOINT.match(value):
        raise ValueError(f"{value!r} may contain only letters, digits, '_', '-', '.' and '/'")
    if "//" in value:
        raise ValueError(f"{value!r} must not contain '//'")
    if any(part in (".", "..") for part in value.split("/")):  # clients resolve them away
        raise ValueError(f"{value!r} must not contain '.' or '..' as a path segment")
    canonical = "/" + value.strip("/")
    if canonical == "/":
        raise ValueError("must not be '/'")
    return canonical

"""The HTTP front: routes, protocols, a queue per API, dispatch to idle replicas."""

from inferd.gateway.app import Gateway

__all__ = ["Gateway"]

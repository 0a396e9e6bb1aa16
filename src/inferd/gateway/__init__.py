"""The HTTP front: routes, protocols, a queue per API, dispatch to idle replicas.

``Gateway`` is in ``inferd.gateway.app``. This package imports nothing itself, so that the CLI
can read payload records (``inferd.gateway.payloads``) without importing the HTTP server.
"""

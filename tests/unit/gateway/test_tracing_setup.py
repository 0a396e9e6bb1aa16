"""When tracing is on: the OTLP endpoint set and the exporter installed, or a warning."""

from __future__ import annotations

import logging
import sys

import pytest

from inferd.gateway.tracing import Tracer


def test_no_endpoint_means_no_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert Tracer.from_environment() is None


def test_an_endpoint_without_the_exporter_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    # None in sys.modules makes the import fail, as when the extra is not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with caplog.at_level(logging.WARNING, logger="inferd.gateway"):
        assert Tracer.from_environment() is None
    assert "pip install 'inferd[otel]'" in caplog.text and "no spans are exported" in caplog.text

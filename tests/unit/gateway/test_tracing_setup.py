"""When tracing is on: the OTLP endpoint set and the exporter installed, or a warning."""

from __future__ import annotations

import logging
import sys

import pytest

from inferd.gateway.tracing import Tracer


def test_no_endpoint_means_no_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
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


def test_the_standard_variables_configure_the_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    # The traces-only endpoint is enough, as for any OpenTelemetry SDK.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    tracer = Tracer.from_environment()
    assert tracer is not None and tracer.tracer.resource.attributes["service.name"] == "inferd"
    tracer.provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop-gateway")  # the service name, when given
    tracer = Tracer.from_environment()
    assert tracer is not None and tracer.tracer.resource.attributes["service.name"] == "shop-gateway"
    tracer.provider.shutdown()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # the SDK turned off: nothing is traced
    assert Tracer.from_environment() is None

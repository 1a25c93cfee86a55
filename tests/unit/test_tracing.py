"""Tracing's settings: the standard OTEL_* variables."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from aitbc_runtime import tracing


def test_nothing_is_exported_unless_an_exporter_is_named() -> None:
    names = tracing.exporter_names
    assert names({}) == []
    assert names({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == ["otlp"]
    assert names({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == ["otlp"]
    assert names({"OTEL_TRACES_EXPORTER": "console"}) == ["console"]
    assert names({"OTEL_TRACES_EXPORTER": " OTLP , console"}) == ["otlp", "console"]
    assert names({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}) == []
    assert names({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}) == []
    with pytest.raises(ValueError, match="jaeger"):
        names({"OTEL_TRACES_EXPORTER": "jaeger"})


def test_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with tracing.configured("aitbc-keys"):
        provider = tracing._provider
        assert tracing.enabled and provider is not None
        assert provider.resource.attributes[SERVICE_NAME] == "aitbc-keys"
        assert provider.sampler is ALWAYS_OFF  # the SDK read OTEL_TRACES_SAMPLER
    assert not tracing.enabled and tracing._provider is None
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-eu-1")
    with tracing.configured("aitbc-api"):
        assert tracing._provider is not None
        assert tracing._provider.resource.attributes[SERVICE_NAME] == "edge-eu-1"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    with tracing.configured("aitbc-api"):
        assert not tracing.enabled


def test_unconfigured_tracing_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.configure("aitbc-usage") is None
    assert not tracing.enabled

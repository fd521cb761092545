from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import env_device, env_log_level, env_rate


@pytest.mark.parametrize("value", ["120/hour", "600/minute", "10/s", "5/days", "1/m"])
def test_a_rate_drf_understands_is_accepted(monkeypatch, value) -> None:
    monkeypatch.setenv("SOME_RATE", value)

    assert env_rate("SOME_RATE", "1/hour") == value


@pytest.mark.parametrize("value", ["lots", "120", "0/hour", "120/fortnight", "-1/minute", "120 / hour"])
def test_a_rate_drf_would_choke_on_stops_start_up_naming_the_variable(monkeypatch, value) -> None:
    monkeypatch.setenv("UPLOAD_RATE_LIMIT", value)

    with pytest.raises(ImproperlyConfigured, match="UPLOAD_RATE_LIMIT"):
        env_rate("UPLOAD_RATE_LIMIT", "120/hour")


def test_devices_and_log_levels_are_checked(monkeypatch) -> None:
    monkeypatch.setenv("EMBEDDING_DEVICE", "CUDA:1")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert env_device("EMBEDDING_DEVICE", "auto") == "cuda:1"
    assert env_log_level("LOG_LEVEL", "INFO") == "WARNING"

    monkeypatch.setenv("EMBEDDING_DEVICE", "gpu")
    monkeypatch.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ImproperlyConfigured, match="EMBEDDING_DEVICE"):
        env_device("EMBEDDING_DEVICE", "auto")
    with pytest.raises(ImproperlyConfigured, match="LOG_LEVEL"):
        env_log_level("LOG_LEVEL", "INFO")

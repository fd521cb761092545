"""Typed readers for environment variables that fail loudly on bad values."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str) -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use true or false.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
    return number


def env_float(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
    return number


def env_choice(name: str, default: str, choices: Sequence[str]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}.")
    return value


def env_list(name: str, default: Sequence[str]) -> list[str]:
    value = _raw(name)
    if value is None or value == "":
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    value = _raw(name)
    return default if value is None or value == "" else Path(value).expanduser()


def env_optional_path(name: str) -> Path | None:
    value = _raw(name)
    return None if value is None or value == "" else Path(value).expanduser()


_RATE = re.compile(r"[1-9][0-9]*/(s|m|h|d|sec|second|min|minute|hour|day)s?")


def env_rate(name: str, default: str) -> str:
    """A request rate as DRF's throttles read it: `N/second`, `N/minute`, `N/hour` or `N/day` (or s, m, h, d)."""
    value = env_str(name, default)
    if not _RATE.fullmatch(value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate; use e.g. 120/hour, 600/minute or 10/second.")
    return value


_DEVICE = re.compile(r"auto|cpu|cuda|cuda:[0-9]+")


def env_device(name: str, default: str) -> str:
    """A torch device: auto, cpu, cuda or cuda:N."""
    value = env_str(name, default).lower()
    if not _DEVICE.fullmatch(value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a device; use auto, cpu, cuda or cuda:N.")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def env_log_level(name: str, default: str) -> str:
    value = env_str(name, default).upper()
    if value not in LOG_LEVELS:
        raise ImproperlyConfigured(f"{name}={value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}.")
    return value

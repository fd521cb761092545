from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[1]


def test_production_settings_pass_the_deployment_checks(tmp_path: Path) -> None:
    # The browser tests allow sync database calls in their own process; a deployment never does.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"} | {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        "VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"} | {
        "DJANGO_DEBUG": "false",
        "VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_UPLOAD_MB", "lots", "MAX_UPLOAD_MB='lots' is not an integer"),
        ("UPLOAD_RATE_LIMIT", "lots", "UPLOAD_RATE_LIMIT='lots' is not a rate"),
        ("SEARCH_RATE_LIMIT", "600/fortnight", "SEARCH_RATE_LIMIT='600/fortnight' is not a rate"),
        ("EMBEDDING_DEVICE", "gpu", "EMBEDDING_DEVICE='gpu' is not a device"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='LOUD' is not a log level"),
        ("CACHE_URL", "memcached://x", "CACHE_URL='memcached://x' is not a redis"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path: Path, name, value, message) -> None:
    env = os.environ | {name: value, "VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy(client: Client) -> None:
    response = client.get("/")

    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Content-Type-Options"] == "nosniff"

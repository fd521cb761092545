from __future__ import annotations

import pytest
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_is_valid_and_documents_every_endpoint(api: APIClient) -> None:
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    paths = set(schema["paths"])
    for path in [
        "/api/uploads/",
        "/api/songs/",
        "/api/songs/{song_id}/",
        "/api/songs/{song_id}/uploaded/",
        "/api/songs/{song_id}/retry/",
        "/api/songs/{song_id}/more-like-this/",
        "/api/search/similar/",
    ]:
        assert path in paths, path


def test_interactive_docs_are_served(api: APIClient) -> None:
    response = api.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_healthz_tells_the_public_only_ok_or_failing_per_dependency(api: APIClient) -> None:
    response = api.get("/healthz")

    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"] == {name: {"ok": True} for name in ("database", "broker", "storage", "index", "model")}


def test_healthz_gives_details_to_staff(api: APIClient) -> None:
    from django.contrib.auth.models import User

    api.force_login(User.objects.create_user("ops", password="pw-ops-12345", is_staff=True))

    body = api.get("/healthz").json()

    assert body["checks"]["model"]["detail"] == "features"
    assert "ms" in body["checks"]["database"]


def test_healthz_gives_details_to_a_caller_with_the_token(api: APIClient, settings) -> None:
    settings.HEALTHZ_TOKEN = "probe-secret"

    assert "detail" not in api.get("/healthz", HTTP_AUTHORIZATION="Bearer wrong").json()["checks"]["model"]
    body = api.get("/healthz", HTTP_AUTHORIZATION="Bearer probe-secret").json()
    assert body["checks"]["model"]["detail"] == "features"


def test_a_failing_dependency_is_named_without_its_error_for_the_public(api: APIClient, monkeypatch) -> None:
    from catalog import health

    def down() -> str:
        raise RuntimeError("postgres://admin:hunter2@db/resonance refused")

    monkeypatch.setitem(health.CHECKS, "database", down)

    response = api.get("/healthz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False}
    assert "hunter2" not in response.content.decode()

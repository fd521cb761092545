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


def test_healthz_reports_each_dependency(api: APIClient) -> None:
    response = api.get("/healthz")

    body = response.json()
    assert set(body["checks"]) == {"database", "broker", "storage", "index", "model"}
    assert response.status_code == 200, body
    assert body["checks"]["model"]["detail"] == "features"

"""Property-based fuzzing of every API operation from its OpenAPI schema: no input may cause a server error."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings

from tests.factories import SongFactory

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def catalog_with_a_song(db) -> None:
    SongFactory.create(embedding_model="features")


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case, catalog_with_a_song, eager_celery) -> None:
    # Tasks run in-process, as a worker would answer them: a clip search here has no worker to wait for.
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])

"""Worker tasks of the derived indexes."""

from __future__ import annotations

from celery import shared_task

from derived import services


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=True, max_retries=3, ignore_result=True)
def compact_indexes() -> None:
    services.compact_all()

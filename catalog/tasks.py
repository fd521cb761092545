"""Celery tasks: short wrappers that take ids, call a service, and declare their retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_success
from django.conf import settings

from catalog import clips, map_refresh, pipeline, services
from catalog.transient import TRANSIENT_ERRORS


class IngestTask(Task):
    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        song_id = UUID(str(args[0] if args else kwargs["song_id"]))
        if isinstance(exc, SoftTimeLimitExceeded):
            services.mark_failed(song_id, f"The ingest took longer than {settings.INGEST_TIME_LIMIT_SECONDS} s.")
        elif isinstance(exc, pipeline.IngestFailed):
            services.mark_failed(song_id, str(exc))
        elif isinstance(exc, TRANSIENT_ERRORS):
            services.mark_failed(song_id, f"Gave up after {self.request.retries + 1} attempts: {exc}")
        else:
            services.mark_failed(song_id, f"Unexpected error while ingesting ({type(exc).__name__}: {exc})")


@shared_task(
    bind=True,
    base=IngestTask,
    name="catalog.ingest_song",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=settings.INGEST_RETRY_BACKOFF_SECONDS,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=settings.INGEST_MAX_RETRIES,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.INGEST_TIME_LIMIT_SECONDS,
    time_limit=settings.INGEST_TIME_LIMIT_SECONDS + 60,
)
def ingest_song_task(self: Task, song_id: str) -> None:
    pipeline.ingest(UUID(song_id))


@shared_task(name="catalog.expire_stale_uploads", acks_late=True)
def expire_stale_uploads_task() -> int:
    return services.expire_stale_uploads(older_than=timedelta(hours=settings.UPLOAD_EXPIRY_HOURS))


@shared_task(name="catalog.requeue_stalled_ingests", acks_late=True)
def requeue_stalled_ingests_task() -> int:
    return services.requeue_stalled_ingests(older_than=timedelta(minutes=settings.STALLED_INGEST_MINUTES))


@shared_task(name="catalog.analyse_clip", ignore_result=False, acks_late=False)
def analyse_clip_task(model: str, clip: dict[str, str]) -> clips.ClipAnswer:
    # Not redelivered when a worker dies: the waiting request has given up by then, and the task expires with it.
    return clips.analyse(model, clip)


@shared_task(
    name="catalog.refresh_map",
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=settings.INGEST_RETRY_BACKOFF_SECONDS,
    max_retries=3,
)
def refresh_map_task() -> str:
    return map_refresh.refresh_projection()


@shared_task(name="catalog.check_map", acks_late=True)
def check_map_task() -> bool:
    return map_refresh.refresh_if_stale()


@task_success.connect(sender=ingest_song_task)
def _ingest_changed_the_map(**_: Any) -> None:
    # A song that became ready moves the map's projection (debounced: see catalog.map_refresh).
    map_refresh.note_catalog_change(after_commit=False)

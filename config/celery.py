"""The Celery app. The default broker is kombu's filesystem transport, which needs no server."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

CLIPS_QUEUE = "clips"
INGEST_QUEUE = "ingest"

app = Celery("resonance")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _broker_options() -> dict[str, Any]:
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        queue_dir = settings.CELERY_BROKER_DIR / "queue"
        processed_dir = settings.CELERY_BROKER_DIR / "processed"
        queue_dir.mkdir(parents=True, exist_ok=True)
        processed_dir.mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed_dir),
            "control_folder": str(settings.CELERY_BROKER_DIR / "control"),
            "store_processed": False,
            "polling_interval": 0.25,
        }
    return {"visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT}


def _result_folder() -> None:
    from django.conf import settings

    backend: str = settings.CELERY_RESULT_BACKEND
    if backend.startswith("file://"):
        os.makedirs(backend.removeprefix("file://"), exist_ok=True)


_result_folder()


def _map_check_seconds() -> float:
    from django.conf import settings

    return float(settings.MAP_CHECK_SECONDS)


app.conf.update(
    broker_transport_options=_broker_options(),
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # A task running when the broker connection drops cannot be acknowledged: stop it, and Redis redelivers it.
    worker_cancel_long_running_tasks_on_connection_loss=True,
    worker_prefetch_multiplier=1,
    # Clip analyses (a person waiting on a search) go to their own queue, which workers serve ahead of ingests;
    # a worker started without -Q serves both.
    task_queues=(Queue(CLIPS_QUEUE), Queue(INGEST_QUEUE)),
    task_default_queue=INGEST_QUEUE,
    task_routes={"catalog.analyse_clip": {"queue": CLIPS_QUEUE}},
    # Only clip analyses store results, read once by the web process and then deleted; the rest expire.
    result_expires=600,
    broker_connection_retry_on_startup=True,
    # `celery -A config beat` (or a worker with -B) expires unfinished uploads hourly and requeues lost ingests.
    beat_schedule={
        "expire-stale-uploads": {"task": "catalog.expire_stale_uploads", "schedule": 3600.0},
        "requeue-stalled-ingests": {"task": "catalog.requeue_stalled_ingests", "schedule": 600.0},
        # Queues the map projection due once songs stop arriving, and one for changes whose note was lost.
        "check-map": {"task": "catalog.check_map", "schedule": _map_check_seconds()},
    },
)
app.autodiscover_tasks()


# How many worker processes share this host's cores: set in the main worker process, inherited by its forks.
_worker_processes = 1


@worker_init.connect
def _count_worker_processes(sender: Any = None, **_: Any) -> None:
    global _worker_processes
    _worker_processes = worker_processes(getattr(sender, "pool_cls", "prefork"), getattr(sender, "concurrency", 1))


def worker_processes(pool: object, concurrency: object) -> int:
    """The processes a worker runs its tasks in: --concurrency of them with prefork, one with threads or solo."""
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if not any(kind in name for kind in ("prefork", "processes")):
        return 1
    try:
        return max(1, int(str(concurrency)))
    except ValueError:  # `auto`: Celery picks one process per core
        from embeddings.cpu import usable_cores

        return usable_cores()


@worker_process_init.connect
def _warm_up_model(**_: Any) -> None:
    # Each process gets its share of the cores (torch and BLAS would take them all in every process), then loads
    # the model.
    from django.conf import settings

    from config.threads import limit_blas
    from embeddings.cpu import set_threads, threads_per_process
    from embeddings.registry import warm_up

    threads = threads_per_process(_worker_processes, configured=settings.EMBEDDING_THREADS)
    set_threads(threads)
    limit_blas(threads)
    warm_up()

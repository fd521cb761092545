"""Keeping this host's derived indexes in step with the database."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from derived.models import IndexChange
from derived.store import SegmentStore

logger = logging.getLogger(__name__)


def record_change(kind: str, song_id: Any) -> None:
    """Announce a write of a song's indexed data; call inside the transaction that writes it."""
    IndexChange.objects.create(kind=kind, song_id=song_id)


def local_stores() -> list[SegmentStore[Any, Any]]:
    """Every derived index this host keeps: one per embedding model's vectors, one for fingerprints."""
    if settings.VECTOR_BACKEND != "local":
        return []
    from embeddings.index.local import LocalVectorIndex
    from embeddings.registry import available_models, model_dim
    from fingerprints.index.local import LocalFingerprintIndex

    stores: list[SegmentStore[Any, Any]] = [
        LocalVectorIndex(model=m, dim=model_dim(m)).store for m in available_models()
    ]
    stores.append(LocalFingerprintIndex().store)
    return stores


def sync_all() -> None:
    for store in local_stores():
        store.sync()


def compact_all() -> None:
    for store in local_stores():
        if store.compact():
            logger.info("derived index %s compacted: %.1f MB on disk", store.name, store.disk_bytes() / 1e6)

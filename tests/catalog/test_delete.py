from __future__ import annotations

from pathlib import Path

import pytest

from catalog import services
from catalog.models import Song, SongStatus
from catalog.storage import StorageUnavailable
from catalog.storage.local import LocalStorage
from embeddings.index import IndexUnavailable, get_vector_index
from embeddings.index.local import LocalVectorIndex
from tests import audio

pytestmark = pytest.mark.django_db


def _fail(exc: Exception):
    def raiser(*args, **kwargs):
        raise exc

    return raiser


@pytest.mark.parametrize(
    ("target", "method", "error"),
    [
        (LocalVectorIndex, "delete", IndexUnavailable("index down")),
        (LocalStorage, "delete", StorageUnavailable("storage down")),
        (Song, "delete", RuntimeError("database hiccup")),
    ],
)
def test_a_delete_that_fails_at_any_step_hides_the_song_and_can_be_finished(
    upload, api, tmp_path: Path, settings, monkeypatch, target, method, error
) -> None:
    song = upload(audio.write(tmp_path / "doomed.mp3", audio.tone(440, 2.0)))
    other = upload(audio.write(tmp_path / "other.mp3", audio.tone(660, 2.0)))
    stored = settings.LOCAL_STORAGE_ROOT / song.object_key

    with monkeypatch.context() as patch:
        patch.setattr(target, method, _fail(error))
        with pytest.raises(type(error)):
            services.delete_song(song)

    song.refresh_from_db()
    assert song.status == SongStatus.DELETING
    assert api.get(f"/api/songs/{song.pk}/").status_code == 404
    assert str(song.pk) not in {s["id"] for s in api.get("/api/songs/").json()["results"]}
    assert str(song.pk) not in {
        n["song"]["id"] for n in api.get(f"/api/songs/{other.pk}/more-like-this/").json()["results"]
    }

    services.delete_song(song)

    assert not Song.objects.filter(pk=song.pk).exists()
    assert not stored.exists()
    assert get_vector_index("features", 222).get(song.pk) is None

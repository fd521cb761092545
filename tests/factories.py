from __future__ import annotations

import uuid

import factory

from catalog.models import Song, SongStatus, SongTag


class SongFactory(factory.django.DjangoModelFactory[Song]):
    class Meta:
        model = Song

    id = factory.LazyFunction(uuid.uuid4)
    object_key = factory.LazyAttribute(lambda song: f"uploads/{song.id}/{song.original_file_name}")
    original_file_name = factory.Sequence(lambda n: f"song-{n}.mp3")
    content_type = "audio/mpeg"
    size = 1000
    title = factory.Sequence(lambda n: f"Song {n}")
    status = SongStatus.READY


class SongTagFactory(factory.django.DjangoModelFactory[SongTag]):
    class Meta:
        model = SongTag

    song = factory.SubFactory(SongFactory)
    label = "Music"
    score = 0.5

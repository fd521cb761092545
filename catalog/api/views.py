"""Thin HTTP views over catalog services and selectors."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from catalog import maps, recordings, selectors, services
from catalog.api.pagination import SongPagination
from catalog.api.permissions import CanBrowse, CanUpload, IsStaff, OwnsSong, visitor_of
from catalog.api.serializers import (
    CatalogMapSerializer,
    DuplicateSerializer,
    DuplicatesResponseSerializer,
    ErrorSerializer,
    IdentifyResponseSerializer,
    NeighbourSerializer,
    NeighboursResponseSerializer,
    SongBriefSerializer,
    SongSerializer,
    SystemSerializer,
    TagListSerializer,
    UploadRequestSerializer,
    UploadResponseSerializer,
)
from catalog.errors import InvalidClip, LengthRequired, PayloadTooLarge
from catalog.models import Song, SongStatus
from embeddings.registry import active_model_name, model_dim


def errors(**described: str) -> dict[int, OpenApiResponse]:
    """Error responses for the schema: status code → when it happens."""
    return {
        int(code.lstrip("e")): OpenApiResponse(ErrorSerializer, description=text) for code, text in described.items()
    }


# Lists keep one song per recording unless asked for every copy.
DUPLICATES = ["collapse", "include"]
DUPLICATES_PARAMETER = OpenApiParameter(
    "duplicates", str, enum=DUPLICATES, description="collapse (default): one song per recording; include: every copy"
)
NOT_FOUND = "No song with this id."
FORBIDDEN = "Not allowed for this user (see PUBLIC_CATALOG, ALLOW_ANONYMOUS_UPLOADS, staff rights)."
THROTTLED = "Too many requests; retry after the Retry-After header."
UNAVAILABLE = "Storage, the vector index or the model is unavailable; retry later."


class UploadCreateApi(APIView):
    permission_classes = [CanBrowse, CanUpload]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "uploads"

    @extend_schema(
        summary="Register an upload and get a presigned URL",
        request=UploadRequestSerializer,
        responses={
            201: UploadResponseSerializer,
            **errors(e400="Not an accepted audio type, empty, or over MAX_UPLOAD_MB.", e403=FORBIDDEN, e429=THROTTLED),
        },
    )
    def post(self, request: Request) -> Response:
        data = UploadRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        uploader = request.user if request.user.is_authenticated else None
        visitor = "" if uploader else visitor_of(request, create=True)
        song, ticket = services.create_upload(**data.validated_data, uploaded_by=uploader, visitor=visitor)
        return Response(
            {
                "song_id": str(song.id),
                "upload": {
                    "method": ticket.method,
                    "url": request.build_absolute_uri(ticket.url),
                    "fields": ticket.fields,
                    "headers": ticket.headers,
                    "expires_in": ticket.expires_in,
                },
                "song": SongSerializer(song).data,
            },
            status=status.HTTP_201_CREATED,
        )


@extend_schema(
    summary="List and search songs",
    parameters=[
        OpenApiParameter("search", str, description="Matches title, artist, album or file name"),
        OpenApiParameter("status", str, enum=SongStatus.values),
        OpenApiParameter("tag", str, description="Only songs with this sound tag"),
        OpenApiParameter("sort", str, enum=list(selectors.SORTS)),
    ],
    responses={200: SongSerializer(many=True), **errors(e400="Unknown status.", e403=FORBIDDEN)},
)
class SongListApi(ListAPIView):
    serializer_class = SongSerializer
    pagination_class = SongPagination

    def get_queryset(self) -> Any:
        status_filter = self.request.query_params.get("status", "")
        if status_filter and status_filter not in SongStatus.values:
            raise serializers.ValidationError({"status": f"Unknown status; use one of {', '.join(SongStatus.values)}."})
        search, tag = (self.request.query_params.get(name, "").strip() for name in ("search", "tag"))
        for name, value in (("search", search), ("tag", tag)):
            if "\x00" in value:  # PostgreSQL text cannot hold NUL; SQLite would just find nothing
                raise serializers.ValidationError({name: "Null characters are not allowed."})
        self.filters = (search, status_filter, tag)
        return selectors.song_list(
            search=search, status=status_filter, tag=tag, sort=self.request.query_params.get("sort", "newest")
        )

    def get_count_queryset(self) -> Any:
        """The same songs planned for SongPagination's capped count (called after get_queryset)."""
        search, status_filter, tag = self.filters
        return selectors.song_list(search=search, status=status_filter, tag=tag, to_count=True)

    def get_known_count(self) -> int | None:
        """How many songs the list holds when that is known without counting every match: a tag alone, from the
        tag counts; no search or tag, from the table's size (see selectors.listed_count)."""
        search, status_filter, tag = self.filters
        if tag and not search and not status_filter:
            return selectors.songs_tagged(tag)
        return selectors.listed_count(status_filter) if not search and not tag else None

    def get_match_count(self) -> int | None:
        """How many songs a search alone matches, when the text index tells at once (SQLite)."""
        search, status_filter, tag = self.filters
        return selectors.search_match_count(search) if search and not status_filter and not tag else None


class TagListApi(APIView):
    @extend_schema(summary="Most common sound tags", responses={200: TagListSerializer, **errors(e403=FORBIDDEN)})
    def get(self, request: Request) -> Response:
        return Response({"results": [{"label": label, "songs": n} for label, n in selectors.tag_counts()]})


class SongDetailApi(APIView):
    def get_permissions(self) -> Sequence[Any]:
        return [IsStaff()] if self.request.method == "DELETE" else super().get_permissions()

    @extend_schema(summary="One song", responses={200: SongSerializer, **errors(e403=FORBIDDEN, e404=NOT_FOUND)})
    def get(self, request: Request, song_id: UUID) -> Response:
        return Response(SongSerializer(selectors.song_get(song_id)).data)

    @extend_schema(
        summary="Delete a song with its file and vectors (staff)",
        responses={204: None, **errors(e403=FORBIDDEN, e404=NOT_FOUND, e503=UNAVAILABLE + " The song stays hidden.")},
    )
    def delete(self, request: Request, song_id: UUID) -> Response:
        services.delete_song(selectors.song_get(song_id, include_deleting=True))
        return Response(status=status.HTTP_204_NO_CONTENT)


class _OwnedSongApi(APIView):
    permission_classes = [CanBrowse, CanUpload, OwnsSong]

    def owned_song(self, request: Request, song_id: UUID) -> Song:
        song = selectors.song_get(song_id)
        self.check_object_permissions(request, song)
        return song


class SongUploadedApi(_OwnedSongApi):
    @extend_schema(
        summary="Confirm the file is uploaded and queue its ingest",
        request=None,
        responses={
            202: SongSerializer,
            **errors(
                e400="The stored file is not the declared size; it was removed.",
                e403=FORBIDDEN,
                e404=NOT_FOUND,
                e409="The file has not arrived, or the song is failed (retry it instead).",
                e503=UNAVAILABLE,
            ),
        },
    )
    def post(self, request: Request, song_id: UUID) -> Response:
        song = services.confirm_upload(self.owned_song(request, song_id))
        return Response(SongSerializer(song).data, status=status.HTTP_202_ACCEPTED)


class SongRetryApi(_OwnedSongApi):
    @extend_schema(
        summary="Queue a failed song again",
        request=None,
        responses={
            202: SongSerializer,
            **errors(e403=FORBIDDEN, e404=NOT_FOUND, e409="Not failed, or its file is gone.", e503=UNAVAILABLE),
        },
    )
    def post(self, request: Request, song_id: UUID) -> Response:
        song = services.retry_ingest(self.owned_song(request, song_id))
        return Response(SongSerializer(song).data, status=status.HTTP_202_ACCEPTED)


class MoreLikeThisApi(APIView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "searches"

    class Params(serializers.Serializer):
        limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
        duplicates = serializers.ChoiceField(choices=DUPLICATES, default="collapse")

    @extend_schema(
        summary="Songs that sound like this one, never itself",
        parameters=[OpenApiParameter("limit", int, description="1 to 100, default 10"), DUPLICATES_PARAMETER],
        responses={
            200: NeighboursResponseSerializer,
            **errors(
                e400="Bad limit.",
                e403=FORBIDDEN,
                e404=NOT_FOUND,
                e409="Not ready, embedded with another model, or not yet in the index.",
                e429=THROTTLED,
                e503=UNAVAILABLE,
            ),
        },
    )
    def get(self, request: Request, song_id: UUID) -> Response:
        params = self.Params(data=request.query_params)
        params.is_valid(raise_exception=True)
        song = selectors.song_get(song_id, with_tags=False)
        limit = params.validated_data["limit"]
        include = params.validated_data["duplicates"] == "include"
        neighbours = selectors.more_like_this(song, limit=limit, duplicates=include)
        missing = selectors.unreturned_song_count(
            neighbours, limit=limit, model=song.embedding_model, exclude_song=song, duplicates=include
        )
        return Response(
            {"song_id": str(song.id), "model": song.embedding_model, **_neighbours_body(neighbours, missing)}
        )


class SongDuplicatesApi(APIView):
    @extend_schema(
        summary="Other songs holding the same recording (other encodings, trims, excerpts)",
        responses={200: DuplicatesResponseSerializer, **errors(e403=FORBIDDEN, e404=NOT_FOUND)},
    )
    def get(self, request: Request, song_id: UUID) -> Response:
        song = selectors.song_get(song_id, with_tags=False)
        found = recordings.duplicates_of(song)
        return Response({"song_id": str(song.id), "results": DuplicateSerializer(found, many=True).data})


def _neighbours_body(neighbours: list[selectors.Neighbour], missing: int) -> dict[str, Any]:
    return {
        "results": NeighbourSerializer(neighbours, many=True).data,
        "complete": missing == 0,
        "notice": selectors.shortfall_notice(missing),
    }


# Room for the multipart boundaries and the other form fields around the clip.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def refuse_oversize_clip(request: Request) -> None:
    """Refuse a clip larger than SIMILAR_CLIP_MAX_MB from its Content-Length, before any of the body is read."""
    length = request.META.get("CONTENT_LENGTH") or ""
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        # Its size is unknown until it is read, and Django's form parser ignores a body of unknown length.
        raise LengthRequired("Send the clip with a Content-Length; chunked bodies are not accepted.")
    limit = settings.SIMILAR_CLIP_MAX_MB * 1024 * 1024
    if length.isdigit() and int(length) > limit + MULTIPART_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"The clip is larger than {settings.SIMILAR_CLIP_MAX_MB} MB; send a shorter excerpt.")


@contextmanager
def saved_clip(clip: UploadedFile) -> Iterator[Path]:
    """A query clip as a temporary file (decoders want a path), refused when over SIMILAR_CLIP_MAX_MB."""
    if clip.size is not None and clip.size > settings.SIMILAR_CLIP_MAX_MB * 1024 * 1024:
        raise InvalidClip(f"The clip is larger than {settings.SIMILAR_CLIP_MAX_MB} MB; send a shorter excerpt.")
    with tempfile.NamedTemporaryFile(suffix=Path(clip.name or "clip").suffix.lower()[:10]) as handle:
        for chunk in clip.chunks():
            handle.write(chunk)
        handle.flush()
        yield Path(handle.name)


class SimilarToClipApi(APIView):
    """Songs that sound like an uploaded clip; the clip is analysed and discarded, never catalogued."""

    parser_classes = [MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "searches"

    class Params(serializers.Serializer):
        clip = serializers.FileField()
        limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
        duplicates = serializers.ChoiceField(choices=DUPLICATES, default="collapse")

    @extend_schema(
        summary="Songs that sound like an uploaded clip (the clip is not kept)",
        request={"multipart/form-data": Params},
        responses={
            200: NeighboursResponseSerializer,
            **errors(
                e400="Missing or undecodable clip.",
                e403=FORBIDDEN,
                e413="Clip over SIMILAR_CLIP_MAX_MB.",
                e429=THROTTLED,
                e503=UNAVAILABLE,
            ),
        },
    )
    def post(self, request: Request) -> Response:
        refuse_oversize_clip(request)
        params = self.Params(data=request.data)
        params.is_valid(raise_exception=True)
        limit = params.validated_data["limit"]
        include = params.validated_data["duplicates"] == "include"
        with saved_clip(params.validated_data["clip"]) as path:
            neighbours = selectors.similar_to_clip(path, limit=limit, duplicates=include)
        model = active_model_name()
        missing = selectors.unreturned_song_count(neighbours, limit=limit, model=model, duplicates=include)
        return Response({"model": model, **_neighbours_body(neighbours, missing)})


class SystemApi(APIView):
    @extend_schema(summary="Active model, backends and upload limits", responses={200: SystemSerializer})
    def get(self, request: Request) -> Response:
        model = active_model_name()
        return Response(
            {
                "embedding_model": model,
                "embedding_dim": model_dim(model),
                "vector_backend": settings.VECTOR_BACKEND,
                "storage_backend": settings.STORAGE_BACKEND,
                "max_upload_mb": settings.MAX_UPLOAD_MB,
                "accepted_content_types": sorted(services.AUDIO_CONTENT_TYPES),
            }
        )


class CatalogMapApi(APIView):
    """Every ready song of the active model in 2-D (a cached PCA of the embeddings), grouped by album or tag."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "searches"

    class Params(serializers.Serializer):
        colour_by = serializers.ChoiceField(choices=list(maps.COLOUR_BY), default="album")

    @extend_schema(
        summary="A 2-D map of the catalog by sound, coloured by album or top tag",
        parameters=[OpenApiParameter("colour_by", str, enum=list(maps.COLOUR_BY), description="Default album")],
        responses={
            200: CatalogMapSerializer,
            **errors(e400="Unknown colour_by.", e403=FORBIDDEN, e429=THROTTLED, e503=UNAVAILABLE),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        params = self.Params(data=request.query_params)
        params.is_valid(raise_exception=True)
        # Built once per catalog change and kept as bytes: rendering 100k points per request would cost seconds.
        body = maps.map_body(colour_by=params.validated_data["colour_by"])
        return HttpResponse(body, content_type="application/json")


class IdentifyApi(APIView):
    """Which song exactly: landmark fingerprints of a clip matched against every catalog song."""

    parser_classes = [MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "searches"

    @extend_schema(
        summary="Identify the catalog song a clip was cut from",
        request={"multipart/form-data": SimilarToClipApi.Params},
        responses={
            200: IdentifyResponseSerializer,
            **errors(
                e400="Missing or undecodable clip.",
                e403=FORBIDDEN,
                e413="Clip over SIMILAR_CLIP_MAX_MB.",
                e429=THROTTLED,
                e503=UNAVAILABLE,
            ),
        },
    )
    def post(self, request: Request) -> Response:
        refuse_oversize_clip(request)
        params = SimilarToClipApi.Params(data=request.data)
        params.is_valid(raise_exception=True)
        with saved_clip(params.validated_data["clip"]) as path:
            found = selectors.identify_clip(path)
        if found is None:
            return Response({"match": None, "detail": "No catalog song matches this clip."})
        return Response(
            {
                "match": {
                    "song": SongBriefSerializer(found.song).data,
                    "offset_seconds": round(found.offset_seconds, 2),
                    "confidence": round(found.confidence, 3),
                },
                "runner_up": None
                if found.runner_up is None
                else {
                    "song": SongBriefSerializer(found.runner_up).data,
                    "offset_seconds": found.runner_up_offset_seconds,
                },
            }
        )

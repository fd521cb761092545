"""Thin HTTP views over playlist services and selectors; every playlist belongs to a logged-in user."""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.models import User
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.permissions import CanBrowse
from catalog.api.serializers import SongSerializer
from catalog.api.views import errors
from catalog.models import Song
from playlists import exports, selectors, services
from playlists.api.serializers import (
    PlaylistSerializer,
    PlaylistSummarySerializer,
    PlaylistUpdateSerializer,
    PlaylistWriteSerializer,
)
from playlists.models import Playlist

LOGIN = "Log in to keep playlists."
NOT_FOUND = "No playlist with this id among yours."


def _body(playlist: Playlist) -> object:
    return PlaylistSerializer(playlist, context={"songs": selectors.playlist_songs(playlist)}).data


class PlaylistListApi(APIView):
    permission_classes = [CanBrowse, IsAuthenticated]

    @extend_schema(
        summary="Your playlists", responses={200: PlaylistSummarySerializer(many=True), **errors(e403=LOGIN)}
    )
    def get(self, request: Request) -> Response:
        return Response(PlaylistSummarySerializer(selectors.playlists_of(request.user), many=True).data)

    @extend_schema(
        summary="Save songs (a radio, a path, songs picked by hand) as a playlist",
        request=PlaylistWriteSerializer,
        responses={201: PlaylistSerializer, **errors(e400="No name, too many songs, or an unknown song.", e403=LOGIN)},
    )
    def post(self, request: Request) -> Response:
        data = PlaylistWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assert isinstance(request.user, User)  # IsAuthenticated let only users in
        playlist = services.create_playlist(
            request.user, name=data.validated_data["name"], song_ids=data.validated_data["songs"]
        )
        return Response(_body(playlist), status=status.HTTP_201_CREATED)


class PlaylistDetailApi(APIView):
    permission_classes = [CanBrowse, IsAuthenticated]

    @extend_schema(summary="One playlist", responses={200: PlaylistSerializer, **errors(e403=LOGIN, e404=NOT_FOUND)})
    def get(self, request: Request, playlist_id: UUID) -> Response:
        return Response(_body(selectors.playlist_get(playlist_id, request.user)))

    @extend_schema(
        summary="Rename a playlist and/or replace its songs (in their new order)",
        request=PlaylistUpdateSerializer,
        responses={200: PlaylistSerializer, **errors(e400="Bad name or songs.", e403=LOGIN, e404=NOT_FOUND)},
    )
    def patch(self, request: Request, playlist_id: UUID) -> Response:
        playlist = selectors.playlist_get(playlist_id, request.user)
        data = PlaylistUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = services.update_playlist(
            playlist, name=data.validated_data.get("name"), song_ids=data.validated_data.get("songs")
        )
        return Response(_body(updated))

    @extend_schema(summary="Delete a playlist", responses={204: None, **errors(e403=LOGIN, e404=NOT_FOUND)})
    def delete(self, request: Request, playlist_id: UUID) -> Response:
        services.delete_playlist(selectors.playlist_get(playlist_id, request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


def _file_name(playlist: Playlist, suffix: str) -> str:
    from catalog.services import safe_file_name

    return f"{safe_file_name(playlist.name)}.{suffix}"


class PlaylistExportApi(APIView):
    permission_classes = [CanBrowse, IsAuthenticated]

    @extend_schema(
        summary="A playlist as M3U8 or XSPF, with titles, durations and playback URLs",
        responses={
            (200, "audio/x-mpegurl"): OpenApiResponse(str, description="Extended M3U, UTF-8"),
            (200, "application/xspf+xml"): OpenApiResponse(str, description="XSPF 1"),
            **errors(e403=LOGIN, e404=NOT_FOUND),
        },
    )
    def get(self, request: Request, playlist_id: UUID, format_name: str) -> HttpResponse:
        playlist = selectors.playlist_get(playlist_id, request.user)
        songs = selectors.playlist_songs(playlist)
        playback = SongSerializer().get_playback_url

        def url_of(song: Song) -> str:
            return request.build_absolute_uri(playback(song) or "")

        if format_name == "m3u8":
            response = HttpResponse(exports.m3u8(playlist.name, songs, url_of), content_type="audio/x-mpegurl")
        else:
            response = HttpResponse(exports.xspf(playlist.name, songs, url_of), content_type="application/xspf+xml")
        response["Content-Disposition"] = f'attachment; filename="{_file_name(playlist, format_name)}"'
        return response

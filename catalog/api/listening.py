"""Radio and song paths over HTTP: thin views over catalog.radio."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from catalog import radio
from catalog.api.serializers import PlayableSongSerializer
from catalog.api.views import DUPLICATES, DUPLICATES_PARAMETER, FORBIDDEN, THROTTLED, UNAVAILABLE, errors
from catalog.models import Song
from embeddings.registry import active_model_name


def _song_ids(help_text: str, *, required: bool = False) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.UUIDField(),
        required=required,
        default=list,
        allow_empty=not required,
        max_length=settings.RADIO_MAX_INPUT_SONGS,
        help_text=help_text,
    )


class RadioRequestSerializer(serializers.Serializer):
    seeds = serializers.ListField(
        child=serializers.UUIDField(), min_length=1, max_length=radio.MAX_SEEDS, help_text="Songs to start from"
    )
    avoid = _song_ids("Songs to steer away from (never played either)")
    played = _song_ids("Songs already played: never returned again")
    skipped = _song_ids("Songs the listener skipped: never returned, and their sound is steered away from")
    length = serializers.IntegerField(min_value=1, max_value=settings.RADIO_MAX_LENGTH, default=20)
    relevance = serializers.FloatField(
        min_value=0.0, max_value=1.0, required=False, help_text="1: closest to the seeds only; 0: variety only"
    )
    duplicates = serializers.ChoiceField(choices=DUPLICATES, default="collapse")


class PickSerializer(serializers.Serializer):
    song = PlayableSongSerializer()
    score = serializers.FloatField(help_text="Closeness to where the radio or path stood when it was chosen")


class RadioResponseSerializer(serializers.Serializer):
    model = serializers.CharField()
    results = PickSerializer(many=True)


class PathResponseSerializer(serializers.Serializer):
    model = serializers.CharField()
    start = PlayableSongSerializer()
    end = PlayableSongSerializer()
    results = PickSerializer(many=True)


def _picks(picks: list[radio.Pick]) -> Any:
    return PickSerializer(picks, many=True).data


class RadioApi(APIView):
    """What to play next after seed songs; stateless, so the client sends what it played and skipped."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "searches"

    @extend_schema(
        summary="A radio: songs to play after one or more seeds",
        request=RadioRequestSerializer,
        responses={
            200: RadioResponseSerializer,
            **errors(
                e400="Bad seeds, length or relevance.",
                e403=FORBIDDEN,
                e404="A seed does not exist (unknown steer-away, played or skipped ids are ignored).",
                e409="A seed is not ready, embedded with another model, or not in the index yet.",
                e429=THROTTLED,
                e503=UNAVAILABLE,
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = RadioRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        picks = radio.radio(
            params["seeds"],
            length=params["length"],
            avoid=[*params["avoid"], *params["skipped"]],
            exclude=params["played"],
            relevance=params.get("relevance"),
            duplicates=params["duplicates"] == "include",
        )
        return Response({"model": active_model_name(), "results": _picks(picks)})


class PathApi(APIView):
    """Songs that lead evenly from one song to another."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "searches"

    class Params(serializers.Serializer):
        from_ = serializers.UUIDField()
        to = serializers.UUIDField()
        steps = serializers.IntegerField(min_value=1, max_value=settings.RADIO_MAX_LENGTH, default=8)
        duplicates = serializers.ChoiceField(choices=DUPLICATES, default="collapse")

    @extend_schema(
        summary="A path of songs from one song to another",
        parameters=[
            OpenApiParameter("from", str, required=True, description="The song to start from"),
            OpenApiParameter("to", str, required=True, description="The song to end at"),
            OpenApiParameter("steps", int, description=f"Songs between them, 1 to {settings.RADIO_MAX_LENGTH}"),
            DUPLICATES_PARAMETER,
        ],
        responses={
            200: PathResponseSerializer,
            **errors(
                e400="Missing or bad from, to or steps.",
                e403=FORBIDDEN,
                e404="No song with that id.",
                e409="The two songs are one, not ready, or embedded with another model.",
                e429=THROTTLED,
                e503=UNAVAILABLE,
            ),
        },
    )
    def get(self, request: Request) -> Response:
        query = request.query_params.dict()
        if "from" in query:
            query["from_"] = query.pop("from")
        params = self.Params(data=query)
        params.is_valid(raise_exception=True)
        values = params.validated_data
        picks = radio.song_path(
            values["from_"], values["to"], steps=values["steps"], duplicates=values["duplicates"] == "include"
        )
        ends = Song.objects.in_bulk([values["from_"], values["to"]])
        return Response(
            {
                "model": active_model_name(),
                "start": PlayableSongSerializer(ends[values["from_"]]).data,
                "end": PlayableSongSerializer(ends[values["to"]]).data,
                "results": _picks(picks),
            }
        )

"""Pages of the song list whose count stops early for searches and tags, so a broad filter never counts every row."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.core.paginator import Paginator
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

# A text search or tag filter counts its matches exactly up to this many (or to the end of the page asked for).
SEARCH_COUNT_LIMIT = 1000
# No catalog holds more rows; a larger page number is past the end either way (and overflows a SQL LIMIT).
_MAX_ROWS = 2**31 - 1


class _CountedPaginator(Paginator):
    """A paginator told its count, which may be a lower bound one past the last row it needs."""

    def __init__(self, object_list: Any, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @property
    def count(self) -> int:
        return self._known_count


class SongPagination(PageNumberPagination):
    """`count` is exact unless `count_exact` is false: then at least that many songs match (the page says "1000+")."""

    count_exact = True

    def paginate_queryset(self, queryset: Any, request: Request, view: APIView | None = None) -> Any:
        known = getattr(view, "get_known_count", lambda: None)()  # e.g. a tag's songs, from the shared tag counts
        if not any(request.query_params.get(name, "").strip() for name in ("search", "tag")):
            self.count_exact = True
            if known is not None:
                self.django_paginator_class = partial(_CountedPaginator, count=known)  # type: ignore[assignment]
            return super().paginate_queryset(queryset, request, view)
        size = self.get_page_size(request) or 25
        try:
            number = max(1, int(request.query_params.get(self.page_query_param, 1)))
        except ValueError:
            number = 1  # the paginator below refuses it with DRF's usual message
        limit = max(SEARCH_COUNT_LIMIT, min(number * size, _MAX_ROWS))
        matched = getattr(view, "get_match_count", lambda: None)() if known is None else None
        if known is not None:
            found, limit = known, max(known, limit)
        elif matched is not None:
            found = min(matched, limit + 1)  # said as a count stopping at the limit says it
        else:
            count_queryset = getattr(view, "get_count_queryset", None)  # the same songs, planned for counting
            counted = count_queryset() if count_queryset is not None else queryset
            found = counted.order_by()[: limit + 1].count()  # stops at limit + 1 rows, in no particular order
        self.count_exact = found <= limit
        self.shown_count = found if self.count_exact else limit
        self.django_paginator_class = partial(_CountedPaginator, count=found)  # type: ignore[assignment]
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        if not self.count_exact:
            response.data["count"] = self.shown_count
        response.data["count_exact"] = self.count_exact
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["count_exact"] = {
            "type": "boolean",
            "description": f"False when a search or tag matched more than {SEARCH_COUNT_LIMIT} songs (or more than the "
            "page asked for reaches): `count` is then a lower bound.",
        }
        return paginated

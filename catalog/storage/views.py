"""HTTP endpoints of the local storage backend: the signed PUT target and signed playback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO, cast

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from catalog.storage import get_storage
from catalog.storage.local import LocalStorage, UploadRejected

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _local() -> LocalStorage | None:
    storage = get_storage()
    return storage if isinstance(storage, LocalStorage) else None


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


# The signed token authorises the request the way an S3 signature would; there is no session to protect.
@csrf_exempt
@require_http_methods(["PUT", "OPTIONS"])
def receive_upload(request: HttpRequest, token: str) -> HttpResponse:
    storage = _local()
    if storage is None or settings.STORAGE_BACKEND != "local":
        return _error(404, "Local uploads are disabled.")
    if request.method == "OPTIONS":
        return HttpResponse(status=204)
    length_header = request.META.get("CONTENT_LENGTH") or ""
    try:
        storage.receive_upload(
            token,
            content_type=request.META.get("CONTENT_TYPE", ""),
            content_length=int(length_header) if length_header.isdigit() else None,
            body=cast(BinaryIO, request),
        )
    except UploadRejected as exc:
        return _error(exc.status, str(exc))
    return HttpResponse(status=200)


@require_http_methods(["GET", "HEAD"])
def serve_media(request: HttpRequest, token: str) -> HttpResponseBase:
    storage = _local()
    if storage is None:
        return _error(404, "Local media is disabled.")
    try:
        path, content_type = storage.resolve_playback(token)
    except UploadRejected as exc:
        return _error(exc.status, str(exc))
    size = path.stat().st_size
    match = _RANGE.match(request.headers.get("Range", ""))
    if match is None:
        response: HttpResponseBase = FileResponse(open(path, "rb"), content_type=content_type)  # noqa: SIM115 (closed by FileResponse)
        response["Accept-Ranges"] = "bytes"
        return response
    # Range requests let the audio element seek without downloading the whole file.
    start_text, end_text = match.groups()
    if start_text:
        start = int(start_text)
        end = min(int(end_text), size - 1) if end_text else size - 1
    else:
        start = max(size - int(end_text or 0), 0)
        end = size - 1
    if start >= size or start > end:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    handle = open(path, "rb")  # noqa: SIM115 (closed by the generator below)
    handle.seek(start)
    length = end - start + 1

    def chunks() -> Iterator[bytes]:
        remaining = length
        while remaining > 0:
            block = handle.read(min(65536, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
        handle.close()

    response = StreamingHttpResponse(chunks(), status=206, content_type=content_type)
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    return response

"""The map API's columnar answer read back as one dict per point, the way the map page reads it."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import numpy as np


def map_points(body: dict[str, Any]) -> list[dict[str, Any]]:
    ids = base64.b64decode(body["ids"])
    xs = np.frombuffer(base64.b64decode(body["x"]), dtype="<f4")
    ys = np.frombuffer(base64.b64decode(body["y"]), dtype="<f4")
    groups = np.frombuffer(base64.b64decode(body["group"]), dtype="<u4")
    assert len(ids) == 16 * body["count"] and len(xs) == len(ys) == len(groups) == body["count"]
    assert len(body["titles"]) == len(body["artists"]) == body["count"]
    return [
        {
            "id": str(uuid.UUID(bytes=ids[16 * i : 16 * i + 16])),
            "title": body["titles"][i],
            "artist": body["artists"][i],
            "x": float(xs[i]),
            "y": float(ys[i]),
            "group": body["groups"][groups[i]],
        }
        for i in range(body["count"])
    ]

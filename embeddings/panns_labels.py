"""The AudioSet class names that turn PANNs' clipwise probabilities into sound tags.

The names come only from a label file (`class_labels_indices.csv`: `index,mid,display_name`); without
one that names exactly the network's classes, songs get no tags rather than invented names.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from embeddings.base import FloatArray, Tag

LABELS_FILE_NAME = "class_labels_indices.csv"
LABELS_URL = "https://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv"
# The real file is about 15 KB; anything far larger is not a label file.
LABELS_MAX_BYTES = 1_000_000


class LabelFileError(ValueError):
    """The label file is missing or does not name the network's classes; says what is wrong."""


def read_labels(path: Path, *, classes_num: int) -> list[str]:
    """The class names of an AudioSet-format CSV, by class index; exactly `classes_num` of them."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LabelFileError(f"there is no label file at {path}") from None
    except OSError as exc:
        raise LabelFileError(f"the label file {path} cannot be read ({exc})") from exc
    if size > LABELS_MAX_BYTES:
        raise LabelFileError(f"{path} is {size} bytes, far too large for a label file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LabelFileError(f"the label file {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not rows:
        raise LabelFileError(f"the label file {path} is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    if "index" not in header or "display_name" not in header:
        raise LabelFileError(f"{path} has no `index` and `display_name` columns (header: {','.join(rows[0])})")
    index_column, name_column = header.index("index"), header.index("display_name")
    names: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            index = int(row[index_column])
            name = row[name_column].strip()
        except (IndexError, ValueError):
            raise LabelFileError(f"{path} line {line} is not `index,mid,display_name`: {row}") from None
        if not name or index in names or not 0 <= index < classes_num:
            raise LabelFileError(f"{path} line {line} has an empty, repeated or out-of-range class: {row}")
        names[index] = name
    if len(names) != classes_num:
        raise LabelFileError(f"{path} names {len(names)} classes, but the network has {classes_num}")
    return [names[index] for index in range(classes_num)]


def top_tags(clipwise: FloatArray, labels: list[str], *, limit: int, min_score: float) -> list[Tag]:
    """The `limit` most probable classes scoring at least `min_score`, most probable first."""
    if limit <= 0 or len(labels) != clipwise.shape[0]:
        return []
    # A stable sort of the negated scores keeps ties in class order, so the result is deterministic.
    order = np.argsort(-clipwise, kind="stable")[:limit]
    return [Tag(label=labels[i], score=float(clipwise[i])) for i in order if clipwise[i] >= min_score]

"""A playlist as a file players open: M3U8 (extended M3U in UTF-8) and XSPF, with titles, durations and the songs'
playback URLs (presigned ones expire after PLAYBACK_URL_EXPIRY_SECONDS)."""

from __future__ import annotations

from collections.abc import Callable
from xml.etree import ElementTree as ET

from catalog.models import Song

XSPF_NAMESPACE = "http://xspf.org/ns/0/"


def _line(text: str) -> str:
    """One line of M3U: line breaks in user text would start a new entry."""
    return " ".join(text.split())


def m3u8(name: str, songs: list[Song], url_of: Callable[[Song], str]) -> str:
    lines = ["#EXTM3U", f"#PLAYLIST:{_line(name)}"]
    for song in songs:
        seconds = round(song.duration_seconds) if song.duration_seconds else -1
        label = f"{song.artist} - {song.display_title}" if song.artist else song.display_title
        lines.append(f"#EXTINF:{seconds},{_line(label)}")
        lines.append(url_of(song))
    return "\n".join(lines) + "\n"


def xspf(name: str, songs: list[Song], url_of: Callable[[Song], str]) -> bytes:
    ET.register_namespace("", XSPF_NAMESPACE)
    root = ET.Element(f"{{{XSPF_NAMESPACE}}}playlist", version="1")
    ET.SubElement(root, f"{{{XSPF_NAMESPACE}}}title").text = name
    tracks = ET.SubElement(root, f"{{{XSPF_NAMESPACE}}}trackList")
    for song in songs:
        track = ET.SubElement(tracks, f"{{{XSPF_NAMESPACE}}}track")
        ET.SubElement(track, f"{{{XSPF_NAMESPACE}}}location").text = url_of(song)
        ET.SubElement(track, f"{{{XSPF_NAMESPACE}}}title").text = song.display_title
        if song.artist:
            ET.SubElement(track, f"{{{XSPF_NAMESPACE}}}creator").text = song.artist
        if song.album:
            ET.SubElement(track, f"{{{XSPF_NAMESPACE}}}album").text = song.album
        if song.duration_seconds:
            ET.SubElement(track, f"{{{XSPF_NAMESPACE}}}duration").text = str(round(song.duration_seconds * 1000))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)

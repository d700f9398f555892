"""Proof documents people upload (PDF, JPEG, PNG): what may be stored for staff to open.

The type comes from the content's signature, never from the name. A PDF is refused when it can
act on its own: scripts, launch actions, embedded files, XFA forms, rich media — whether the
name is spelt plainly, with #hh escapes (/J#61vaScript), or hidden in a compressed object
stream. Compressed streams are inflated only up to a fixed budget, so a "PDF bomb" is refused
as too large to check instead of being unpacked; nothing is rendered or executed.
"""

from __future__ import annotations

import re
import zlib

# Names whose presence means the document can do something when opened.
ACTIVE_NAMES = frozenset(
    {
        b"JavaScript",
        b"JS",
        b"Launch",
        b"EmbeddedFile",
        b"EmbeddedFiles",
        b"RichMedia",
        b"XFA",
        b"SubmitForm",
        b"ImportData",
        b"GoToE",
    }
)
INFLATE_BUDGET = 20 * 1024 * 1024  # bytes of inflated object streams checked per document

_NAME = re.compile(rb"/([^\s/<>\[\]()%{}]+)")
_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_STREAM = re.compile(rb"stream\r?\n")


class TooLargeToCheck(Exception):
    """The compressed streams inflate beyond INFLATE_BUDGET."""


def _names(data: bytes) -> set[bytes]:
    return {_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), n) for n in _NAME.findall(data)}


def _object_streams(data: bytes) -> list[bytes]:
    """Inflated object streams (where PDF 1.5+ files keep most dictionaries), within budget."""
    budget = INFLATE_BUDGET
    found = []
    for match in _STREAM.finditer(data):
        head = data[max(0, match.start() - 1024) : match.start()]
        head = head[head.rfind(b"<<") :] if b"<<" in head else head
        names = _names(head)
        if b"ObjStm" not in names:
            continue
        if b"FlateDecode" not in names:
            found.append(data[match.end() : data.find(b"endstream", match.end())])
            continue
        end = data.find(b"endstream", match.end())
        inflater = zlib.decompressobj()
        try:
            chunk = inflater.decompress(data[match.end() : end if end >= 0 else None], budget + 1)
        except zlib.error:
            continue  # damaged stream: nothing readable in it to act on
        if len(chunk) > budget or inflater.unconsumed_tail:
            raise TooLargeToCheck
        budget -= len(chunk)
        found.append(chunk)
    return found


def pdf_active_content(data: bytes) -> bytes | None:
    """The first name that lets this PDF act on its own, or None. Raises TooLargeToCheck."""
    for part in (data, *_object_streams(data)):
        active = _names(part) & ACTIVE_NAMES
        if active:
            return min(active)
    return None

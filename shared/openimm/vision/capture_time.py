"""When a photo was taken, from its EXIF DateTimeOriginal and SubSecTimeOriginal.

Cameras write the local wall-clock time ("YYYY:MM:DD HH:MM:SS"), optionally the fraction
of a second (SubSecTimeOriginal, digits) and, since EXIF 2.31, the UTC offset
(OffsetTimeOriginal, "+HH:MM"). The result is POSIX seconds: exact when the offset is
present, otherwise the wall clock read as if it were UTC. Burst grouping compares photos
of one camera, so only differences matter and they are right either way.

Only the file's header is parsed (Pillow opens lazily, no pixel is decoded); anything
missing, malformed or unreadable gives None, never an error.
"""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone

from PIL import Image

from openimm.vision.decode import FORMATS

EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
OFFSET_TIME_ORIGINAL = 0x9011
SUBSEC_TIME_ORIGINAL = 0x9291

_DATE = re.compile(r"^\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^\s*([+-])(\d{2}):(\d{2})\s*$")
_SUBSEC = re.compile(r"^\s*(\d{1,9})")


def capture_time(data: bytes | None) -> float | None:
    """POSIX seconds of the EXIF DateTimeOriginal (+ sub-seconds) of an image file, or None."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            exif = image.getexif().get_ifd(EXIF_IFD)
    except Exception:  # untrusted metadata: no capture time rather than a failed file
        return None
    return parse_capture_time(
        exif.get(DATE_TIME_ORIGINAL),
        exif.get(SUBSEC_TIME_ORIGINAL),
        exif.get(OFFSET_TIME_ORIGINAL),
    )


def parse_capture_time(
    date_time: object, subsec: object = None, offset: object = None
) -> float | None:
    """POSIX seconds from EXIF date, sub-second and offset strings; None if the date is bad."""
    found = _DATE.match(_text(date_time))
    if found is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in found.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:  # "0000:00:00 00:00:00" is what cameras write for "unknown"
        return None
    zone = _OFFSET.match(_text(offset))
    if zone is not None:
        sign = -1 if zone.group(1) == "-" else 1
        moment -= sign * timedelta(hours=int(zone.group(2)), minutes=int(zone.group(3)))
    fraction = _SUBSEC.match(_text(subsec))
    seconds = moment.timestamp()
    if fraction is not None:
        # "SubSec" digits are the decimal fraction: "5" is 0.5 s, "050" 0.05 s
        seconds += int(fraction.group(1)) / 10 ** len(fraction.group(1))
    return seconds


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace").rstrip("\x00")
    return value.rstrip("\x00") if isinstance(value, str) else ""

"""What the decoding libraries say while they decode, kept with the image instead of on the terminal.

libjpeg, libpng and libtiff (inside OpenCV) write their warnings, such as ``Corrupt JPEG data: 1
extraneous bytes before marker 0xd9``, straight to file descriptor 2, and pydicom issues Python
warnings. A nightly ``scan --quiet`` must stay quiet and a damaged file must be flagged, so both
are collected during a decode and become the image's warnings (the row's ``flag_detail``).
Quoted values are cut out of pydicom's messages: they could hold a patient's name.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

_DESCRIPTOR_LOCK = threading.Lock()
"""File descriptor 2 belongs to the whole process: one capture at a time (explain decodes in threads)."""
_LIBRARY_LINE = re.compile(r"JPEG|libpng|TIFF|\[ ?WARN|Corrupt|Premature|Invalid SOS|extraneous", re.IGNORECASE)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_CAPTURE_FILES: dict[int, BinaryIO] = {}
"""One capture file per process (keyed by pid: a forked worker opens its own), emptied before each
use: creating a file per decode was a tenth of a millisecond of CPU, a tenth of scan's budget per file."""


def _capture_file() -> BinaryIO:
    """This process's capture file, empty."""
    capture = _CAPTURE_FILES.get(os.getpid())
    if capture is None:
        capture = _CAPTURE_FILES.setdefault(os.getpid(), tempfile.TemporaryFile())
        atexit.register(capture.close)
    capture.seek(0)
    capture.truncate()
    return capture


@contextmanager
def decoder_messages() -> Iterator[list[str]]:
    """Collect the decoding libraries' messages issued in the block into the yielded list.

    Lines that are not a library's (e.g. a progress line another thread printed meanwhile) are
    passed on to the real stderr.
    """
    messages: list[str] = []
    with _DESCRIPTOR_LOCK, warnings.catch_warnings(record=True) as caught:
        capture = _capture_file()
        warnings.simplefilter("always")
        saved = _redirect_stderr(capture.fileno())
        try:
            yield messages
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
            if capture.tell():  # something was written: usually nothing is
                capture.seek(0)
                messages.extend(_library_lines(capture.read().decode("utf-8", errors="replace")))
            messages.extend(python_warning_text(warning.message) for warning in caught)


def python_warning_text(message: Warning | str) -> str:
    """A Python warning's text with quoted values cut out.

    Examples
    --------
    >>> python_warning_text(UserWarning("Invalid value for VR PN: 'Doe^Jane'"))
    'decoder warning: Invalid value for VR PN: ...'
    """
    return "decoder warning: " + _QUOTED.sub("...", str(message)).strip()


def _redirect_stderr(target: int) -> int | None:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to keep quiet
        return None
    os.dup2(target, 2)
    return saved


def _library_lines(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        if _LIBRARY_LINE.search(line):
            found.append("decoder: " + line.strip())
        elif line.strip():
            print(line, file=sys.stderr)
    return found

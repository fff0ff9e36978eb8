"""How mriscan recognises its own outputs, so that a scan never takes them for patient images.

Two marks: every folder ``explain`` writes into holds an empty ``.mriscan-output`` file (the
folder and everything under it is then mriscan's), and every overlay PNG carries a text chunk
``mriscan-overlay`` and a ``.lime.png``/``.gradcam.png`` name (for overlays found anywhere else).
"""

from __future__ import annotations

import os
from pathlib import Path

OUTPUT_FOLDER_MARKER = ".mriscan-output"
OVERLAY_MARKER_KEY = "mriscan-overlay"
OVERLAY_SUFFIXES = {"lime": ".lime.png", "gradcam": ".gradcam.png"}


def mark_output_folder(folder: Path) -> None:
    """Mark ``folder`` as mriscan's output (idempotent)."""
    (folder / OUTPUT_FOLDER_MARKER).touch(exist_ok=True)


def is_output_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds the output marker."""
    return os.path.isfile(os.path.join(folder, OUTPUT_FOLDER_MARKER))


def is_mriscan_overlay(path: str | Path) -> bool:
    """True when ``path`` has an overlay's name and is a PNG that carries mriscan's overlay marker."""
    if not str(path).endswith(tuple(OVERLAY_SUFFIXES.values())):
        return False
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            return picture.format == "PNG" and OVERLAY_MARKER_KEY in getattr(picture, "text", {})
    except (OSError, UnidentifiedImageError):
        return False

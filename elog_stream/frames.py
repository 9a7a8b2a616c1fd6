"""The viewer socket's frames (docs/protocol.md): an image's header is encoded once per image,
on first use, and the same text is then sent to every viewer, instead of once per viewer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import TopicImage


def message(body: Mapping[str, object]) -> str:
    """``body`` as the text of a frame: strict JSON, since a NaN or Infinity would make
    browsers' ``JSON.parse`` drop the frame (raises ValueError)."""
    return json.dumps(body, allow_nan=False)


class ImageFrames:
    """An image's ``image`` header as sent with its bytes (``header``) and alone, with
    ``"bytes": false`` (``announcement``). Immutable; built by ``TopicImage.frames``."""

    __slots__ = ("announcement", "header")

    def __init__(self, image: TopicImage) -> None:
        header = {"type": "image", **image.metadata()}
        self.header = message(header)
        self.announcement = message({**header, "bytes": False})

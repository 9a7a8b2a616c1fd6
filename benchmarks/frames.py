"""The image bytes every benchmark publishes, and how a client tells which one arrived."""

from __future__ import annotations

import os
import resource

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ID_AT = slice(8, 16)


def frame_bytes(size: int, ident: int) -> bytes:
    """``size`` bytes that pass the PNG magic-byte check and carry ``ident``.

    The rest is random, hence incompressible like a real PNG.
    """
    return PNG_SIGNATURE + ident.to_bytes(8, "big") + os.urandom(max(size - 16, 0))


def frame_id(data: bytes) -> int:
    """The ``ident`` that ``frame_bytes`` put into ``data``."""
    return int.from_bytes(data[ID_AT], "big")


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (children inherit it).

    Returns the limit now in force. Raising the hard limit needs CAP_SYS_RESOURCE.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard

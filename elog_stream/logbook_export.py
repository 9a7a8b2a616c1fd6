"""An experiment's logbook taken away: one self-contained HTML file, or a ZIP of images + JSON.

Both are produced as a stream of chunks, one entry at a time (its image read, written, let go),
so memory stays bounded by one image whatever the logbook's size; the HTTP routes stream them
and the CLI writes them to a file. Every text read from Redis goes into the HTML escaped, and
the file forbids scripts itself (its own Content-Security-Policy), so a comment can never run.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import mimetypes
import zipfile
from collections.abc import AsyncIterator

from .errors import CorruptTopicError
from .logbook import MAX_PAGE, Entry
from .logbook_store import LogbookStore

# No script at all; images only from the file itself; the one style sheet below.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem;
  color: #1d2330; background: #fff; }
header { border-bottom: 1px solid #ccd; margin-bottom: 1.5rem; }
article { border-bottom: 1px solid #dde; padding: 1rem 0 1.5rem; }
article h2 { font-size: 1.1rem; margin: 0 0 .25rem; overflow-wrap: anywhere; }
.meta { color: #556; margin: 0 0 .5rem; font-size: .9rem; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #dde; }
.comment { white-space: pre-wrap; overflow-wrap: anywhere; font: inherit; margin: .75rem 0 0; }
.description { color: #556; white-space: pre-wrap; overflow-wrap: anywhere; }
.retracted { opacity: .6; }
.retraction { color: #a11; font-weight: 600; }
.missing { color: #a11; }
"""


async def all_entries(logbook: LogbookStore, experiment: str) -> AsyncIterator[Entry]:
    """Every usable entry of the experiment's logbook, newest first, a page at a time."""
    before: str | None = None
    while True:
        page = await logbook.page(experiment, before, MAX_PAGE, [])
        for entry in page.entries:
            yield entry
        if page.next_before is None:
            return
        before = page.next_before


async def html_export(logbook: LogbookStore, experiment: str) -> AsyncIterator[bytes]:
    """The logbook as one HTML file: images as data: URLs, text escaped, retractions shown."""
    title = html.escape(f"Logbook of {experiment}")
    yield (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<header><h1>{title}</h1><p class="meta">Exported {_when(_now())} by elog-stream; '
        "newest first.</p></header>\n"
    ).encode()
    count = 0
    async for entry in all_entries(logbook, experiment):
        count += 1
        yield (await _html_entry(logbook, entry)).encode()
    yield f'<footer><p class="meta">{count} entries.</p></footer>\n</body>\n</html>\n'.encode()


async def _html_entry(logbook: LogbookStore, entry: Entry) -> str:
    text = html.escape
    heading = f"{text(entry.topic)} · version {entry.seq}"
    try:
        data = await logbook.image(entry)
        image = (
            f'<img src="data:{entry.content_type};base64,{base64.b64encode(data).decode()}" '
            f'alt="{text(entry.topic)}, version {entry.seq}">'
        )
    except CorruptTopicError as exc:  # counted and logged by the store
        image = f'<p class="missing">Image unavailable: {text(str(exc))}</p>'
    retracted = ""
    if entry.retracted is not None:
        retracted = (
            f'<p class="retraction">Retracted by {text(entry.retracted.by)} on '
            f"{_when(entry.retracted.at)}: {text(entry.retracted.reason)}</p>"
        )
    description = (
        f'<p class="description">{text(entry.description)}</p>' if entry.description else ""
    )
    state = ' class="retracted"' if entry.retracted else ""
    return (
        f'<article id="entry-{entry.id}"{state}>\n'
        f"<h2>{heading}</h2>\n"
        f'<p class="meta">Pinned by {text(entry.author)} on {_when(entry.pinned_at)} · '
        f"published {_when(entry.published_at)} · {text(entry.experiment)} · "
        f"SHA-256 {entry.digest}</p>\n{retracted}{image}\n"
        f'<pre class="comment">{text(entry.comment)}</pre>\n{description}</article>\n'
    )


async def zip_export(logbook: LogbookStore, experiment: str) -> AsyncIterator[bytes]:
    """The logbook as a ZIP: ``images/<sha256>.<ext>`` (each image once) and ``entries.json``
    (the entry objects, newest first, each with ``"file"``: its image's name, or null when
    the image could not be read)."""
    sink = _Sink()
    entries = []
    written: set[str] = set()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        async for entry in all_entries(logbook, experiment):
            extension = mimetypes.guess_extension(entry.content_type) or ".img"
            name = f"images/{entry.digest}{extension}"
            if name not in written:
                try:
                    archive.writestr(name, await logbook.image(entry))
                    written.add(name)
                except CorruptTopicError:  # counted and logged by the store
                    pass
            entries.append({**entry.as_json(), "file": name if name in written else None})
            yield sink.take()
        archive.writestr("entries.json", json.dumps(entries, indent=1, ensure_ascii=False))
    yield sink.take()


class _Sink(io.RawIOBase):
    """A write-only stream whose bytes are taken as they come (zipfile writes to it)."""

    def __init__(self) -> None:
        self._data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._data += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._data)
        self._data.clear()
        return data


def _now() -> float:
    return datetime.datetime.now(datetime.UTC).timestamp()


def _when(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")

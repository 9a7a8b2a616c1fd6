"""The ``elog-stream`` command: serve, publish, grab, topics, pin, logbook, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import mimetypes
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import AlreadyRunningError, ElogError, SettingsError
from .local import default_data_dir, find_running
from .logbook import search_words
from .logbook_export import html_export, zip_export
from .logbook_store import LogbookStore
from .publisher import AsyncPublisher, Publisher, redis_url_for
from .store import TopicStore


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 usage or settings error)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SettingsError as exc:
        print(f"elog-stream: error: {exc}", file=sys.stderr)
        return 2
    except (ElogError, OSError) as exc:
        print(f"elog-stream: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elog-stream", description="Live matplotlib figures in the browser."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    redis_options = argparse.ArgumentParser(add_help=False)
    redis_options.add_argument(
        "--redis-url",
        help="Redis URL (default: $ELOG_REDIS_URL, else that of a running local 'serve' found "
        "in $ELOG_DATA_DIR or the default data directory, else redis://localhost:6379/0)",
    )
    redis_options.add_argument("--prefix", help="key prefix (default: $ELOG_PREFIX, else elog:)")

    serve = commands.add_parser(
        "serve",
        parents=[redis_options],
        help="run the service and viewer",
        description="Run the service. With no --redis-url and no $ELOG_REDIS_URL, a private "
        "Redis-compatible server is started on loopback and stopped on exit; its data is kept "
        "in the data directory, where this user's publishers find it.",
    )
    serve.add_argument(
        "--data-dir",
        type=Path,
        help="the private server's data directory (default: $ELOG_DATA_DIR, else "
        f"{default_data_dir()})",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--root-path", default="", help="path prefix behind a reverse proxy")
    serve.add_argument("--demo", action="store_true", help="also publish demo plots")
    serve.add_argument(
        "--legacy-keys",
        action="store_true",
        default=None,
        help="also publish hashes written by the 2014 tool (bare topic key, no PUBLISH) as they "
        "change (default: $ELOG_LEGACY_KEYS, else off)",
    )
    serve.set_defaults(run=_serve)

    publish = commands.add_parser("publish", parents=[redis_options], help="publish an image file")
    publish.add_argument("file", type=Path, help="PNG, JPEG, WebP or GIF file")
    publish.add_argument("--topic", required=True)
    publish.add_argument("--experiment", required=True)
    publish.add_argument("--description", default="")
    publish.set_defaults(run=_publish)

    grab = commands.add_parser("grab", parents=[redis_options], help="save a topic's image")
    grab.add_argument("topic")
    grab.add_argument("-o", "--output", type=Path, help="file to write (default: from the topic)")
    grab.set_defaults(run=_grab)

    topics = commands.add_parser("topics", parents=[redis_options], help="list live topics")
    topics.add_argument("--json", action="store_true", help="print JSON topic objects")
    topics.set_defaults(run=_topics)

    pin = commands.add_parser(
        "pin", parents=[redis_options], help="pin a topic's image to its experiment's logbook"
    )
    pin.add_argument("topic")
    pin.add_argument("comment", help="plain text kept with the image")
    pin.add_argument("--seq", type=int, help="the version to pin (default: the current image)")
    pin.add_argument("--author", help="who pins (default: $ELOG_AUTHOR, else your user name)")
    pin.set_defaults(run=_pin)

    logbook = commands.add_parser("logbook", help="read or export an experiment's logbook")
    actions = logbook.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[redis_options], help="list entries, newest first")
    listing.add_argument("experiment")
    listing.add_argument("--search", help="only entries holding all these words")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON entry objects")
    listing.set_defaults(run=_logbook_list)
    export = actions.add_parser(
        "export", parents=[redis_options], help="write the logbook to one HTML or ZIP file"
    )
    export.add_argument("experiment")
    form = export.add_mutually_exclusive_group(required=True)
    form.add_argument("--html", type=Path, help="one self-contained HTML file (images embedded)")
    form.add_argument("--zip", type=Path, help="a ZIP of the images and entries.json")
    export.set_defaults(run=_logbook_export)

    demo = commands.add_parser("demo", parents=[redis_options], help="publish moving demo plots")
    demo.add_argument("--count", type=int, help="number of rounds (default: until Ctrl-C)")
    demo.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    demo.set_defaults(run=_demo)
    return parser


def _serve(args: argparse.Namespace) -> None:
    from .app import create_app
    from .server import Server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    settings = Settings.from_env(
        redis_url=args.redis_url,
        prefix=args.prefix,
        data_dir=args.data_dir,
        legacy_keys=args.legacy_keys,
    )
    if settings.redis_url is None:  # fail before starting anything (the lock decides, later)
        running = find_running(settings.data_dir, ping=True)
        if running is not None:
            raise AlreadyRunningError(settings.data_dir or default_data_dir(), str(running))
    app = create_app(settings, demo=args.demo, root_path=args.root_path.rstrip("/"))
    shown_host = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    print(f"elog-stream: viewer at http://{shown_host}:{args.port}{args.root_path}/", flush=True)
    # A failed start-up (such as a lock lost in a race with another serve) exits 3 (uvicorn).
    Server(app, args.host, args.port, trusted_proxies=settings.trusted_proxies).run()


def _publish(args: argparse.Namespace) -> None:
    with Publisher(args.redis_url, prefix=args.prefix) as publisher:
        seq = publisher.publish(args.topic, args.experiment, args.file, args.description)
    print(f"published {args.topic} seq {seq}")


def _grab(args: argparse.Namespace) -> None:
    with Publisher(args.redis_url, prefix=args.prefix) as publisher:
        image = publisher.grab(args.topic)
    extension = mimetypes.guess_extension(image.content_type) or ".img"
    output = args.output or Path(args.topic.replace("/", "_") + extension)
    output.write_bytes(image.data)
    print(f"{output}: {image.topic} seq {image.seq}, {image.size} bytes, {image.content_type}")


def _topics(args: argparse.Namespace) -> None:
    with Publisher(args.redis_url, prefix=args.prefix) as publisher:
        images = publisher.topics()
    if args.json:
        print(json.dumps([image.topic_object() for image in images], indent=2))
        return
    for image in images:
        print(f"{image.topic}\t{image.experiment}\tseq {image.seq}\t{image.size} bytes")


def _pin(args: argparse.Namespace) -> None:
    with Publisher(args.redis_url, prefix=args.prefix) as publisher:
        entry = publisher.pin(args.topic, args.comment, args.seq, author=args.author)
    print(f"pinned {entry.topic} seq {entry.seq} to the logbook of {entry.experiment}: {entry.id}")


@contextlib.asynccontextmanager
async def _logbook(args: argparse.Namespace) -> AsyncIterator[LogbookStore]:
    settings = Settings.from_env(redis_url=args.redis_url, prefix=args.prefix)
    store = TopicStore(redis_url_for(settings), settings)
    try:
        yield LogbookStore(store, settings)
    finally:
        await store.aclose()


def _logbook_list(args: argparse.Namespace) -> None:
    if not 1 <= args.limit <= 10_000:
        raise SettingsError(["--limit: expected an integer from 1 to 10000"])

    async def entries() -> list[dict[str, Any]]:
        async with _logbook(args) as logbook:
            found: list[dict[str, Any]] = []
            before = None
            while len(found) < args.limit:
                page = await logbook.page(
                    args.experiment,
                    before,
                    min(args.limit - len(found), 200),
                    search_words(args.search),
                )
                found += [entry.as_json() for entry in page.entries]
                if page.next_before is None:
                    break
                before = page.next_before
            return found

    found = asyncio.run(entries())
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return
    for entry in found:
        when = datetime.datetime.fromtimestamp(entry["pinned_at"], datetime.UTC)
        comment = str(entry["comment"]).splitlines()[0] if entry["comment"] else ""
        mark = "  [retracted]" if entry["retracted"] else ""
        print(
            f"{entry['id']}\t{when:%Y-%m-%d %H:%M:%S}Z\t{entry['author']}\t"
            f"{entry['topic']} seq {entry['seq']}{mark}\t{comment}"
        )


def _logbook_export(args: argparse.Namespace) -> None:
    output: Path = args.html or args.zip
    export = html_export if args.html else zip_export

    async def write() -> int:
        size = 0
        async with _logbook(args) as logbook:
            with output.open("wb") as file:
                async for chunk in export(logbook, args.experiment):
                    file.write(chunk)
                    size += len(chunk)
        return size

    print(f"{output}: the logbook of {args.experiment}, {asyncio.run(write())} bytes")


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    async def publish() -> None:
        async with AsyncPublisher(args.redis_url, prefix=args.prefix) as publisher:
            await publisher.ping()
            await run_demo(publisher.publish, args.interval, args.count)

    asyncio.run(publish())

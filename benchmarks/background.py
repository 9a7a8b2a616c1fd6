"""What publishing every iteration costs an analysis loop: background against blocking mode.

A loop stands for a pipeline: each iteration makes a new 1024×512 float32 detector frame
(rings and Poisson noise) and analyses it (``--ffts`` FFT round trips, about 70 ms here), then
publishes either the frame itself (a numpy array: capture copies it, the colormap and encoding
happen later) or a matplotlib figure showing it (image and radial profile updated with
``set_data``: capture *draws* the figure in the caller's thread, so the fair baseline is a loop
that draws too, as a live display would). Each configuration runs ``--iterations`` times per
round, the configurations interleaved over ``--rounds`` rounds so that the machine's noise falls
on all alike. Reported: the mean iteration time, its slowdown against the baseline, and the
caller's time in ``publish()`` (median and 90th percentile), for PNG level 6, PNG level 1 and
JPEG, in background and blocking mode. Redis is a private ``valkey-server`` unless
``--redis-url`` is given. Example:

    PYTHONPATH=. python benchmarks/background.py --iterations 30 --rounds 3 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import matplotlib
import numpy

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402

from elog_stream import Publisher  # noqa: E402
from elog_stream.embedded import EmbeddedRedis  # noqa: E402

SHAPE = (512, 1024)
ENCODINGS: dict[str, dict[str, Any]] = {
    "png6": {"format": "png", "compress_level": 6},
    "png1": {"format": "png", "compress_level": 1},
    "jpeg": {"format": "jpeg", "quality": 90},
}


@dataclass
class Config:
    kind: str  # "array" or "figure"
    mode: str  # "none", "draw" (figure drawn, nothing published), "background",
    # "background-2Hz" (with max_rate=2), "blocking"
    encoding: str = ""

    @property
    def name(self) -> str:
        return "/".join(part for part in (self.kind, self.mode, self.encoding) if part)


@dataclass
class Result:
    config: str
    iterations: int
    iteration_ms: float  # mean
    slowdown_percent: float | None  # against the kind's baseline
    publish_ms_median: float | None
    publish_ms_p90: float | None
    sent: int | None = None
    dropped: int | None = None


class Pipeline:
    """The work of one iteration, and the figure a live display would show."""

    def __init__(self, ffts: int) -> None:
        self.rng = numpy.random.default_rng(0)
        self.ffts = ffts
        y, x = numpy.indices(SHAPE)
        radius = numpy.hypot(x - SHAPE[1] / 2, y - SHAPE[0] / 2)
        self.rings = (50 + 40 * numpy.cos(radius / 6) ** 2 * numpy.exp(-radius / 400)).astype(
            numpy.float32
        )
        self.bins = radius.astype(numpy.int32).ravel()
        self.counts = numpy.bincount(self.bins)
        self.figure = pyplot.figure(figsize=(8, 4))
        image_axes, profile_axes = self.figure.subplots(1, 2)
        self.image = image_axes.imshow(self.rings, cmap="viridis", vmin=0, vmax=120)
        (self.profile,) = profile_axes.plot(self.counts * 0.0)
        profile_axes.set_ylim(0, 120)

    def step(self, i: int) -> numpy.ndarray:
        frame = self.rng.poisson(self.rings * (1 + 0.1 * numpy.sin(i / 5))).astype(numpy.float32)
        spectrum = numpy.fft.rfft2(frame)
        for _ in range(self.ffts):  # stands for the analysis: correlations, filters, ...
            frame_back = numpy.fft.irfft2(spectrum * spectrum.conj(), s=SHAPE)
            spectrum = numpy.fft.rfft2(frame_back / frame_back.max())
        return frame

    def show(self, frame: numpy.ndarray) -> None:
        self.image.set_data(frame)
        self.profile.set_ydata(numpy.bincount(self.bins, frame.ravel()) / self.counts)


def run(
    pipeline: Pipeline,
    config: Config,
    publishers: dict[str, Publisher],
    iterations: int,
    start: int,
) -> tuple[list[float], list[float]]:
    """Iteration times and publish() times, in seconds."""
    publish: Callable[..., Any] | None = None
    if config.mode in publishers:
        publish = publishers[config.mode].publish
    options = ENCODINGS.get(config.encoding, {})
    topic = f"bench/{config.name}"
    loops, calls = [], []
    for i in range(start, start + iterations):
        began = time.perf_counter()
        frame = pipeline.step(i)
        image: Any = frame
        if config.kind == "figure":
            pipeline.show(frame)
            image = pipeline.figure
            if config.mode == "draw":
                pipeline.figure.canvas.draw()
        if publish is not None:
            called = time.perf_counter()
            publish(topic, "bench", image, f"frame {i}", **options)
            calls.append(time.perf_counter() - called)
        loops.append(time.perf_counter() - began)
    return loops, calls


def configs() -> list[Config]:
    found = [Config("array", "none"), Config("figure", "none"), Config("figure", "draw")]
    for kind in ("array", "figure"):
        found += [Config(kind, "background", encoding) for encoding in ENCODINGS]
        found.append(Config(kind, "background-2Hz", "png6"))
        found += [Config(kind, "blocking", encoding) for encoding in ENCODINGS]
    return found


def baseline_of(config: Config) -> str:
    return "array/none" if config.kind == "array" else "figure/draw"


@contextlib.contextmanager
def redis_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    with EmbeddedRedis() as server:
        yield server.url


def measure(args: argparse.Namespace, url: str) -> list[Result]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    pipeline = Pipeline(args.ffts)
    all_configs = configs()
    loops: dict[str, list[float]] = {c.name: [] for c in all_configs}
    calls: dict[str, list[float]] = {c.name: [] for c in all_configs}
    sent: dict[str, int] = {}
    dropped: dict[str, int] = {}
    with (
        Publisher(url, prefix=prefix, background=True) as background,
        Publisher(url, prefix=prefix, background=True, max_rate=2) as limited,
        Publisher(url, prefix=prefix) as blocking,
    ):
        publishers = {"background": background, "background-2Hz": limited, "blocking": blocking}
        for round_ in range(args.rounds + 1):  # round 0 warms up: connections, caches
            for config in all_configs:
                start = round_ * args.iterations
                loop, call = run(pipeline, config, publishers, args.iterations, start)
                for publisher in publishers.values():
                    publisher.flush()  # the next configuration starts with an idle worker
                if round_:
                    loops[config.name] += loop
                    calls[config.name] += call
        for config in all_configs:
            if config.mode.startswith("background"):
                topic = f"bench/{config.name}"
                counted = publishers[config.mode]
                sent[config.name] = counted.sent[topic]  # warm-up round included
                dropped[config.name] = counted.dropped[topic]
    means = {name: statistics.fmean(times) for name, times in loops.items()}
    results = []
    for config in all_configs:
        name = config.name
        base = means[baseline_of(config)]
        published = calls[name]
        results.append(
            Result(
                config=name,
                iterations=len(loops[name]),
                iteration_ms=1000 * means[name],
                slowdown_percent=None
                if config.mode in ("none", "draw")
                else 100 * (means[name] - base) / base,
                publish_ms_median=1000 * statistics.median(published) if published else None,
                publish_ms_p90=1000 * statistics.quantiles(published, n=10)[-1]
                if len(published) > 1
                else None,
                sent=sent.get(name),
                dropped=dropped.get(name),
            )
        )
    return results


def table(results: list[Result]) -> str:
    def number(value: float | int | None, digits: int = 1) -> str:
        if value is None:
            return "–"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = [
        "| configuration | iteration (mean ms) | slowdown | publish() median ms | p90 ms "
        "| sent / dropped |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        slowdown = "baseline" if r.slowdown_percent is None else f"{r.slowdown_percent:+.1f} %"
        counts = "–" if r.sent is None else f"{r.sent} / {r.dropped}"
        lines.append(
            f"| {r.config} | {number(r.iteration_ms)} | {slowdown} "
            f"| {number(r.publish_ms_median, 2)} | {number(r.publish_ms_p90, 2)} | {counts} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=30, help="per configuration per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ffts", type=int, default=3, help="FFT round trips per iteration")
    parser.add_argument("--redis-url", help="default: a private valkey-server")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    with redis_url(args.redis_url) as url:
        results = measure(args, url)
    print(
        f"{args.rounds} rounds × {args.iterations} iterations per configuration; "
        f"detector frame {SHAPE[1]}×{SHAPE[0]} float32, {args.ffts} FFT round trips each\n"
    )
    print(table(results))
    if args.json:
        with open(args.json, "w") as file:
            json.dump([asdict(r) for r in results], file, indent=2)


if __name__ == "__main__":
    main()

"""Where the wall time of one blocking ``elogshow`` goes: draw, encode, Redis.

Each repetition changes a live-plot-like figure (an 800×400 px ``imshow`` of a 512×512 frame
and a line plot), then times, one after the other:

- ``draw``: ``figure.canvas.draw()`` (what any live display pays);
- ``encode``: copying the canvas and encoding it as PNG with ``elog_stream.images`` (what
  ``images.capture`` does after its draw, then ``images.encode``);
- ``redis``: ``Publisher.publish`` of those PNG bytes (validation, the publish script, the
  round trip);
- ``elogshow``: the whole ``elogshow(topic, experiment, figure=...)`` call, which draws,
  encodes and publishes itself.

``overhead``: the median of ``redis``, what elog-stream adds beyond making the image. The
whole ``elogshow`` is timed too, as a check that it is draw + encode + redis.
"""

from __future__ import annotations

import time
from typing import Any

import matplotlib
import numpy

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from elog_stream import Publisher, elogshow  # noqa: E402
from elog_stream.images import Captured, encode  # noqa: E402

from .report import percentiles  # noqa: E402

TOPIC = "bench/elogshow"


def _figure() -> tuple[Figure, Any, Any]:
    from matplotlib import pyplot

    figure = pyplot.figure(figsize=(8, 4), dpi=100)
    image_axes, line_axes = figure.subplots(1, 2)
    image = image_axes.imshow(numpy.zeros((512, 512)), vmin=0, vmax=1)
    (line,) = line_axes.plot(numpy.zeros(512))
    line_axes.set_ylim(0, 1)
    return figure, image, line


def elogshow_costs(redis_url: str, repeats: int) -> dict[str, Any]:
    """Medians and percentiles (ms) of each phase over ``repeats`` figures."""
    rng = numpy.random.default_rng(0)
    figure, image, line = _figure()
    phases: dict[str, list[float]] = {"draw": [], "encode": [], "redis": [], "elogshow": []}
    sizes = []
    with Publisher(redis_url, prefix="elog:") as publisher:
        for _ in range(repeats + 1):  # the first warms caches and connections up
            frame = rng.random((512, 512))
            image.set_data(frame)
            line.set_ydata(frame[256])
            began = time.perf_counter()
            figure.canvas.draw()
            drawn = time.perf_counter()
            pixels = numpy.array(figure.canvas.buffer_rgba(), copy=True)  # type: ignore[attr-defined]
            data = encode(Captured(pixels=pixels))
            encoded = time.perf_counter()
            publisher.publish(TOPIC, "bench", data)
            published = time.perf_counter()
            elogshow(TOPIC, "bench", figure=figure, redis_url=redis_url)
            shown = time.perf_counter()
            for name, seconds in (
                ("draw", drawn - began),
                ("encode", encoded - drawn),
                ("redis", published - encoded),
                ("elogshow", shown - published),
            ):
                phases[name].append(seconds * 1000)
            sizes.append(len(data))
    result: dict[str, Any] = {
        name: percentiles(times[1:]) for name, times in phases.items()
    }  # fmt: skip
    result["png_bytes"] = int(numpy.median(sizes))
    result["repeats"] = repeats
    # What elogshow adds beyond making the image is the publish of its bytes. (elogshow's time
    # minus a separate draw and encode is no measure of it: two draws differ by more.)
    result["overhead_ms"] = result["redis"]["p50_ms"]
    return result

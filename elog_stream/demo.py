"""Demo plots that change every second, so a newcomer sees the viewer move."""

from __future__ import annotations

import asyncio
import io
import logging
import math
import random
from collections.abc import Awaitable, Callable

from matplotlib.figure import Figure

from .errors import ElogError

log = logging.getLogger(__name__)

EXPERIMENT = "demo"

# (topic, experiment, image bytes, description) -> anything: AsyncPublisher.publish, Feed.publish
Publish = Callable[[str, str, bytes, str], Awaitable[object]]


def render_plots(step: int) -> dict[str, tuple[bytes, str]]:
    """PNG bytes and a description for each demo topic at ``step``. Uses no pyplot state."""
    rng = random.Random(step)
    plots: dict[str, tuple[bytes, str]] = {}

    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.add_subplot()
    xs = [i / 20 for i in range(200)]
    axes.plot(xs, [math.sin(x - step / 3) for x in xs], label="signal")
    axes.plot(xs, [0.5 * math.sin(2 * x + step / 5) for x in xs], label="reference")
    axes.set(title=f"Waveform, shot {step}", xlabel="time (µs)", ylabel="amplitude")
    axes.legend(loc="upper right")
    plots["demo/waveform"] = (_png(figure), "A sine wave drifting in phase, one frame per second.")

    figure = Figure(figsize=(4.5, 4), layout="constrained")
    axes = figure.add_subplot()
    cx, cy = 32 + 12 * math.cos(step / 4), 32 + 12 * math.sin(step / 4)
    pixels = [
        [math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 60) + rng.random() * 0.15 for x in range(64)]
        for y in range(64)
    ]
    image = axes.imshow(pixels, cmap="viridis", origin="lower")
    figure.colorbar(image, ax=axes, shrink=0.8)
    axes.set(title=f"Detector sum, frame {step}")
    plots["demo/detector/sum"] = (_png(figure), "A bright spot circling on a noisy 64×64 detector.")

    figure = Figure(figsize=(5, 3.5), layout="constrained")
    axes = figure.add_subplot()
    samples = [rng.gauss(math.sin(step / 6), 1.0) for _ in range(2000)]
    axes.hist(samples, bins=40, color="tab:orange")
    axes.set(title="Shot-to-shot intensity", xlabel="intensity (a.u.)", ylabel="shots")
    plots["demo/histogram"] = (_png(figure), "2000 samples whose mean wanders slowly.")
    return plots


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


async def run_demo(publish: Publish, interval: float = 1.0, count: int | None = None) -> None:
    """Publish the demo plots every ``interval`` seconds, ``count`` times (forever if None).

    Keeps going through Redis outages and refusals (logging them). Cancel to stop.
    """
    step = 0
    while count is None or step < count:
        plots = await asyncio.to_thread(render_plots, step)
        try:
            for topic, (png, description) in plots.items():
                await publish(topic, EXPERIMENT, png, description)
        except ElogError as exc:
            log.warning("demo publish failed: %s", exc)
        step += 1
        if count is None or step < count:
            await asyncio.sleep(interval)

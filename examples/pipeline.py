"""An asyncio pipeline: a detector makes frames at 30 Hz, viewers get at most 10 per second.

    python examples/pipeline.py --frames 300 --experiment demo

The publisher's rate limit keeps the newest frame: viewers never lag behind the detector, and
the pipeline never waits for the network (the colormap and PNG encoding run in a worker
thread). Redis is found as for every publisher: ``$ELOG_REDIS_URL``, else the running
``elog-stream serve`` of this user.
"""

from __future__ import annotations

import argparse
import asyncio

import numpy

from elog_stream import AsyncPublisher

DETECTOR_RATE = 30.0  # frames per second
VIEWER_RATE = 10.0  # frames per second per topic


def detector_frame(number: int, rng: numpy.random.Generator) -> numpy.ndarray:
    """A 512×512 image with a ring that drifts, plus noise: a stand-in for a detector."""
    y, x = numpy.mgrid[-1:1:512j, -1:1:512j]
    radius = 0.5 + 0.2 * numpy.sin(number / 20)
    ring = numpy.exp(-(((numpy.hypot(x, y) - radius) / 0.03) ** 2))
    return ring + rng.normal(0, 0.05, ring.shape)


async def run(frames: int, experiment: str) -> None:
    rng = numpy.random.default_rng()
    async with AsyncPublisher(max_rate=VIEWER_RATE) as publisher:
        for number in range(frames):
            frame = detector_frame(number, rng)
            await publisher.publish(
                f"{experiment}/detector/ring", experiment, frame,
                f"frame {number}", cmap="inferno", vmin=0, vmax=1,
            )  # fmt: skip
            await asyncio.sleep(1 / DETECTOR_RATE)
        await publisher.flush()  # the newest frame, if the rate limit still holds it
        skipped = sum(publisher.dropped.values())
    print(f"published {frames} frames; {skipped} replaced by newer ones before sending")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=900, help="frames to make (default 900)")
    parser.add_argument("--experiment", default="demo")
    args = parser.parse_args()
    asyncio.run(run(args.frames, args.experiment))


if __name__ == "__main__":
    main()

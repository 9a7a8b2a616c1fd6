"""A plain matplotlib script: run it with the elog-stream backend and plt.show() publishes.

    MPLBACKEND=module://elog_stream.backend ELOG_EXPERIMENT=demo python examples/analysis_script.py

Nothing in it knows about elog-stream: the same script opens windows with any other backend.
The labelled figure is the topic "scan/intensity"; the loop updates it live with plt.pause().
"""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import numpy

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 50

figure = plt.figure("scan/intensity")
axes = figure.gca()
positions = numpy.linspace(-3, 3, steps)
(line,) = axes.plot([], [], "o-")
axes.set(xlim=(-3, 3), ylim=(0, 1.2), xlabel="motor position (mm)", ylabel="intensity")
for step in range(1, steps + 1):
    shown = positions[:step]
    line.set_data(shown, numpy.exp(-(shown**2)))
    plt.pause(0.05)  # updates the live topic, like a window would

summary = plt.figure("scan/summary")
summary.suptitle("scan summary")
summary.gca().hist(numpy.random.default_rng(1).normal(size=1000), bins=40)
plt.show()  # publishes both figures

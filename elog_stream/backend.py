"""A matplotlib backend that publishes figures instead of opening windows.

``MPLBACKEND=module://elog_stream.backend python analysis.py`` (or
``matplotlib.use("module://elog_stream.backend")``): ``plt.show()`` publishes every open figure
(topics and experiment as in figures.py) through the shared Publisher, so Redis is found as
``elogshow`` finds it; a figure whose image did not change since its last publish is not sent
again. Errors (RedisUnavailableError, InvalidNameError, ...) are raised by the call that
publishes: ``plt.show()``, ``plt.pause()``, ``fig.show()``.

The backend behaves like a GUI backend whose screen is the viewers: ``draw_idle`` only asks for
a redraw; the event loop (``plt.show`` blocking, ``plt.pause``, ``canvas.start_event_loop``)
runs timers in the calling thread and, after each round of timers, draws and publishes every
figure that asked for it, at most once per round, so animations (``FuncAnimation``) and
``plt.pause`` loops update the same topics. A blocking ``plt.show()`` runs until no timer is
running or no figure is open (or Ctrl-C), then closes every figure, as if its windows had been
closed: the next plot starts on a new figure, as under a GUI backend or in Jupyter. Like pyplot
itself, all of this belongs to one thread.
"""

from __future__ import annotations

import io
import math
import sys
import time
from typing import Any

import numpy as np
from matplotlib import image, is_interactive
from matplotlib._pylab_helpers import Gcf
from matplotlib.backend_bases import CloseEvent, FigureManagerBase, TimerBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import BboxBase

from .figures import FigureSender


class _EventLoop:
    """The backend's one event loop: when timers are due, and running them."""

    def __init__(self) -> None:
        self._due: dict[Timer, float] = {}  # started timers: when each fires next (monotonic)
        self._stopped = False

    def schedule(self, timer: Timer, delay: float) -> None:
        self._due[timer] = time.monotonic() + delay

    def cancel(self, timer: Timer) -> None:
        self._due.pop(timer, None)

    def scheduled(self, timer: Timer) -> bool:
        return timer in self._due

    def stop(self) -> None:
        self._stopped = True

    def run(self, timeout: float | None) -> None:
        """Run timers and publish redrawn figures for ``timeout`` seconds, or, with None, while
        a timer runs and a figure is open; ``stop()`` (from a callback) ends it sooner.

        Exceptions of callbacks and publishes propagate, and so does KeyboardInterrupt.
        """
        end = math.inf if timeout is None else time.monotonic() + timeout
        self._stopped = False
        while True:
            _publish_redrawn()
            now = time.monotonic()
            if self._stopped or now >= end:
                return
            if timeout is None and not (self._due and Gcf.get_num_fig_managers()):
                return
            wake = min(end, *self._due.values()) if self._due else end
            if wake > now:
                time.sleep(wake - now)
            self._fire_due()

    def _fire_due(self) -> None:
        now = time.monotonic()
        for timer, due in sorted(self._due.items(), key=lambda item: item[1]):
            if due > now:
                break
            if self._due.get(timer) != due:
                continue  # stopped or restarted by an earlier callback
            if timer.single_shot:
                del self._due[timer]
            else:  # late (a slow draw): the next one as soon as this one is published
                self._due[timer] = max(due + timer.interval / 1000, now)
            timer.fire()


_loop = _EventLoop()
_sender = FigureSender()


class Timer(TimerBase):
    """A matplotlib timer run by the backend's event loop (so only while that loop runs)."""

    def _timer_start(self) -> None:
        _loop.schedule(self, self.interval / 1000)

    def _timer_stop(self) -> None:
        _loop.cancel(self)

    def _timer_set_interval(self) -> None:
        if _loop.scheduled(self):
            _loop.schedule(self, self.interval / 1000)

    def fire(self) -> None:
        """Run the callbacks now (the event loop calls this when the timer is due)."""
        self._on_timer()  # type: ignore[attr-defined]  # matplotlib's, missing from its stubs


class FigureManagerElog(FigureManagerBase):
    """The figure's "window": showing it publishes it."""

    def show(self) -> None:
        """Publish the figure now, unless its image is the one last published."""
        canvas = self.canvas
        if not isinstance(canvas, FigureCanvasElog):
            raise TypeError(f"not a canvas of this backend: {type(canvas).__name__}")
        if canvas.figure.stale or not canvas.holds_frame:
            canvas.draw_idle()
        canvas.flush_events()

    def destroy(self) -> None:
        # Like closing a window: animations listen for this to stop their timers.
        self.canvas.callbacks.process("close_event", CloseEvent("close_event", self.canvas))
        super().destroy()

    @classmethod
    def pyplot_show(cls, *, block: bool | None = None) -> None:
        """``plt.show()``: publish every open figure; when blocking, run the event loop while
        animations run, then close every figure."""
        managers = Gcf.get_all_fig_managers()
        for manager in managers:
            manager.show()
        if block is None:  # as matplotlib decides: not in interactive or IPython pylab mode
            pyplot_show = getattr(sys.modules.get("matplotlib.pyplot"), "show", None)
            block = not is_interactive() and not hasattr(pyplot_show, "_needmain")
        if block and managers:
            _loop.run(None)
            Gcf.destroy_all()


class FigureCanvasElog(FigureCanvasAgg):
    """An Agg canvas whose frames are published; redraws wait for the event loop."""

    manager_class = FigureManagerElog
    _timer_cls = Timer

    def __init__(self, figure: Any = None) -> None:
        self._redraw = False  # draw_idle asked for a redraw
        self._unsent = False  # the buffer holds a frame not yet published
        self.holds_frame = False  # the buffer holds a frame drawn for viewers, not for savefig
        super().__init__(figure)

    def draw(self) -> None:
        self._redraw = False  # cleared first: a draw_idle during the draw asks for another
        super().draw()
        self.holds_frame = self._unsent = not self.is_saving()

    def draw_idle(self, *args: Any, **kwargs: Any) -> None:
        self._redraw = True

    def blit(self, bbox: BboxBase | None = None) -> None:
        self._unsent = True  # blitting artists drew into the buffer

    def flush_events(self) -> None:
        """Draw if a redraw was asked for, then publish the frame if it was not yet sent."""
        if self._redraw:
            self.draw()
        if self._unsent:
            _sender.send(self.figure, self._frame_png())
            self._unsent = False

    def start_event_loop(self, timeout: float = 0) -> None:
        """Run timers and publish redrawn figures for ``timeout`` seconds (<= 0: while a
        timer runs and a figure is open), or until ``stop_event_loop``."""
        _loop.run(timeout if timeout > 0 else None)

    def stop_event_loop(self) -> None:
        _loop.stop()

    def _frame_png(self) -> bytes:
        # The frame already drawn, encoded as print_png would, without drawing it again.
        buffer = io.BytesIO()
        frame = np.asarray(self.buffer_rgba())
        image.imsave(buffer, frame, format="png", origin="upper", dpi=self.figure.dpi)
        return buffer.getvalue()


def _publish_redrawn() -> None:
    for manager in Gcf.get_all_fig_managers():
        manager.canvas.flush_events()


FigureCanvas = FigureCanvasElog
FigureManager = FigureManagerElog

"""Publish pyplot figures under names taken from the figures themselves.

Shared by the matplotlib backend (backend.py) and the IPython extension (notebook.py): the topic
of a figure is its label (``plt.figure("name")``), else its suptitle, else
``<script>/figure-<num>`` (``figure-<num>`` in an interactive session or a notebook); the
experiment is the one given, else ``ELOG_EXPERIMENT``, else ``default`` (with a warning, once);
the description is empty (titles are in the image).
"""

from __future__ import annotations

import hashlib
import sys
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidNameError, PublishOutcomeUnknownError, RedisUnavailableError
from .protocol import validate_topic
from .publisher import _shared_publisher

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_EXPERIMENT = "default"
_OURS = ("elog_stream", "matplotlib")
_NAME_IT = "name the figure with plt.figure('name') or fig.set_label('name')"
_WHERE = (
    "figures are published to Redis: set ELOG_REDIS_URL, or start `elog-stream serve` "
    "on this machine"
)


def figure_topic(figure: Figure) -> str:
    """The topic of ``figure``; raises InvalidNameError naming the figure and the fix."""
    num = getattr(figure.canvas.manager, "num", None)
    label, suptitle = str(figure.get_label() or ""), figure.get_suptitle()
    if label:
        topic, source = label, "label"
    elif suptitle:
        topic, source = suptitle, "suptitle"
    else:
        stem = _script_stem()
        topic, source = (f"{stem}/" if stem else "") + f"figure-{num}", "script name"
    try:
        return validate_topic(topic)
    except InvalidNameError as exc:
        shown = f"figure {num}" if num is not None else "a figure"
        raise InvalidNameError(
            f"{shown} cannot be published: its {source}: {exc}; {_NAME_IT}"
        ) from None


def _script_stem() -> str:
    """The running script's name without ``.py``; empty in an interactive session."""
    ipython = sys.modules.get("IPython")
    in_ipython = ipython is not None and ipython.get_ipython() is not None
    script = sys.argv[0] if sys.argv else ""
    if in_ipython or hasattr(sys, "ps1") or script in ("", "-", "-c"):
        return ""
    return Path(script).stem


class FigureSender:
    """Publishes figures through the shared Publisher, each only when its image changed.

    ``experiment`` None: ``ELOG_EXPERIMENT``, else ``default``. The Publisher (and so the
    settings and the Redis URL) is found on the first ``send``, not before. Not thread-safe:
    use it from the thread that draws, like pyplot.
    """

    def __init__(self, experiment: str | None = None) -> None:
        self.experiment = experiment
        # What each figure last published, forgotten with the figure.
        self._sent: weakref.WeakKeyDictionary[Figure, tuple[str, bytes]] = (
            weakref.WeakKeyDictionary()
        )
        self._warned = False

    def send(self, figure: Figure, png: bytes) -> int | None:
        """Publish ``png`` as ``figure``'s image; return the seq, None if it was unchanged.

        Raises InvalidNameError for an unusable topic, RedisUnavailableError (with a note
        saying where figures go) and the other errors of Publisher.publish.
        """
        topic = figure_topic(figure)
        sent = (topic, hashlib.sha256(png).digest())
        if self._sent.get(figure) == sent:
            return None
        publisher = _shared_publisher(None)
        try:
            seq = publisher.publish(topic, self._experiment(publisher.settings.experiment), png)
        except RedisUnavailableError as exc:
            if not isinstance(exc, PublishOutcomeUnknownError):
                exc.add_note(_WHERE)
            raise
        self._sent[figure] = sent
        return seq

    def _experiment(self, configured: str | None) -> str:
        experiment = self.experiment or configured
        if experiment:
            return experiment
        if not self._warned:
            self._warned = True
            _warn_caller(
                f"ELOG_EXPERIMENT is not set: figures are published under experiment "
                f"{DEFAULT_EXPERIMENT!r}; set ELOG_EXPERIMENT=<name> to choose one"
            )
        return DEFAULT_EXPERIMENT


def _warn_caller(message: str) -> None:
    """Warn, pointing at the first caller outside elog_stream and matplotlib (the user's)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back and frame.f_globals.get("__name__", "").partition(".")[0] in _OURS:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)

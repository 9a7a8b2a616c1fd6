"""The IPython extension: ``%load_ext elog_stream``, then ``%elog`` publishes each figure shown.

``%elog [--experiment E]`` turns publishing on, ``%elog --off`` off. Figures are published as
IPython displays them: at the end of a cell or at ``plt.show()`` under the inline backend
(Jupyter's default), and at ``display(fig)``; a figure whose image did not change is not sent
again. Topics and experiment are those of figures.py. The hook is a printer for Figures in
IPython's mime-bundle formatter that adds nothing to the output, so the inline display keeps
working; a failed publish shows its traceback in the cell's output, and the figure is still
shown. Imported only from within IPython (``elog_stream.load_ipython_extension``).
"""

from __future__ import annotations

from typing import Any

from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from matplotlib.figure import Figure

from .figures import FigureSender
from .images import image_bytes
from .protocol import validate_experiment


class _Publishing:
    """Whether and how figures displayed by ``shell`` are published."""

    def __init__(self, shell: Any) -> None:
        self._formatter = shell.display_formatter.mimebundle_formatter
        self._sender = FigureSender()

    def on(self, experiment: str | None) -> None:
        self._sender.experiment = None if experiment is None else validate_experiment(experiment)
        self._formatter.for_type(Figure, self._publish)

    def off(self) -> None:
        self._formatter.pop(Figure, None)

    def _publish(self, figure: Figure) -> None:
        self._sender.send(figure, image_bytes(figure))
        # None: no mime bundle of ours; IPython's own formatters then render the figure.


_publishing: _Publishing | None = None


@magic_arguments()
@argument("--experiment", help="the experiment of the figures (default: $ELOG_EXPERIMENT)")
@argument("--off", action="store_true", help="stop publishing")
def elog(line: str) -> None:
    """Publish every figure a cell shows to elog-stream, live (until ``%elog --off``)."""
    args = parse_argstring(elog, line)
    if _publishing is None:
        raise RuntimeError("load the extension first: %load_ext elog_stream")
    if args.off:
        _publishing.off()
    else:
        _publishing.on(args.experiment)


def load_ipython_extension(ipython: Any) -> None:
    global _publishing
    if _publishing is None:
        _publishing = _Publishing(ipython)
    ipython.register_magic_function(elog, "line", "elog")


def unload_ipython_extension(ipython: Any) -> None:
    if _publishing is not None:
        _publishing.off()

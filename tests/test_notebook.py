"""The IPython extension: a notebook executed by a real Jupyter kernel (nbclient, ipykernel's
``python3`` kernel, run with this interpreter) publishes its figures to a running service."""

from __future__ import annotations

import asyncio

import nbformat
import pytest
from nbclient import NotebookClient
from support import DEADLINE, RunningService, receive, receive_image
from websockets.asyncio.client import connect

from elog_stream import Publisher, TopicNotFoundError

CELLS = [
    "%load_ext elog_stream",
    "%elog --experiment cxif7214",
    "import matplotlib.pyplot as plt\nplt.figure('nb/one')\nplt.plot([1, 2, 3])",
    "plt.figure('nb/two')\nplt.plot([3, 2, 1])\nplt.show()",
    "plt.plot([2, 2])",
    "%elog --off",
    "plt.figure('nb/off')\nplt.plot([1, 1])",
]


async def test_elog_magic_publishes_the_figures_each_cell_shows(
    service: RunningService, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel inherits this environment; ipykernel chooses the inline backend itself.
    monkeypatch.setenv("ELOG_REDIS_URL", str(service.settings.redis_url))
    monkeypatch.setenv("ELOG_PREFIX", service.settings.prefix)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    client = NotebookClient(notebook, kernel_name="python3", timeout=int(4 * DEADLINE))
    async with connect(service.ws_url) as ws:
        await receive(ws, "sync")
        execution = asyncio.create_task(client.async_execute())
        images = [await receive_image(ws, deadline=8 * DEADLINE) for _ in range(3)]
        await execution
    topics = {header["topic"]: header for header, _ in images}
    assert sorted(topics) == ["figure-1", "nb/one", "nb/two"]  # unnamed: no script name
    assert {header["experiment"] for header in topics.values()} == {"cxif7214"}
    for cell in notebook.cells:  # every figure is still shown inline
        if "plt.plot" not in cell.source:
            continue
        shown = [output for output in cell.outputs if "image/png" in output.get("data", {})]
        assert len(shown) == 1, cell.outputs
    with pytest.raises(TopicNotFoundError):
        publisher.grab("nb/off")  # after %elog --off

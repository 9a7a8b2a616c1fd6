"""A progress bar over the harness's steps: tqdm when installed, else one stderr line."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any


class Progress:
    """``total`` steps; ``step(name)`` starts the next one. A context manager that closes it."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.began = time.monotonic()
        self._bar: Any = None
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)

    def step(self, name: str) -> None:
        if self._bar is not None:
            if self.done:
                self._bar.update(1)
            self._bar.set_description(name)
        else:
            elapsed = time.monotonic() - self.began
            line = f"[{self.done + 1}/{self.total} {elapsed:5.0f} s] {name}"
            sys.stderr.write(f"\r\x1b[K{line}" if sys.stderr.isatty() else line + "\n")
            sys.stderr.flush()
        self.done += 1

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            if self.done:
                self._bar.update(1)
            self._bar.close()
        elif sys.stderr.isatty():
            sys.stderr.write("\n")

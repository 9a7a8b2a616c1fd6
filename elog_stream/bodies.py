"""Request bodies, read whole under two bounds: bytes held service-wide, and time per body."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request

from .errors import ElogError, RequestTimeoutError, ServiceBusyError

TooLarge = Callable[[int, int], ElogError]  # (size, limit) -> the error to raise


class BodyBudget:
    """The bytes of request bodies the service holds at once, all requests together.

    One per service. A body counts from its first byte (or from its declared length, taken up
    front) until the block that uses it ends; a request that would go over the budget is
    refused at once with ServiceBusyError (503), so stalled uploads cannot pin the memory
    of the process, and each body must arrive within ``timeout`` seconds.
    """

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self.held = 0

    @contextlib.asynccontextmanager
    async def read(
        self, request: Request, max_bytes: int, too_large: TooLarge
    ) -> AsyncIterator[bytes]:
        """Read the body (at most ``max_bytes``) and hold it in the budget for the block."""
        taken = 0

        def take(size: int) -> None:
            nonlocal taken
            if size > max_bytes:
                raise too_large(size, max_bytes)
            if size > taken:
                if self.held + size - taken > self.limit:
                    raise ServiceBusyError(
                        f"the service is receiving {self.held} bytes of other requests "
                        f"(limit {self.limit}); retry shortly"
                    )
                self.held += size - taken
                taken = size

        try:
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and len(declared) < 19:
                take(int(declared))
            body = bytearray()
            try:
                async with asyncio.timeout(self.timeout):
                    async for chunk in request.stream():
                        body += chunk
                        take(len(body))
            except TimeoutError:
                raise RequestTimeoutError(
                    f"the request body did not arrive within {self.timeout:g} s "
                    f"({len(body)} bytes received)"
                ) from None
            data = bytes(body)
            body.clear()
            yield data
        finally:
            self.held -= taken

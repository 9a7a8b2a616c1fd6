"""Browser fixtures: one Chromium per test module, a fresh page per test.

Every page's console errors, uncaught exceptions and CSP violations are collected; a test
fails if any is left that it did not declare expected with ``page_errors.allow(...)``. A
screenshot of each test's page is saved in tests/artifacts/.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent.parent / "artifacts"
CACHE = Path(__file__).parent.parent / ".cache"  # git-ignored

# axe-core, the accessibility checker, from the npm registry: one pinned release, checked
# against the registry's SHA-512 and cached, so it is downloaded once per machine.
AXE_VERSION = "4.14.1"
AXE_TARBALL = f"https://registry.npmjs.org/axe-core/-/axe-core-{AXE_VERSION}.tgz"
AXE_SHA512 = (
    "FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
)

# Runs before the viewer's scripts (and outside its CSP): records CSP violations and object
# URLs, so tests can prove the viewer neither breaks the policy nor leaks blobs.
_PROBE = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) =>
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI}`));
window.__objectUrls = { created: [], revoked: [] };
const create = URL.createObjectURL.bind(URL);
const revoke = URL.revokeObjectURL.bind(URL);
URL.createObjectURL = (blob) => {
  const url = create(blob);
  window.__objectUrls.created.push(url);
  return url;
};
URL.revokeObjectURL = (url) => { window.__objectUrls.revoked.push(url); revoke(url); };
"""


class PageErrors:
    """What went wrong in a page; ``allow(pattern)`` declares console errors a test expects."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        self._allowed.append(re.compile(pattern))

    def add(self, text: str) -> None:
        self.errors.append(text)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self._allowed)]


# Module, not session, scope: Playwright's sync API marks an asyncio loop as running in this
# thread while it is open, and pytest-asyncio cannot run the other modules' async tests then.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--disable-gpu", "--disable-quic"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def new_page(browser: Browser, page_errors: PageErrors, request: pytest.FixtureRequest) -> Iterator:
    """A factory of pages (``new_page(color_scheme="light")``), all watched and screenshot."""
    contexts = []
    pages: list[Page] = []

    def make(**options: object) -> Page:
        options.setdefault("viewport", {"width": 1280, "height": 800})
        options.setdefault("color_scheme", "dark")
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        context.add_init_script(_PROBE)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: page_errors.add(f"page error: {error}"))
        page.on(
            "console",
            lambda message: (
                message.type == "error" and page_errors.add(f"console error: {message.text}")
            ),
        )
        pages.append(page)
        return page

    yield make

    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    for index, page in enumerate(pages):
        if page.is_closed():
            continue
        suffix = f"-{index}" if index else ""
        page.screenshot(path=ARTIFACTS / f"{name}{suffix}.png", full_page=True)
        for violation in page.evaluate("window.__cspViolations ?? []"):
            page_errors.add(f"CSP violation: {violation}")
    for context in contexts:
        context.close()
    unexpected = page_errors.unexpected()
    assert not unexpected, "the page reported errors:\n" + "\n".join(unexpected)


@pytest.fixture
def page(new_page) -> Page:
    """A fresh dark-scheme page at 1280x800."""
    return new_page()


@pytest.fixture(autouse=True, scope="session")
def _expect_timeout() -> None:
    from playwright.sync_api import expect

    # Long enough for a loaded CI machine; every wait still ends as soon as it is met.
    expect.set_options(timeout=10_000)


@pytest.fixture(scope="session")
def axe_source() -> str:
    """The source of axe.min.js (axe-core from npm, verified, cached in tests/.cache)."""
    path = CACHE / f"axe-core-{AXE_VERSION}.min.js"
    if not path.exists():
        with urllib.request.urlopen(AXE_TARBALL, timeout=60) as response:
            tarball = response.read()
        digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
        assert digest == AXE_SHA512, f"{AXE_TARBALL} is not the release this suite pinned"
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            member = archive.extractfile("package/axe.min.js")
            assert member is not None
            source = member.read()
        CACHE.mkdir(exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(source)
        partial.replace(path)
    return path.read_text()


@pytest.fixture
def axe(axe_source: str):
    """``axe(page)`` runs axe-core on the page as it is and returns its violations.

    axe is evaluated in the page (page.evaluate is not subject to the page's CSP, which allows
    only its own scripts), with every WCAG 2.x A/AA rule and the best practices, and the
    experimental label-content-name-mismatch.
    """

    def run(page: Page, context: str = "document") -> list[dict]:
        if not page.evaluate("typeof window.axe === 'object'"):
            page.evaluate(axe_source)
        return page.evaluate(
            """async (context) => {
                const result = await axe.run(context === 'document' ? document : context, {
                    resultTypes: ['violations'],
                    rules: { 'label-content-name-mismatch': { enabled: true } },
                });
                return result.violations.map((v) => ({
                    id: v.id,
                    impact: v.impact,
                    help: v.help,
                    nodes: v.nodes.map((n) => `${n.target.join(' ')}: ${n.failureSummary}`),
                }));
            }""",
            context,
        )

    return run

"""Browser tests: a real Chromium driven by Playwright against the web app served over real HTTP.

The app is the test stack's (``sqlite_stack``: real Redis, real Celery workers, SQLite), served by werkzeug on a free
port in a background thread. Chromium is the system's (Debian package ``chromium``; ``HAR_CHROMIUM`` names another
binary); Playwright's own browser download is not needed. Without a browser the tests are skipped with the reason,
except under CI (``CI=true``), where they fail.

Every page a test opens is watched: a console error or an uncaught page error fails the test, unless the test
declared it expected (``ui.allow_console(...)``, e.g. the browser's note about a 422 answer to an upload it made).
Screenshots go to ``test-artifacts/screenshots/`` (``HAR_SCREENSHOT_DIR`` to change it); the run prints where.
"""
from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = Path(os.environ.get("HAR_SCREENSHOT_DIR") or ROOT / "test-artifacts" / "screenshots")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DESKTOP = {"width": 1280, "height": 900}
TIMEOUT_MS = 30_000

_screenshots: list[Path] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str):
    """No browser: fail under CI (the tests must run there), skip elsewhere, with the reason either way."""
    if in_ci():
        pytest.fail(f"browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


def chromium_executable() -> str | None:
    exe = os.environ.get("HAR_CHROMIUM")
    if exe:
        return exe
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -r requirements-test.txt)")
    exe = chromium_executable()
    pw = sync_playwright().start()
    try:
        if exe:
            browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-dev-shm-usage"])
        else:  # a browser installed by `playwright install`, if any
            browser = pw.chromium.launch(args=["--no-sandbox", "--disable-dev-shm-usage"])
    except Error as exc:
        pw.stop()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        unavailable(f"Chromium could not be started ({exe or 'no chromium on PATH'}: {first}); "
                    "install it with `apt-get install chromium` (scripts/test.sh does)")
    yield browser
    browser.close()
    pw.stop()


@dataclass
class LiveServer:
    url: str
    app: object
    stack: object = None  # the test stack behind it, if any
    settings: object = None


@pytest.fixture(scope="session")
def http_server():
    """``http_server(app, name) -> LiveServer``: serve a WSGI app over HTTP on a free port (werkzeug, a thread
    per request) in a background thread until the session ends."""
    from werkzeug.serving import make_server

    running = []

    def _serve(app, name: str) -> LiveServer:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name=f"http-{name}", daemon=True)
        thread.start()
        running.append((server, thread))
        return LiveServer(url=f"http://127.0.0.1:{server.server_port}", app=app)

    yield _serve
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="session")
def live_server(browser, http_server, sqlite_stack) -> LiveServer:
    """The test stack's web app (real workers behind it) over HTTP."""
    app = sqlite_stack.app
    assert app.config.get("WTF_CSRF_ENABLED", True), "the pages' forms must be tested with CSRF protection on"
    server = http_server(app, "stack")
    server.stack = sqlite_stack
    return server


@dataclass
class UI:
    """One browser tab (its own context) on a live server, with its console watched."""

    page: object
    server: LiveServer
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.server.url + path

    def goto(self, path: str):
        resp = self.page.goto(self.url(path))
        assert resp is not None and resp.ok, f"GET {path}: {resp.status if resp else 'no response'}"
        return resp

    def allow_console(self, pattern: str) -> None:
        """Declare an expected console error (a regular expression searched in its text)."""
        self.allowed.append(re.compile(pattern))

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / name
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        if path not in _screenshots:
            _screenshots.append(path)
        return path

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def check_console(self) -> None:
        bad = self.unexpected_errors()
        assert not bad, "errors in the browser console:\n" + "\n".join(bad)


def _watch(ui: UI) -> None:
    page = ui.page

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            ui.errors.append(f"console error on {page.url}: {msg.text} ({loc.get('url', '')}:{loc.get('lineNumber', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: ui.errors.append(f"page error on {page.url}: {exc}"))


def identity_cookie(server: LiveServer, identity: str) -> dict:
    """The signed anonymous-identity cookie (web/auth.py) of ``identity`` for ``server``, as Playwright takes it."""
    from web.auth import IDENTITY_COOKIE, identity_cookie_value

    with server.app.app_context():
        value = identity_cookie_value(identity)
    return {"name": IDENTITY_COOKIE, "value": value, "url": server.url, "httpOnly": True, "sameSite": "Lax"}


@pytest.fixture
def open_ui(browser, request):
    """``open_ui(server, viewport=DESKTOP, identity=TEST_IDENTITY, **context_options) -> UI``: a new tab; its console
    is checked when the test ends (a test may also call ``ui.check_console()`` itself). The tab is the tests' own
    browser identity (tests/conftest.py: it owns the jobs the tests upload or write), or ``identity``; None: a new
    browser, which gets its identity from the server."""
    from tests.conftest import TEST_IDENTITY

    opened: list[tuple[object, UI]] = []

    def _open(server: LiveServer, viewport=None, identity: str | None = TEST_IDENTITY, **options) -> UI:
        context = browser.new_context(viewport=viewport or DESKTOP, **options)
        if identity:
            context.add_cookies([identity_cookie(server, identity)])
        context.set_default_timeout(TIMEOUT_MS)
        ui = UI(page=context.new_page(), server=server)
        _watch(ui)
        opened.append((context, ui))
        return ui

    yield _open
    for context, _ui in opened:
        context.close()
    failed = getattr(request.node, "rep_call", None)
    if failed is None or failed.passed:  # a failing test already says what went wrong
        for _context, ui in opened:
            ui.check_console()


@pytest.fixture
def ui(open_ui, live_server) -> UI:
    return open_ui(live_server)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep


def pytest_terminal_summary(terminalreporter):
    if _screenshots:
        terminalreporter.write_sep("-", f"browser screenshots: {len(_screenshots)} in {SCREENSHOT_DIR}")
        for path in _screenshots:
            terminalreporter.write_line(f"  {path}")

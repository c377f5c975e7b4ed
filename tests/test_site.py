"""The built documentation site in a real (headless) Chromium (issue 22).

``make -C docs html`` builds the site into ``docs/_build/html`` (``SMOOTHLAB_SITE`` to test another folder);
these tests serve it on a local port and check what a reader sees: the index, an API page and a course page load
with no console error and nothing fetched from outside the site (CI has no internet: the site carries MathJax and
plotly.js), the math is rendered, the course page draws its Plotly figures and keeps its solutions collapsed,
the search finds ``Smoother``, and no internal link is broken.

Without a built site these tests skip, unless ``SMOOTHLAB_REQUIRE_SITE=1`` (set by ``.ci/run`` once it has built
the site) makes that a failure; without Playwright or a Chromium they skip as ``tests/test_browser.py`` does.
"""

from __future__ import annotations

import functools
import html
import os
import re
import shutil
import threading
import tomllib
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("SMOOTHLAB_SITE", ROOT / "docs" / "_build" / "html"))
API_PAGE = "api/generated/smoothlab.attacks.scw.html"
COURSE_PAGE = "course/01_laplacian_smoothing.html"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# ------------------------------------------------------------------------------ links (no browser)

_LINK = re.compile(r"""<(?:a|link|script|img|iframe|source)\b[^>]*?\b(?:href|src)=["']([^"']+)["']""", re.I)
_ID = re.compile(r"""\bid=["']([^"']+)["']""")


@functools.lru_cache(maxsize=None)
def _ids(page: Path) -> frozenset[str]:
    return frozenset(html.unescape(i) for i in _ID.findall(page.read_text(encoding="utf-8", errors="replace")))


def broken_links(site: Path) -> list[str]:
    """Every internal link of every page of ``site`` whose file, or anchor in that file, does not exist."""
    _ids.cache_clear()
    broken = []
    for page in sorted(site.rglob("*.html")):
        if page.relative_to(site).parts[0] == "_static":  # the theme's template files, not pages
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        for target in _LINK.findall(text):
            target = html.unescape(target)
            parts = urlsplit(target)
            if parts.scheme or target.startswith(("//", "mailto:", "javascript:", "data:")):
                continue
            file = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if file.is_dir():
                file = file / "index.html"
            where = f"{page.relative_to(site)}: {target}"
            if not file.is_file():
                broken.append(where)
            elif parts.fragment and file.suffix == ".html" and unquote(parts.fragment) not in _ids(file):
                broken.append(where + " (no such anchor)")
    return broken


def test_the_link_check_finds_a_planted_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "index.html").write_text('<a href="a/page.html#here">ok</a> <a href="https://example.org/x">out</a>')
    (tmp_path / "a" / "page.html").write_text('<h1 id="here">x</h1><a href="../index.html">up</a><a href="#here">self</a>')
    assert broken_links(tmp_path) == []
    (tmp_path / "a" / "page.html").write_text('<h1 id="here">x</h1><a href="../gone.html">gone</a><a href="#nowhere">x</a>')
    assert broken_links(tmp_path) == ["a/page.html: ../gone.html", "a/page.html: #nowhere (no such anchor)"]


def _require_site() -> Path:
    if not (SITE / "index.html").is_file():
        reason = f"no built site at {SITE}: run make -C docs html"
        if os.environ.get("SMOOTHLAB_REQUIRE_SITE") == "1":
            pytest.fail(f"{reason} (SMOOTHLAB_REQUIRE_SITE=1: the site must be tested here)", pytrace=False)
        pytest.skip(reason)
    return SITE


def test_no_internal_link_is_broken() -> None:
    site = _require_site()
    assert (site / API_PAGE).is_file() and (site / COURSE_PAGE).is_file()
    broken = broken_links(site)
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:50])


def test_the_site_carries_what_it_loads() -> None:
    """No page loads a script or a style sheet from outside the site (no CDN): MathJax and plotly.js are in it."""
    site = _require_site()
    remote = re.compile(r"""<(?:script|link)\b[^>]*\b(?:src|href)=["'](?:https?:)?//[^"']+["'][^>]*>""", re.I)
    found = {str(p.relative_to(site)): remote.findall(p.read_text(encoding="utf-8")) for p in site.rglob("*.html")}
    found = {k: v for k, v in found.items() if v}
    assert not found, f"pages loading from outside the site: {dict(list(found.items())[:5])}"
    assert (site / "_static" / "plotly.min.js").stat().st_size > 1_000_000
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_course_pages_have_launch_buttons_built_from_the_repository_url() -> None:
    site = _require_site()
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"].rstrip("/")
    owner_name = repository.removeprefix("https://github.com/")
    page = (site / COURSE_PAGE).read_text(encoding="utf-8")
    book = "notebooks/01_laplacian_smoothing.ipynb"
    assert f"https://mybinder.org/v2/gh/{owner_name}/main?urlpath=lab/tree/{book}" in page
    assert f"https://colab.research.google.com/github/{owner_name}/blob/main/{book}" in page


# ------------------------------------------------------------------------------ in Chromium

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - the test extra has it
    sync_api = None


def _chromium() -> str | None:
    for candidate in (os.environ.get("SMOOTHLAB_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a browser that closes a connection early (a large page left before its end) is no error of the site


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    site = _require_site()
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(base_url: str) -> Iterator[object]:
    chromium = _chromium()
    if sync_api is None or chromium is None:
        reason = "the site's browser tests need Playwright and a Chromium (apt-get install chromium)"
        if os.environ.get("SMOOTHLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Visit:
    """One page open in Chromium, with what went wrong while loading it."""

    def __init__(self, browser: object, url: str) -> None:
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.page = browser.new_page(viewport={"width": 1366, "height": 900})
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} {r.failure}"))
        self.page.route("**/*", self._local_only)
        response = self.page.goto(url, wait_until="load", timeout=60_000)
        if response is None or response.status != 200:
            self.errors.append(f"HTTP {response.status if response else 'none'} for {url}")

    def _local_only(self, route: object) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:  # CI has no internet: a page that needs it is broken there
            self.outside.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.page.close()


@pytest.mark.browser
@pytest.mark.parametrize("path", ["index.html", API_PAGE, COURSE_PAGE])
def test_a_page_loads_with_no_console_error(browser: object, base_url: str, path: str) -> None:
    visit = Visit(browser, base_url + path)
    try:
        visit.page.wait_for_timeout(1500)  # deferred scripts (MathJax, the theme) run
        assert visit.page.locator("h1").count() >= 1
        assert not visit.errors, visit.errors
        assert not visit.outside, f"fetched from outside the site: {visit.outside}"
    finally:
        visit.close()


@pytest.mark.browser
@pytest.mark.parametrize("path", ["how-it-works.html", COURSE_PAGE])
def test_the_math_is_rendered(browser: object, base_url: str, path: str) -> None:
    visit = Visit(browser, base_url + path)
    try:
        visit.page.wait_for_selector("mjx-container", timeout=30_000)
        rendered = visit.page.locator("mjx-container").count()
        assert rendered >= 3 and visit.page.locator("mjx-merror").count() == 0
        assert not visit.errors, visit.errors
    finally:
        visit.close()


@pytest.mark.browser
def test_the_course_page_shows_its_plotly_figures_and_hides_its_solutions(browser: object, base_url: str) -> None:
    visit = Visit(browser, base_url + COURSE_PAGE)
    try:
        visit.page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
        figures = visit.page.locator(".js-plotly-plot")
        assert figures.count() >= 3
        box = figures.first.bounding_box()
        assert box is not None and box["height"] > 200 and box["width"] > 300
        assert visit.page.locator(".js-plotly-plot .main-svg .trace, .js-plotly-plot .main-svg image").count() >= 1
        solutions = visit.page.locator("details.hide")
        assert solutions.count() >= 2 and visit.page.locator("details.hide[open]").count() == 0  # collapsed
        solutions.first.locator("summary").click()
        assert visit.page.locator("details.hide[open]").count() == 1  # a click shows it
        assert not visit.errors and not visit.outside, (visit.errors, visit.outside)
    finally:
        visit.close()


@pytest.mark.browser
def test_search_finds_smoother(browser: object, base_url: str) -> None:
    visit = Visit(browser, base_url + "search.html?q=Smoother")
    try:
        hit = visit.page.locator('#search-results a[href*="smoothlab.smoothing.Smoother"]')
        hit.first.wait_for(timeout=30_000)
        assert hit.count() >= 1
        assert not visit.errors, visit.errors
    finally:
        visit.close()

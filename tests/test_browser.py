"""The notebooks as a person sees them: JupyterLab in a real (headless) Chromium (issue 13).

nbval checks that every cell runs; these tests check what a person sees when they open a notebook
in JupyterLab and run all its cells: no error or traceback in any output (stderr included), the
Plotly figures and the ipywidgets rendered, sliders that redraw their figure, explorers that fit a
laptop screen, a Dask dashboard link that answers. Each notebook leaves screenshots under
``test-results/browser/`` (``SMOOTHLAB_BROWSER_RESULTS`` to change it) with a ``report.json``.

One JupyterLab server (quick mode, ``SMOOTHLAB_QUICK=1``, on a free local port with a token) serves
copies of the notebooks for the whole module, so the stored notebooks are never touched. Playwright
drives the Chromium of the operating system (Debian's ``chromium`` package, or
``SMOOTHLAB_CHROMIUM``): without Playwright or a Chromium the tests skip and say why, unless
``SMOOTHLAB_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure. Deselect them with
``-m "not browser"``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
RESULTS = Path(os.environ.get("SMOOTHLAB_BROWSER_RESULTS", ROOT / "test-results" / "browser"))
LAPTOP = {"width": 1366, "height": 768}  # the screen the notebooks must be usable on
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    """The Chromium to drive: ``SMOOTHLAB_CHROMIUM``, else the operating system's."""
    for candidate in (os.environ.get("SMOOTHLAB_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(reason: str) -> None:
    """Skip the module, or fail it where the browser tests must run (``SMOOTHLAB_REQUIRE_BROWSER=1``, set by CI)."""
    if os.environ.get("SMOOTHLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (SMOOTHLAB_REQUIRE_BROWSER=1: the browser tests must run here)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    import jupyterlab  # noqa: F401
    from playwright import sync_api
except ImportError as exc:
    _unavailable(f"browser tests need Playwright for Python and JupyterLab ({exc}): pip install -e '.[test]'")
CHROMIUM = _chromium()
if CHROMIUM is None:
    _unavailable(
        "browser tests need a Chromium: apt-get install chromium (Debian), or set SMOOTHLAB_CHROMIUM "
        "to a Chromium executable (.ci/run installs it)"
    )


@dataclass(frozen=True)
class Expect:
    """What a person must see in one notebook after "Run All Cells"."""

    plotly: int = 1  # Plotly figures rendered, at least
    sliders: int = 0  # ipywidgets sliders rendered, at least
    widgets: int = 0  # ipywidgets views of any kind, at least
    move_slider: bool = False  # move the first slider of the first explorer: its figure must redraw
    dashboard: bool = False  # the notebook prints a Dask dashboard link, which must answer (HTTP 200)
    seconds: float = 600.0  # time limit of the run (quick mode; generous for a loaded CI machine)


# Per notebook, by file stem; a notebook not listed gets Expect() (at least one Plotly figure).
EXPECT: dict[str, Expect] = {
    "00_overview": Expect(plotly=0),  # text, links and one attack's result: no figure
    "01_laplacian_smoothing": Expect(plotly=5, sliders=1, widgets=2, move_slider=True),
    "02_attacks_on_mnist": Expect(plotly=5),
    "03_distributed_evaluation": Expect(plotly=2, widgets=4, dashboard=True),  # widgets: the progress bar
    "04_magnification": Expect(plotly=5, sliders=6, widgets=6, move_slider=True, seconds=900),
    "05_natural_images": Expect(plotly=5, widgets=3),
}

_ERROR = re.compile(r"Traceback \(most recent call last\)|\bERROR\b|^\s*\w*(Error|Exception)\b", re.MULTILINE)
_DASHBOARD = re.compile(r"(?:https?://[^\s()'\"]+|/[^\s()'\"]*)/status\b")
_WIDGET_ERROR = "Error displaying widget"


# ------------------------------------------------------------------------------ the server


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token and folder of notebooks (copies)."""

    base: str
    token: str
    root: Path
    process: subprocess.Popen

    def url(self, path: str) -> str:
        return f"{self.base}/{path}?token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """JupyterLab settings of the test server: every cell in the DOM, no news pop-up, no autosave."""
    settings = {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    }
    for name, values in settings.items():
        path = folder / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def start_lab(root: Path, state: Path, timeout: float = 120.0) -> Lab:
    """Start JupyterLab on a free local port with a token, in quick mode, serving ``root``."""
    _settings(state / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, SMOOTHLAB_QUICK="1", JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"))
    env.pop("JUPYTERHUB_SERVICE_PREFIX", None)
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={state / 'settings'}", f"--LabApp.workspaces_dir={state / 'workspaces'}",
    ]  # fmt: skip
    log = open(state / "jupyterlab.log", "w")  # noqa: SIM115 - closed with the server
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(lab.url("api/status"), timeout=2) as answer:
                if answer.status == 200:
                    return lab
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_lab(lab)
            raise RuntimeError(f"JupyterLab did not start; its log:\n{(state / 'jupyterlab.log').read_text()[-3000:]}")
        time.sleep(0.3)


def stop_lab(lab: Lab) -> None:
    """Stop the server and its kernels (its process group)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(lab.process.pid, sig)
            lab.process.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    (RESULTS / "report.json").unlink(missing_ok=True)  # the report of this run only
    root = tmp_path_factory.mktemp("notebooks")
    for book in NOTEBOOKS:
        shutil.copy(book, root / book.name)
    server = start_lab(root, tmp_path_factory.mktemp("jupyterlab"))
    yield server
    stop_lab(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # launch() gives Chromium a fresh, empty user-data-dir of its own
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


# ------------------------------------------------------------------------------ one notebook


@dataclass
class Report:
    """What one run of a notebook in the browser showed."""

    name: str
    seconds: float = 0.0
    code_cells: int = 0
    executed: int = 0
    errors: list[str] = field(default_factory=list)  # outputs holding an error or a traceback, dialogs
    stderr: list[str] = field(default_factory=list)  # every stderr output (warnings included)
    plotly: int = 0
    sliders: int = 0
    widgets: int = 0
    dashboard: dict[str, int] = field(default_factory=dict)  # link -> HTTP status
    slider_move: dict[str, Any] = field(default_factory=dict)
    fits: dict[str, Any] = field(default_factory=dict)  # the explorers' size against the visible notebook area
    page_errors: list[str] = field(default_factory=list)  # uncaught JavaScript errors (reported, not failed)
    screenshots: list[str] = field(default_factory=list)


_STATE_JS = """panel => {
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim());
  const stderr = [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .map(e => e.innerText);
  const stdout = [...panel.querySelectorAll('.jp-OutputArea-output')].map(e => e.innerText).join('\\n');
  const kernel = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  return {prompts, stderr, stdout, kernel: kernel ? kernel.getAttribute('data-status') : null,
          dialogs: [...document.querySelectorAll('.jp-Dialog')].map(e => e.innerText)};
}"""

_COUNT_JS = """panel => ({
  plotly: panel.querySelectorAll('.js-plotly-plot').length,
  sliders: panel.querySelectorAll('.widget-slider').length,
  widgets: panel.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
  widget_errors: panel.innerText.split('Error displaying widget').length - 1,
})"""

_FIGURE_JS = """box => {
  const plot = box.querySelector('.js-plotly-plot');
  if (!plot) return null;
  const title = plot.querySelector('.gtitle');
  return {title: title ? title.textContent : '',
          images: [...plot.querySelectorAll('image')].map(e => e.getAttribute('href') || e.getAttribute('xlink:href') || '')};
}"""


def _open(page: Any, lab: Lab, name: str, timeout_ms: float = 90_000) -> Any:
    """Open ``name`` in a workspace of its own; return its notebook panel once its kernel is idle."""
    workspace = re.sub(r"\W", "-", name) + "-" + secrets.token_hex(3)
    page.goto(lab.url(f"lab/workspaces/{workspace}/tree/{name}"))
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
    panel.locator(".jp-Cell").first.wait_for(timeout=timeout_ms)
    # the kernel of the notebook's metadata started and connected (before that the indicator may
    # read idle too, and Run All would ask which kernel to start)
    page.wait_for_function(
        """() => {
            const name = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) [data-jp-item-name="kernelName"]');
            const bar = document.querySelector('.jp-StatusBar-Widget') || document.body;
            return name && !/No Kernel/.test(name.textContent) && /[|] Idle/.test(bar.innerText);
        }""",
        timeout=timeout_ms,
    )
    return panel


def _run_all(page: Any) -> None:
    """Run > Run All Cells, as a person would."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def _fetch(page: Any, lab: Lab, link: str) -> int:
    """HTTP status of a dashboard link (a path goes through the JupyterLab server, with its cookie)."""
    url = lab.base + link if link.startswith("/") else link
    try:
        return page.request.get(url, timeout=20_000).status
    except sync_api.Error:
        return -1


def _wait_done(page: Any, panel: Any, lab: Lab, report: Report, expect: Expect) -> dict[str, Any]:
    """Poll until every code cell ran (or an error stopped the run) and the kernel is idle.

    Dashboard links are fetched while the run goes on: the notebook closes its cluster at the end.
    """
    deadline = time.monotonic() + expect.seconds
    settled = 0
    while True:
        state = panel.evaluate(_STATE_JS)
        if expect.dashboard:
            for link in _DASHBOARD.findall(state["stdout"]):
                if report.dashboard.get(link) != 200:
                    report.dashboard[link] = _fetch(page, lab, link)
        running = any("*" in p for p in state["prompts"])
        finished = all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"])
        stopped = any(_ERROR.search(s) for s in state["stderr"]) or state["dialogs"]
        settled = settled + 1 if state["kernel"] == "idle" and not running and (finished or stopped) else 0
        if settled >= (2 if finished else 6):  # idle for a while: no cell about to start
            return state
        if time.monotonic() > deadline:
            report.errors.append(f"timeout: the run did not finish in {expect.seconds:g} s; prompts {state['prompts']}")
            return state
        time.sleep(0.5)


def _screenshot(page: Any, folder: Path, name: str, report: Report, target: Any = None) -> None:
    path = folder / f"{name}.png"
    (target or page).screenshot(path=str(path))
    report.screenshots.append(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))


def _whole_notebook(page: Any, panel: Any, folder: Path, stem: str, report: Report) -> None:
    """One screenshot of the whole notebook: the window made as tall as its content."""
    height = panel.evaluate("p => { const o = p.querySelector('.jp-WindowedPanel-outer'); o.scrollTop = 0; return o.scrollHeight; }")
    page.set_viewport_size({"width": LAPTOP["width"], "height": min(int(height) + 200, 20_000)})
    page.wait_for_timeout(500)
    _screenshot(page, folder, stem, report)
    page.set_viewport_size(LAPTOP)
    page.wait_for_timeout(300)


def _explorer_fits(panel: Any, explorer: Any) -> dict[str, Any]:
    """The explorer's size against the visible notebook area on the laptop screen."""
    box = explorer.bounding_box()
    area = panel.evaluate("p => { const o = p.querySelector('.jp-WindowedPanel-outer'); return [o.clientWidth, o.clientHeight]; }")
    fits = box is not None and box["width"] <= area[0] and box["height"] <= area[1]
    return {"explorer": [round(box["width"]), round(box["height"])] if box else None, "visible_area": area, "fits": fits}


def _move_slider(page: Any, panel: Any, folder: Path, stem: str, report: Report) -> None:
    """Drag the first slider of the first explorer to its other end; the figure must redraw."""
    explorer = panel.locator(".widget-vbox:has(.widget-slider):has(.js-plotly-plot)").first
    explorer.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    report.fits = _explorer_fits(panel, explorer)
    _screenshot(page, folder, f"{stem}-slider-before", report)
    before = explorer.evaluate(_FIGURE_JS)
    slider = explorer.locator(".widget-slider").first
    readout = slider.locator(".widget-readout").first
    value_before = readout.inner_text()
    handle, track = slider.locator(".noUi-handle").first, slider.locator(".noUi-target").first
    h, t = handle.bounding_box(), track.bounding_box()
    x0, y0 = h["x"] + h["width"] / 2, h["y"] + h["height"] / 2
    x1 = t["x"] + 2 if x0 > t["x"] + t["width"] / 2 else t["x"] + t["width"] - 2  # to the far end
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y0, steps=8)
    page.mouse.up()
    after, deadline = before, time.monotonic() + 30
    while time.monotonic() < deadline:
        after = explorer.evaluate(_FIGURE_JS)
        if after and before and after["title"] != before["title"]:
            break
        page.wait_for_timeout(200)
    page.wait_for_timeout(500)  # the new figure's images are drawn
    after = explorer.evaluate(_FIGURE_JS)
    _screenshot(page, folder, f"{stem}-slider-after", report)
    changed = [i for i, (a, b) in enumerate(zip(before["images"], after["images"])) if a != b] if before and after else []
    report.slider_move = {
        "value": [value_before, readout.inner_text()],
        "title": [before["title"] if before else None, after["title"] if after else None],
        "images": len(after["images"]) if after else 0,
        "images_changed": len(changed),
    }


def run_notebook(browser: Any, lab: Lab, name: str, expect: Expect, folder: Path) -> Report:
    """Open ``name`` in JupyterLab, run all its cells, and report what a person sees."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(name).stem
    report = Report(name)
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.on("pageerror", lambda exc: report.page_errors.append(str(exc)[:300]))
    t0 = time.perf_counter()
    try:
        panel = _open(page, lab, name)
        _run_all(page)
        state = _wait_done(page, panel, lab, report, expect)
        report.seconds = round(time.perf_counter() - t0, 1)
        page.wait_for_timeout(1000)  # the last figures and widgets render
        state = panel.evaluate(_STATE_JS)
        report.code_cells = len(state["prompts"])
        report.executed = sum(bool(re.fullmatch(r"\[\d+\]:", p)) for p in state["prompts"])
        report.stderr = state["stderr"]
        report.errors += [s for s in state["stderr"] if _ERROR.search(s)] + [f"dialog: {d}" for d in state["dialogs"]]
        counts = panel.evaluate(_COUNT_JS)
        report.plotly, report.sliders, report.widgets = counts["plotly"], counts["sliders"], counts["widgets"]
        if counts["widget_errors"]:
            report.errors.append(f"{counts['widget_errors']} widget(s) failed to render ({_WIDGET_ERROR})")
        _whole_notebook(page, panel, folder, stem, report)
        if expect.move_slider and not report.errors:
            _move_slider(page, panel, folder, stem, report)
    finally:
        context.close()
    return report


def check(report: Report, expect: Expect) -> list[str]:
    """Everything that is wrong with what the report shows; empty when the notebook is fine."""
    problems = [f"error output: {e[:800]}" for e in report.errors]
    if report.executed != report.code_cells:
        problems.append(f"{report.code_cells - report.executed} of {report.code_cells} code cells did not run")
    for what in ("plotly", "sliders", "widgets"):
        if getattr(report, what) < getattr(expect, what):
            problems.append(f"{getattr(report, what)} {what} rendered, expected at least {getattr(expect, what)}")
    if expect.move_slider and not problems:
        move = report.slider_move
        if not move or move["value"][0] == move["value"][1]:
            problems.append(f"the slider did not move: {move}")
        elif move["title"][0] == move["title"][1] or move["images_changed"] == 0:
            problems.append(f"moving the slider did not redraw the figure: {move}")
        if not report.fits.get("fits"):
            problems.append(f"the explorer does not fit the notebook area of a {LAPTOP} screen: {report.fits}")
    if expect.dashboard:
        if not report.dashboard:
            problems.append("no Dask dashboard link (…/status) printed")
        problems += [f"dashboard link {link} answered {status}" for link, status in report.dashboard.items() if status != 200]
    return problems


def _record(report: Report) -> None:
    """Add the report to ``RESULTS/report.json`` (one entry per notebook)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "report.json"
    reports = json.loads(path.read_text()) if path.exists() else {}
    reports[report.name] = asdict(report)
    path.write_text(json.dumps(reports, indent=1, ensure_ascii=False))


# ------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("book", NOTEBOOKS, ids=[b.stem for b in NOTEBOOKS])
def test_notebook_in_the_browser(book: Path, lab: Lab, browser: Any) -> None:
    expect = EXPECT.get(book.stem, Expect())
    report = run_notebook(browser, lab, book.name, expect, RESULTS)
    _record(report)
    assert report.screenshots and all((ROOT / s).exists() or Path(s).exists() for s in report.screenshots)
    problems = check(report, expect)
    assert not problems, "\n".join(problems)


def test_a_broken_notebook_fails_the_check(lab: Lab, browser: Any) -> None:
    """A cell that raises, and one that logs a traceback to stderr without raising (what Dask's
    scheduler did in notebook 3), must both be reported; the cells after the raise do not run."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import sys\nprint('fine so far')"),
        nbformat.v4.new_code_cell(
            "sys.stderr.write('distributed.scheduler - ERROR - something went wrong\\n'"
            "'Traceback (most recent call last):\\n  File \"progress.py\", line 1, in setup\\n'"
            "'asyncio.exceptions.CancelledError\\n')"
        ),
        nbformat.v4.new_code_cell("raise RuntimeError('a deliberately broken cell')"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab.root / "zz_broken.ipynb")
    expect = Expect(plotly=0, seconds=120)
    report = run_notebook(browser, lab, "zz_broken.ipynb", expect, RESULTS / "self-test")
    problems = check(report, expect)
    assert any("a deliberately broken cell" in p and "RuntimeError" in p for p in problems), problems
    assert any("CancelledError" in p and "ERROR" in p for p in problems), problems
    assert "1 of 4 code cells did not run" in problems
    assert report.executed == 3

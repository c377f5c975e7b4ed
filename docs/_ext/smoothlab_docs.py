"""Sphinx glue of smoothlab's site (docs/conf.py loads it).

- The notebooks' Plotly figures (``application/vnd.plotly.v1+json``, what plotly's default renderer gives in a
  kernel) are drawn with the site's own plotly.js, copied from the plotly package into ``_static`` and loaded by
  the pages that hold a figure; an ipywidgets view, which needs a kernel, is replaced by a short note. No page
  loads anything from a CDN (MathJax comes from sphinx-mathjax-offline, copied the same way).
- A constant's ``#:`` comment is found where it is defined; a public name without a docstring is a warning.
- Links of the README's included sections to files of the repository point to the repository.
"""

from __future__ import annotations

import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util import logging

LOGGER = logging.getLogger("smoothlab_docs")

#: The public modules, each documented in docs/api/ (tests/test_docs.py checks that each name of their __all__ is).
PUBLIC_MODULES = (
    "smoothlab", "smoothlab.graph", "smoothlab.smoothing", "smoothlab.attacks", "smoothlab.records",
    "smoothlab.metrics", "smoothlab.paper", "smoothlab.perturbations", "smoothlab.similarity",
    "smoothlab.magnification", "smoothlab.filters", "smoothlab.models", "smoothlab.data", "smoothlab.bench",
    "smoothlab.bench.spec", "smoothlab.bench.runner", "smoothlab.bench.shard", "smoothlab.bench.storage",
    "smoothlab.bench.scenarios", "smoothlab.bench.saved", "smoothlab.bench.comparison",
    "smoothlab.viz", "smoothlab.viz.figures", "smoothlab.viz.explorers", "smoothlab.cli",
)

# a <script src=...> that loads from outside the site (plotly's MathJax and plotly.js CDNs, require.js)
_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)
# plotly's "notebook" renderer: its inline copy of plotly.js (several MB), once per page
_INLINE_PLOTLYJS = re.compile(r"<script type=\"text/javascript\">\s*/\*\*\s*\n\*\s*plotly\.js.*?</script>", re.S)
_REQUIRE_OPEN = re.compile(r"require\(\[\"plotly\"\],\s*function\(Plotly\)\s*\{")
# a link to the Dask dashboard of the run that built the page (Dask's HTML reprs): gone once the build is over
_DASHBOARD_LINK = re.compile(r"<a\s+href=\"(?:/proxy/\d+|https?://(?:127\.0\.0\.1|localhost)(?::\d+)?)/status\"[^>]*>(.*?)</a>", re.S)


def html_for_the_site(html: str) -> str:
    """A notebook's HTML output, rewritten for the site.

    Drops scripts loaded from outside the site and plotly.js inlined by plotly's notebook renderer, turns
    ``require(["plotly"], function(Plotly) {...})`` into a function called with ``window.Plotly`` (the site's
    plotly.js), and links to the Dask dashboard of the build's own run into plain text.
    """
    html = _REMOTE_SCRIPT.sub("", html)
    html = _DASHBOARD_LINK.sub(r'<span title="the Dask dashboard of the run that built this page">\1</span>', html)
    html = _INLINE_PLOTLYJS.sub("", html)
    if _REQUIRE_OPEN.search(html):
        html = _REQUIRE_OPEN.sub("(function(Plotly) {", html)
        head, sep, tail = html.rpartition("})")
        html = head + "})(window.Plotly)" + tail if sep else html
    return html


class OutputsForTheSite:
    """A myst-nb mime renderer (``myst_nb.core.render.MimeRenderPlugin``) for Plotly figures and widget views."""

    PLOTLY = "application/vnd.plotly.v1+json"
    WIDGET = "application/vnd.jupyter.widget-view+json"
    mime_priority_overrides = (("html", PLOTLY, 1), ("html", WIDGET, 2))

    @staticmethod
    def handle_mime(renderer: Any, data: Any, inline: bool) -> list[nodes.Element] | None:
        if data.mime_type == OutputsForTheSite.PLOTLY and not inline:
            import json

            import plotly.io as pio

            figure = data.content if isinstance(data.content, dict) else json.loads(data.content)
            html = pio.to_html(figure, include_plotlyjs=False, include_mathjax=False, full_html=False,
                               validate=False, default_width="100%", config={"responsive": True})
            return [nodes.raw("", html, format="html", classes=["smoothlab-plotly"])]
        if data.mime_type == OutputsForTheSite.WIDGET:
            note = nodes.paragraph(text="An interactive explorer (ipywidgets): it needs a running kernel. "
                                        "Open this chapter on Binder or Colab with the buttons at the top to use it.")
            return [nodes.container("", note, classes=["smoothlab-widget-note"])]
        return None


def _register_mime_renderer() -> None:
    """Add :class:`OutputsForTheSite` to myst-nb's mime renderers (a list myst-nb reads from entry points, once)."""
    from myst_nb.core.render import load_mime_renders

    renderers = load_mime_renders()
    if OutputsForTheSite not in renderers:
        renderers.insert(0, OutputsForTheSite)


def _plotly_where_needed(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """plotly.js (the site's copy) on the pages that hold a Plotly figure, and only there."""
    if "plotly-graph-div" in context.get("body", ""):
        app.add_js_file("plotly.min.js", priority=400)


def _rewrite_raw_html(app: Any, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(nodes.raw)):
        if "html" in node.get("format", "").split():
            new = html_for_the_site(node.astext())
            if new != node.astext():
                node.replace_self(nodes.raw(new, new, format="html"))


def _mathjax_folder() -> Path:
    files = metadata.files("sphinx-mathjax-offline") or []
    core = next(f for f in files if str(f).endswith("static/mathjax/tex-chtml.js"))
    return Path(core.locate()).parent


def _copy_assets(app: Any, exc: Exception | None) -> None:
    """plotly.js (from the plotly package) and MathJax 3 (from sphinx-mathjax-offline) into ``_static``."""
    if exc is not None or app.builder.format != "html":
        return
    import plotly

    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", static / "plotly.min.js")
    target = static / "mathjax"
    if not (target / "tex-chtml.js").exists():
        shutil.copytree(_mathjax_folder(), target, dirs_exist_ok=True)


_COMMENTS: dict[str, list[tuple[Any, list[str]]]] = {}


def _attribute_comments() -> dict[str, list[tuple[Any, list[str]]]]:
    """``name -> [(object, #: comment lines)]`` over every module of smoothlab, private ones included."""
    if not _COMMENTS:
        import importlib
        import pkgutil

        import smoothlab
        from sphinx.pycode import ModuleAnalyzer

        for info in pkgutil.walk_packages(smoothlab.__path__, "smoothlab."):
            try:
                module = importlib.import_module(info.name)
                docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
            except Exception:  # noqa: BLE001 - optional dependencies, deprecated aliases
                continue
            for (scope, name), lines in docs.items():
                if scope == "" and hasattr(module, name):
                    _COMMENTS.setdefault(name, []).append((getattr(module, name), list(lines)))
    return _COMMENTS


def _constant_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """A constant's ``#:`` comment where it is defined (autodoc reads only the module it documents, here often the
    subpackage that re-exports it); a constant without one is a warning (an error under ``-W``)."""
    if what != "data":
        return
    text = "\n".join(lines).strip()
    if text and text != (type(obj).__doc__ or "").strip():
        return
    found = [doc for value, doc in _attribute_comments().get(name.rsplit(".", 1)[-1], []) if value is obj]
    if not found:
        LOGGER.warning("the constant %s has no docstring (a #: comment where it is defined)", name,
                       type="smoothlab", subtype="docstring")
    lines[:] = list(found[0]) if found else []


def public_constants() -> list[str]:
    """The full names of the public constants (neither function, class nor module) of every public module."""
    import importlib
    import inspect

    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            value = getattr(module, name)
            if not (inspect.isroutine(value) or inspect.isclass(value) or inspect.ismodule(value)):
                names.append(f"{module_name}.{name}")
    return names


def _repository_links(app: Any, relative_path: Any, parent_docname: str, content: list[str]) -> None:
    """Links of an included README to files of the repository (not pages of the site) point to the repository."""
    base = app.config.html_context["repository"] + "/blob/main/"
    content[0] = app.config.REPOSITORY_FILES.sub(lambda m: "](" + base + m.group(1).lstrip("./") + ")", content[0])


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("REPOSITORY_FILES", None, "env")
    app.connect("autodoc-process-docstring", _constant_docstring, priority=100)  # before numpydoc
    app.connect("include-read", _repository_links)
    _register_mime_renderer()
    app.connect("html-page-context", _plotly_where_needed)
    app.connect("doctree-resolved", _rewrite_raw_html)
    app.connect("build-finished", _copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

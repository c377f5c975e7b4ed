"""Sphinx glue of smoothlab's site: the site carries its own plotly.js and MathJax, and the notebooks' Plotly
outputs are rewritten to use them (no CDN, no require.js)."""

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
    "smoothlab.bench.scenarios", "smoothlab.viz", "smoothlab.viz.figures", "smoothlab.viz.explorers", "smoothlab.cli",
)

# a <script src=...> that loads from outside the site (plotly's MathJax and plotly.js CDNs, require.js)
_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.I)
# plotly's "notebook" renderer: its inline copy of plotly.js (several MB), once per page
_INLINE_PLOTLYJS = re.compile(r"<script type=\"text/javascript\">\s*/\*\*\s*\n\*\s*plotly\.js.*?</script>", re.S)
_REQUIRE_OPEN = re.compile(r"require\(\[\"plotly\"\],\s*function\(Plotly\)\s*\{")


def plotly_html_for_the_site(html: str) -> str:
    """A notebook's Plotly HTML output, rewritten to use the site's plotly.js (``window.Plotly``).

    Drops scripts loaded from outside the site and plotly.js inlined by plotly's notebook renderer, and turns
    ``require(["plotly"], function(Plotly) {...})`` into a function called with ``window.Plotly``.
    """
    html = _REMOTE_SCRIPT.sub("", html)
    html = _INLINE_PLOTLYJS.sub("", html)
    if _REQUIRE_OPEN.search(html):
        html = _REQUIRE_OPEN.sub("(function(Plotly) {", html)
        head, sep, tail = html.rpartition("})")
        html = head + "})(window.Plotly)" + tail if sep else html
    return html


def _rewrite_raw_html(app: Any, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(nodes.raw)):
        if "html" in node.get("format", "").split() and ("plotly" in node.astext().lower() or "<script" in node.astext()):
            new = plotly_html_for_the_site(node.astext())
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
    app.connect("doctree-resolved", _rewrite_raw_html)
    app.connect("build-finished", _copy_assets)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Several benchmark runs side by side: :func:`compare` (``smoothlab compare OUT1 OUT2 ...``).

Each run is an output folder of :func:`smoothlab.bench.run` (``smoothlab bench --out``) that
finished (its ``records.parquet``). :func:`compare` recomputes each run's summary (eq. 20) from
its records, stacks them in one table with one row per run and attack, and overlays their
operating characteristics (eq. 21) in one Plotly figure: one colour per attack, one dash per run.

Runs are labelled by what tells them apart: the model (or the transfer ``model -> target``), the
data set, the 8-bit protocol, and the folder where that is not enough. Runs on different data sets
are allowed: every row names its data set, the label says it, and the table says that their rows do
not compare; nothing is ever merged across runs.
"""

from __future__ import annotations

import json
import warnings
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Comparison", "ComparedRun", "compare", "COMPARISON_FILES"]

#: What :meth:`Comparison.save` writes.
COMPARISON_FILES = ("table.md", "table.csv", "table.tex", "operating_characteristic.html")

# The columns of table.tex (a paper's table; table.md and table.csv hold every column), in LaTeX.
_TEX_COLUMNS = {
    "n_correct": "$N$",
    "p_success": "$P_{\\mathrm{suc}}$",
    "mean_distortion": "$\\bar{D}$",
    "mean_visibility": "$\\bar{V}$",
    "mean_ssim": "SSIM",
    "mean_ciede2000": "$\\Delta E_{00}$",
}
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


@dataclass
class ComparedRun:
    """One run of a :class:`Comparison`: its folder, label, spec (the JSON dict) and records."""

    out: Path
    label: str
    spec: dict[str, Any]
    records: pd.DataFrame

    @property
    def dataset(self) -> str:
        return f"{self.spec['dataset']} {self.spec['split']}"

    @property
    def scenario(self) -> str:
        target = self.spec.get("target_model")
        return self.spec["model"] if target is None else f"{self.spec['model']} -> {target}"

    @property
    def quantised(self) -> bool:
        return all((a.get("params") or {}).get("quantise") is True for a in self.spec["attacks"])


@dataclass
class Comparison:
    """Outcome of :func:`compare`.

    Attributes
    ----------
    runs : list of ComparedRun
        The runs, in the order given.
    table : pandas.DataFrame
        :func:`smoothlab.metrics.summary` of each run, indexed by ``(run, attack)``, with the columns
        ``dataset`` and ``model`` first.
    operating_characteristics : dict
        ``(run, attack) -> (D, P)`` (eq. 21).
    """

    runs: list[ComparedRun]
    table: pd.DataFrame
    operating_characteristics: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def mixed_datasets(self) -> bool:
        """The runs are on more than one data set (their rows do not compare)."""
        return len({r.dataset for r in self.runs}) > 1

    def markdown(self, digits: int = 2) -> str:
        """The table in Markdown (the paper's notation), a run column first."""
        from smoothlab.metrics import format_summary

        lines: list[str] = []
        for run in self.runs:
            part = self.table.loc[run.label].drop(columns=["dataset", "model"])
            rows = format_summary(part, "markdown", digits=digits).splitlines()
            if not lines:
                lines = ["| run | data set " + rows[0], "|:---|:---" + rows[1]]
            lines += [f"| {run.label} | {run.dataset} " + row for row in rows[2:]]
        return "\n".join(lines) + "\n"

    def latex(self, digits: int = 2) -> str:
        """The table as a LaTeX ``tabular`` (booktabs rules): run, attack, N, P_suc, D̄, V̄, SSIM, ΔE00."""
        from smoothlab.metrics import attack_label

        cols = list(_TEX_COLUMNS)
        out = ["\\begin{tabular}{ll" + "r" * len(cols) + "}", "\\toprule",
               "run & attack & " + " & ".join(_TEX_COLUMNS.values()) + " \\\\", "\\midrule"]
        for i, run in enumerate(self.runs):
            if i:
                out.append("\\midrule")
            for attack, row in self.table.loc[run.label].iterrows():
                cells = [_tex_escape(run.label), _tex_escape(attack_label(str(attack)))]
                for c in cols:
                    v = row[c]
                    cells.append("--" if isinstance(v, float) and math.isnan(v) else
                                 str(int(v)) if c == "n_correct" else f"{float(v):.{digits}f}")
                out.append(" & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(out) + "\n"

    def figure(self, *, title: str | None = None) -> Any:
        """The operating characteristics of every run in one Plotly figure: a colour per attack,
        a dash per run, legend entries ``"run — attack"``."""
        from smoothlab.metrics import attack_label
        from smoothlab.viz import operating_characteristic_figure

        keys = {f"{run}\x1f{attack}": (run, attack) for run, attack in self.operating_characteristics}
        curves = {k: self.operating_characteristics[v] for k, v in keys.items()}
        labels = {k: f"{run} — {attack_label(attack)}" for k, (run, attack) in keys.items()}
        if title is None:
            title = "Operating characteristics — " + "; ".join(r.label for r in self.runs)
        fig = operating_characteristic_figure(curves, labels=labels, title=title)
        palette = _palette()
        attacks = list(dict.fromkeys(a for _, a in keys.values()))
        runs = [r.label for r in self.runs]
        for trace in fig.data:
            run, attack = keys[trace.meta]
            trace.line.color = palette[attacks.index(attack) % len(palette)]
            trace.line.dash = _DASHES[runs.index(run) % len(_DASHES)]
            trace.legendgroup = run
        fig.update_layout(legend_title_text="run — attack")
        return fig

    def save(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write table.md, table.csv, table.tex and operating_characteristic.html to ``directory``."""
        target = Path(directory).expanduser()
        target.mkdir(parents=True, exist_ok=True)
        paths = {name: target / name for name in COMPARISON_FILES}
        runs = "\n".join(f"- {r.label}: {r.scenario} on {r.dataset} ({r.spec['source']}), {r.out}" for r in self.runs)
        note = ("\n\nThe runs are on different data sets: their rows do not compare across data sets.\n"
                if self.mixed_datasets else "\n")
        paths["table.md"].write_text("Runs:\n\n" + runs + "\n\n" + self.markdown() + note)
        paths["table.csv"].write_text(self.table.to_csv(float_format="%.17g", na_rep="nan"))
        paths["table.tex"].write_text(self.latex())
        self.figure().write_html(paths["operating_characteristic.html"], include_plotlyjs="cdn")
        return paths

    def __repr__(self) -> str:
        return f"Comparison({len(self.runs)} runs: {', '.join(r.label for r in self.runs)}; {len(self.table)} rows)"


def _palette() -> list[str]:
    import plotly.colors

    return list(plotly.colors.qualitative.Plotly)


def _tex_escape(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("&", "\\&"), ("%", "\\%"), ("_", "\\_"), ("#", "\\#"), ("$", "\\$")):
        text = text.replace(a, b)
    return text.replace("->", "$\\to$").replace("—", "--")


def _read_run(out: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """The spec (JSON dict) and the records of a finished run in ``out``."""
    from smoothlab.bench import storage
    from smoothlab.records import validate_records

    spec_file, rec_file = out / storage.SPEC_FILE, out / "records.parquet"
    if not spec_file.is_file():
        raise FileNotFoundError(f"outs must be output folders of smoothlab bench runs, but {spec_file} does not exist")
    if not rec_file.is_file():
        raise ValueError(f"the run in {out} is not finished (no records.parquet): run the same benchmark to complete it")
    doc = json.loads(spec_file.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
        raise ValueError(f"{spec_file} is not a smoothlab BenchSpec document")
    shards = storage._read_metadata(rec_file).get("shards")
    if isinstance(shards, list) and len(shards) == 2 and shards[0] < shards[1]:
        warnings.warn(
            f"the run in {out} is partial: its records.parquet (written by smoothlab.bench.report) covers "
            f"{shards[0]} of its {shards[1]} shards",
            UserWarning,
            stacklevel=3,
        )
    # records of older runs (without ciede2000, ...) read with the missing optional columns as NaN
    return doc["spec"], validate_records(pd.read_parquet(rec_file), f"records of {out}")


def _labels(runs: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    """What tells the runs apart: model, data set, 8-bit protocol; the folder where they tie."""

    def parts(spec: dict[str, Any]) -> dict[str, str]:
        target = spec.get("target_model")
        quantised = all((a.get("params") or {}).get("quantise") is True for a in spec["attacks"])
        return {
            "model": spec["model"] if target is None else f"{spec['model']} -> {target}",
            "dataset": f"{spec['dataset']} {spec['split']}",
            "source": str(spec["source"]),
            "8bit": "8-bit" if quantised else "float",
        }

    described = [parts(s) for _, s in runs]
    differ = [k for k in described[0] if len({d[k] for d in described}) > 1]
    differ = [k for k in differ if k != "source" or "dataset" not in differ]
    labels = [", ".join(d[k] for k in differ) or d["model"] for d in described]
    if len(set(labels)) < len(labels):  # same model, data and protocol: other settings; name the folder
        labels = [f"{lab} ({o.name or o})" for lab, (o, _) in zip(labels, runs)]
    if len(set(labels)) < len(labels):
        labels = [f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
    return labels


def compare(
    outs: Sequence[str | os.PathLike[str]],
    *,
    labels: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> Comparison:
    """Put several finished benchmark runs in one table and one figure.

    Parameters
    ----------
    outs : sequence of paths
        Output folders of :func:`smoothlab.bench.run` (``smoothlab bench --out``), each finished.
    labels : sequence of str, optional
        One distinct name per run; default: what tells them apart (module docstring).
    out : path, optional
        Folder to write table.md, table.csv, table.tex and operating_characteristic.html to.

    Returns
    -------
    Comparison
        The runs, the stacked table (index ``(run, attack)``) and the operating characteristics.

    Raises
    ------
    ValueError
        No run, a folder given twice, a run not finished, labels not one distinct string per run.
    FileNotFoundError
        A folder without a benchmark run.

    Examples
    --------
    >>> import tempfile
    >>> from smoothlab.bench import AttackSpec, BenchSpec, compare, run
    >>> spec = BenchSpec(attacks=(AttackSpec("fgsm", budgets=(0.3,)),), n_images=4, batch_size=4,
    ...                  shard_size=4, visibility=False)
    >>> a, b = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = run(spec, out=a, workers=0, progress=False)
    >>> _ = run(spec.quantised(), out=b, workers=0, progress=False)
    >>> both = compare([a, b])
    >>> [r.label for r in both.runs]
    ['float', '8-bit']
    >>> list(both.table.index)
    [('float', 'fgsm'), ('8-bit', 'fgsm')]
    """
    from smoothlab.metrics import operating_characteristics, summary

    if isinstance(outs, (str, os.PathLike)) or not isinstance(outs, Sequence) or not outs:
        raise ValueError(f"outs must be a non-empty sequence of run folders, got {outs!r}")
    paths = [Path(o).expanduser() for o in outs]
    if len({p.resolve() for p in paths}) < len(paths):
        raise ValueError(f"outs must name each run folder once, got {[str(p) for p in paths]}")
    read = [(p, *_read_run(p)) for p in paths]
    if labels is None:
        names = _labels([(p, s) for p, s, _ in read])
    else:
        names = list(labels) if not isinstance(labels, str) else []
        if len(names) != len(paths) or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"labels must be {len(paths)} distinct non-empty strings, one per run, got {labels!r}")
    runs = [ComparedRun(p, n, s, r) for (p, s, r), n in zip(read, names)]
    frames, curves = [], {}
    for run in runs:
        t = summary(run.records)
        t.insert(0, "model", run.scenario)
        t.insert(0, "dataset", run.dataset)
        frames.append(pd.concat({run.label: t}, names=["run"]))
        curves.update({(run.label, a): dc for a, dc in operating_characteristics(run.records).items()})
    result = Comparison(runs, pd.concat(frames), curves)
    if out is not None:
        result.save(out)
    return result

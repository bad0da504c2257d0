"""``dm-ssl report``: a table's runs, mean ± std over seeds per cell, beside the reference.

    dm-ssl report runs/A8 [--table A8] [--format md|csv|latex] [--metric best_acc]
                  [--plots DIR]

Runs are found under the given directories (any depth) by their ``run.json``; each belongs to
the cell its ``experiment`` names. Only runs whose ``results.json`` says ``finished`` are
averaged; the others (interrupted, failed, still running, no result) are listed below the
table with their status and iteration, never averaged in. With ``--table`` the rows follow the
table's definition and cells without runs are shown (n = 0).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dm_ssl.records import METRICS_FILE, RESULTS_FILE, RUN_FILE, read_json, read_metrics

FORMATS = ("md", "csv", "latex")


@dataclass
class RunRow:
    path: Path
    table: str
    cell: str
    setting: str
    method: str
    seed: Any
    status: str
    metric: Optional[float]
    reference: Optional[float]
    iterations: Optional[int] = None
    reason: Optional[str] = None
    param: Optional[Tuple[str, float]] = None   # an ablation's (hyper-parameter, value)
    #: the table's further columns: label -> value (%), None where the run has none
    extras: Dict[str, Optional[float]] = field(default_factory=dict)
    #: the training health monitor's warnings (run.json ``health``): "name at iteration N"
    health: List[str] = field(default_factory=list)


def _mean_std(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample std (0 for one value; None, None for none)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class CellRow:
    table: str
    cell: str
    setting: str
    method: str
    values: List[float] = field(default_factory=list)   # % over finished seeds
    seeds: List[Any] = field(default_factory=list)
    reference: Optional[float] = None
    extras: Dict[str, List[float]] = field(default_factory=dict)   # label -> % per seed

    def extra(self, label: str) -> Tuple[Optional[float], Optional[float]]:
        """Mean and std of a further column over the seeds that have it."""
        return _mean_std(self.extras.get(label) or [])

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return _mean_std(self.values)[0]

    @property
    def std(self) -> Optional[float]:
        return _mean_std(self.values)[1]

    @property
    def diff(self) -> Optional[float]:
        if self.mean is None or self.reference is None:
            return None
        return self.mean - self.reference


def find_runs(paths: Sequence[Path]) -> List[Path]:
    """Run directories (holding ``run.json``) under ``paths``, sorted."""
    found = set()
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"runs directory {root} not found")
        if (root / RUN_FILE).is_file():
            found.add(root)
        found.update(p.parent for p in root.rglob(RUN_FILE))
    return sorted(found)


def load_runs(paths: Sequence[Path], metric: Optional[str] = None) -> List[RunRow]:
    rows = []
    for run in find_runs(paths):
        record = read_json(run / RUN_FILE) or {}
        exp = record.get("experiment") or {}
        results = read_json(run / RESULTS_FILE) or {}
        status = results.get("status") or ("running" if (run / ".sweep.lock").exists()
                                           else "no result")
        key = metric or exp.get("metric") or "best_acc"
        value = _percent(results.get(key)) if status == "finished" else None
        extras = {label: _percent(results.get(k)) if status == "finished" else None
                  for k, label in exp.get("columns") or ()}
        rows.append(RunRow(
            path=run, table=exp.get("table", "-"), cell=exp.get("cell", run.name),
            setting=exp.get("setting") or plain_setting(record),
            # a plain train run is its own row: its folder's name tells it apart
            method=exp.get("method") or f"{record.get('algorithm', '-')} ({run.name})",
            seed=record.get("seed"), status=status,
            metric=value, extras=extras,
            reference=exp.get("reference"), iterations=results.get("iterations"),
            reason=results.get("reason"),
            param=tuple(exp["param"]) if exp.get("param") else None,
            health=[f"{h.get('name')} at iteration {h.get('it')}"
                    for h in record.get("health") or ()]))
    return rows


def plain_setting(record: Dict[str, Any]) -> str:
    """The setting of a run ``dm-ssl train`` made outside a sweep, from its ``run.json``:
    dataset, labeled share and net (``cub200 15% labels resnet50``), so runs that differ in
    them are told apart."""
    share = ""
    for key, text in (("label_percent", "% labels"), ("subset_percent", "% subset")):
        if isinstance(record.get(key), (int, float)):
            share = f"{record[key]:g}{text}"
            break
    else:
        if isinstance(record.get("num_labels"), int):
            share = f"{record['num_labels']} labels"
    parts = [record.get("dataset") or "-", share, record.get("net") or ""]
    return " ".join(p for p in parts if p)


def _percent(value: Any) -> Optional[float]:
    """A results.json fraction as %, None unless a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return 100.0 * float(value)


def aggregate(runs: Sequence[RunRow], table: Any = None) -> Tuple[List[CellRow], List[RunRow]]:
    """Per-cell rows (in the table's order with ``table``) and the runs left out."""
    cells: Dict[Tuple[str, str], CellRow] = {}
    if table is not None:
        for c in table.cells:
            cells[(table.name, c.id)] = CellRow(table.name, c.id, c.setting, c.method,
                                                reference=c.reference)
    left_out = []
    for r in runs:
        if table is not None and r.table != table.name:
            continue
        key = (r.table, r.cell)
        row = cells.setdefault(key, CellRow(r.table, r.cell, r.setting, r.method,
                                            reference=r.reference))
        if r.metric is None:
            left_out.append(r)
            continue
        row.values.append(r.metric)
        row.seeds.append(r.seed)
        for label, value in r.extras.items():
            row.extras.setdefault(label, [])
            if value is not None:
                row.extras[label].append(value)
    return list(cells.values()), left_out


def _fmt(value: Optional[float], digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


HEADER = ("setting", "method", "n", "mean", "std", "reference", "diff")


def render(cells: Sequence[CellRow], left_out: Sequence[RunRow], fmt: str = "md",
           title: str = "", metric: str = "best_acc",
           flagged: Sequence[RunRow] = ()) -> str:
    """The table in ``fmt``; ``left_out`` runs are listed, not averaged; ``flagged`` runs
    (averaged in) are listed with their health warnings."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = [(c.setting, c.method, str(c.n), _fmt(c.mean), _fmt(c.std), _fmt(c.reference),
             _fmt(c.diff, sign=True)) for c in cells]
    # a table's further columns (e.g. Figure A1's mixed-sample accuracies), mean ± std each
    labels = list(dict.fromkeys(label for c in cells for label in c.extras))
    extra = [[tuple(_fmt(v) for v in c.extra(label)) for label in labels] for c in cells]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(("table", "cell") + HEADER + ("seeds",)
                        + tuple(f"{label} {s}" for label in labels for s in ("mean", "std")))
        for c, row, ex in zip(cells, rows, extra):
            writer.writerow((c.table, c.cell) + row + (" ".join(map(str, c.seeds)),)
                            + tuple(v for pair in ex for v in pair))
        for r in left_out:
            writer.writerow((r.table, r.cell, r.setting, r.method, "0", "", "", "", "",
                             f"{r.status} seed {r.seed} at {r.iterations}"))
        for r in flagged:
            writer.writerow((r.table, r.cell, r.setting, r.method, "", "", "", "", "",
                             f"health seed {r.seed}: {'; '.join(r.health)}"))
        return buf.getvalue()
    out = []
    if fmt == "md":
        out.append(f"**{title or 'runs'}** — top-1 % ({metric}), mean ± std over finished "
                   "seeds\n")
        out.append("| setting | method | n | top-1 (%) | reference | diff |"
                   + "".join(f" {label} |" for label in labels))
        out.append("|---|---|---|---|---|---|" + "---|" * len(labels))
        for row, ex in zip(rows, extra):
            mean = "-" if row[3] == "-" else f"{row[3]} ± {row[4]}"
            out.append(f"| {row[0]} | {row[1]} | {row[2]} | {mean} | {row[5]} | {row[6]} |"
                       + "".join(f" {m} ± {sd} |" if m != "-" else " - |" for m, sd in ex))
        if left_out:
            out.append("\nNot averaged (not finished):\n")
            for r in left_out:
                out.append(f"- {r.cell} seed {r.seed}: {r.status}"
                           + (f" at iteration {r.iterations}" if r.iterations else "")
                           + (f" ({r.reason})" if r.reason else "") + f" — {r.path}")
        if flagged:
            out.append("\nHealth warnings (averaged in: check these runs, "
                       "docs/ssl.md#training-health):\n")
            for r in flagged:
                out.append(f"- {r.cell} seed {r.seed}: {'; '.join(r.health)} — {r.path}")
        return "\n".join(out) + "\n"
    # latex (booktabs)
    def tex(s: str) -> str:
        return (s.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")
                .replace("_", r"\_").replace("#", r"\#"))
    out.append(r"\begin{tabular}{llrrrr" + "r" * len(labels) + "}")
    out.append(r"\toprule")
    out.append(r"setting & method & $n$ & top-1 (\%) & reference & diff"
               + "".join(f" & {tex(label)}" for label in labels) + r" \\")
    out.append(r"\midrule")
    for row, ex in zip(rows, extra):
        mean = "--" if row[3] == "-" else f"{row[3]} $\\pm$ {row[4]}"
        ref, diff = ("--" if v == "-" else v for v in (row[5], row[6]))
        more = "".join(f" & {m} $\\pm$ {sd}" if m != "-" else " & --" for m, sd in ex)
        out.append(f"{tex(row[0])} & {tex(row[1])} & {row[2]} & {mean} & {ref} & {diff}{more} "
                   r"\\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    for r in left_out:
        out.append(f"% not averaged: {tex(r.cell)} seed {r.seed}: {r.status}")
    for r in flagged:
        out.append(f"% health: {tex(r.cell)} seed {r.seed}: {'; '.join(r.health)}")
    return "\n".join(out) + "\n"


# -- plots -------------------------------------------------------------------------------------
def _curves(runs: Sequence[RunRow], key: str) -> Dict[Tuple[str, str], List[List[Tuple]]]:
    out: Dict[Tuple[str, str], List[List[Tuple]]] = {}
    for r in runs:
        if r.status != "finished" or not (r.path / METRICS_FILE).exists():
            continue
        pts = [(row["it"], row[key]) for row in read_metrics(r.path)
               if isinstance(row.get(key), (int, float))]
        if pts:
            out.setdefault((r.setting, r.method), []).append(pts)
    return out


PLOT_KEYS = (("eval/top-1-acc", "test top-1 (%)", 100.0),
             ("train/util_ratio", "mask ratio", 1.0),
             ("train/pl_acc", "pseudo-label accuracy", 1.0))


def plot(runs: Sequence[RunRow], folder: Path) -> List[Path]:
    """Per setting and logged quantity: the methods' curves, mean ± std over seeds; for an
    ablation's runs also the metric against the swept hyper-parameter (:func:`plot_params`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key, label, scale in PLOT_KEYS:
        curves = _curves(runs, key)
        for setting in dict.fromkeys(s for s, _ in curves):
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            for (s, method), seeds in curves.items():
                if s != setting:
                    continue
                n = min(len(p) for p in seeds)
                its = [it for it, _ in seeds[0][:n]]
                vals = np.array([[v for _, v in p[:n]] for p in seeds]) * scale
                mean, std = vals.mean(0), vals.std(0)
                ax.plot(its, mean, label=f"{method} (n={len(seeds)})")
                ax.fill_between(its, mean - std, mean + std, alpha=0.2)
            ax.set_xlabel("iteration")
            ax.set_ylabel(label)
            ax.set_title(setting)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8)
            fig.tight_layout()
            name = "".join(ch if ch.isalnum() else "_" for ch in f"{setting}_{key}").strip("_")
            path = folder / f"{name}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written + plot_params(runs, folder)


PARAM_LABELS = {"eta": "η", "xi": "ξ", "t": "t"}


def plot_params(runs: Sequence[RunRow], folder: Path) -> List[Path]:
    """Ablations: per (table, hyper-parameter), the metric (mean ± std over finished seeds)
    against the value, one line per setting; the cells without the parameter (the baselines of
    the same setting) as dashed horizontal lines."""
    groups: Dict[Tuple[str, str], Dict[str, Dict[float, List[float]]]] = {}
    for r in runs:
        if r.param and r.metric is not None:
            per = groups.setdefault((r.table, r.param[0]), {}).setdefault(r.setting, {})
            per.setdefault(float(r.param[1]), []).append(r.metric)
    if not groups:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    Path(folder).mkdir(parents=True, exist_ok=True)
    written = []
    for (table, name), settings in groups.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for setting, by_value in settings.items():
            xs = sorted(by_value)
            mean = np.array([np.mean(by_value[x]) for x in xs])
            std = np.array([np.std(by_value[x]) for x in xs])
            line, = ax.plot(xs, mean, marker="o", label=setting)
            ax.fill_between(xs, mean - std, mean + std, alpha=0.2, color=line.get_color())
            for method in dict.fromkeys(b.method for b in runs if b.table == table
                                        and b.setting == setting and b.param is None):
                base = [b.metric for b in runs if b.table == table and b.setting == setting
                        and b.method == method and b.param is None and b.metric is not None]
                if base:
                    ax.axhline(float(np.mean(base)), ls="--", color=line.get_color(),
                               alpha=0.6, label=f"{setting}: {method} (n={len(base)})")
        values = [x for by_value in settings.values() for x in by_value]
        if min(values) > 0 and max(values) / min(values) > 20:  # η 0.01 … 2: a log axis
            ax.set_xscale("log")
        ax.set_xlabel(PARAM_LABELS.get(name, name))
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"{table}: accuracy against {PARAM_LABELS.get(name, name)}")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = Path(folder) / f"{table}_{name}_ablation.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written

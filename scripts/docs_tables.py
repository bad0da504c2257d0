#!/usr/bin/env python
"""Results tables in README.md and docs/*.md, rendered from stored run records.

A rendered table sits between two comment lines::

    <!-- results-table: NAME -->
    | ... the table ... |
    <!-- /results-table -->

and NAME says which records under ``docs/records/`` it is rendered from:

- ``demo``: ``docs/records/demo.json``, the ``demo.json`` that ``bash scripts/run.sh`` wrote;
- ``dm_guard`` / ``dm_options``: a ``dm_options.json`` of ``scripts/exp_dm_options.py``
  (``docs/records/dm_guard.json`` / ``dm_options.json``); ``ll_gradients``: the
  ``ll_gradients.json`` of ``scripts/exp_ll_gradients.py``;
- ``demo_parity`` / ``A1_parity``: two records of the same runs side by side (:data:`TABLES`);
- a ``dm-ssl sweep`` table (``dm_ssl.experiments.tables``): ``docs/records/NAME/``, the
  ``run.json`` + ``results.json`` of each of its runs (all ``dm-ssl report`` reads), rendered
  as ``dm-ssl report docs/records/NAME --table NAME`` prints it.

``--check`` (what ``tests/test_docs.py`` runs) lists every block whose text differs from its
rendering and exits 1; ``--write`` rewrites the blocks; ``--store NAME RUNS`` copies a sweep's
records from its runs folder (finished runs only: a table is never rendered from a part run).

    .venv/bin/python scripts/docs_tables.py --check
    .venv/bin/python scripts/docs_tables.py --write
    # after a new demo: cp runs/demo-<date>/demo.json docs/records/demo.json, then --write
    # after a sweep:    --store A1_digits runs, then --write
    # the same sweep with another setting, for a side-by-side table:
    #                   --store A1_digits runs-device --as A1_digits_device
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "records"
BLOCK = re.compile(r"(<!-- results-table: ([\w-]+) -->\n)(.*?)(<!-- /results-table -->)",
                   re.S)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(file: str) -> Dict[str, Any]:
    return json.loads((RECORDS / file).read_text())


def demo(file: str = "demo.json") -> str:
    """``bash scripts/run.sh``'s table from a copy of its ``demo.json``."""
    return _script("demo_digits").markdown_table(_record(file)["results"])


def dm_options(file: str) -> str:
    """``scripts/exp_dm_options.py``'s table from a copy of its ``dm_options.json``."""
    return _script("exp_dm_options").markdown_table(_record(file))


def ll_gradients() -> str:
    """``scripts/exp_ll_gradients.py``'s table from a copy of its ``ll_gradients.json``."""
    return _script("exp_ll_gradients").markdown_table(_record("ll_gradients.json"))


def sweep_table(name: str) -> str:
    """``dm-ssl report docs/records/NAME --table NAME``'s Markdown (the same three calls)."""
    from dm_ssl.experiments import report as rp
    from dm_ssl.experiments.tables import get_table

    table = get_table(name)
    cells, left_out = rp.aggregate(rp.load_runs([RECORDS / name]), table)
    return rp.render(cells, left_out, "md", title=table.title, metric=table.metric)


def demo_parity(a: str = "demo.json", b: str = "demo_device.json") -> str:
    """Two demo records side by side (the same runs, ``augment_on`` loader / device): final
    accuracy, mask ratio and seconds per run of each SSL method."""
    mean_std = _script("demo_digits").mean_std
    ra, rb = _record(a)["results"], _record(b)["results"]
    out = ["| method | `loader` final acc | `device` final acc | `loader` mask ratio | "
           "`device` mask ratio | s / run (loader → device) |", "|---|---|---|---|---|---|"]
    for name in ra:
        x, y = ra[name], rb[name]
        secs = [sum(r["seconds"] for r in runs) / len(runs) for runs in (x, y)]
        out.append(f"| {name} | {mean_std([r['final'] for r in x])} | "
                   f"{mean_std([r['final'] for r in y])} | {mean_std([r['mask'] for r in x], 1)}"
                   f" | {mean_std([r['mask'] for r in y], 1)} | {secs[0]:.1f} → {secs[1]:.1f} |")
    return "\n".join(out) + "\n"


def sweep_parity(name: str, a: str, b: str, labels: Tuple[str, ...]) -> str:
    """Sweep table ``name`` stored twice (``docs/records/A`` and ``B``: the same runs, one
    setting apart) side by side: per cell, each of ``labels`` (the table's metric as
    ``"top-1"`` or one of its further columns) from A then B, mean ± std over seeds."""
    from dm_ssl.experiments import report as rp
    from dm_ssl.experiments.tables import get_table

    mean_std = _script("demo_digits").mean_std
    table = get_table(name)
    sides = [rp.aggregate(rp.load_runs([RECORDS / d]), table)[0] for d in (a, b)]
    head = [f"{label} {side}" for label in labels for side in (a, b)]
    out = ["| trained with | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for ca, cb in zip(*sides):
        cells = [mean_std(c.values if label == "top-1" else c.extras[label], 1)  # already %
                 for label in labels for c in (ca, cb)]
        out.append(f"| {ca.method} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


#: block name -> (the records under docs/records/ it reads, its renderer); besides these, a
#: sweep table stored under docs/records/NAME/ renders as ``dm-ssl report`` prints it
TABLES: Dict[str, Tuple[Tuple[str, ...], Callable[[], str]]] = {
    "demo": (("demo.json",), demo),
    "demo_parity": (("demo.json", "demo_device.json"), demo_parity),
    "dm_options": (("dm_options.json",), lambda: dm_options("dm_options.json")),
    "dm_guard": (("dm_guard.json",), lambda: dm_options("dm_guard.json")),
    "ll_gradients": (("ll_gradients.json",), ll_gradients),
    "ramp_ll_colour": (("ramp_ll_colour.json",), lambda: dm_options("ramp_ll_colour.json")),
    "ramp_ll_digits": (("ramp_ll_digits.json",), lambda: dm_options("ramp_ll_digits.json")),
    "A1_parity": (("A1_digits", "A1_digits_device"),
                  lambda: sweep_parity("A1_digits", "A1_digits", "A1_digits_device",
                                       ("top-1", "Mixup top-2", "CutMix top-2"))),
}


def renderer(name: str) -> Optional[Callable[[], str]]:
    """The function that renders block ``name``; None when its records are not there."""
    if name in TABLES:
        files, render = TABLES[name]
        return render if all((RECORDS / f).exists() for f in files) else None
    if (RECORDS / name).is_dir():
        return lambda: sweep_table(name)
    return None


def store(name: str, runs: Path, as_name: Optional[str] = None) -> List[Path]:
    """Copy the records of sweep table ``name``'s runs under ``runs`` to
    docs/records/AS_NAME/ (default: NAME; replacing what was there); refuses when one of them
    is not finished."""
    from dm_ssl.experiments import report as rp
    from dm_ssl.records import RESULTS_FILE, RUN_FILE

    rows = [r for r in rp.load_runs([runs]) if r.table == name]
    if not rows:
        raise SystemExit(f"no runs of table {name} under {runs}")
    unfinished = [f"{r.path} ({r.status})" for r in rows if r.status != "finished"]
    if unfinished:
        raise SystemExit(f"not finished, not stored: {', '.join(unfinished)}")
    dest = RECORDS / (as_name or name)
    if dest.exists():
        shutil.rmtree(dest)
    copied = []
    for r in rows:
        folder = dest / r.path.name  # <cell>_s<seed>: unique within a table
        folder.mkdir(parents=True)
        for file in (RUN_FILE, RESULTS_FILE):
            shutil.copy2(r.path / file, folder / file)
        copied.append(folder)
    return copied


def doc_files() -> List[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(text: str) -> List[Tuple[str, str]]:
    """``(name, table text)`` of every results-table block in ``text``."""
    return [(m.group(2), m.group(3)) for m in BLOCK.finditer(text)]


def stale(files: Optional[List[Path]] = None) -> List[str]:
    """``file: name`` of every block in ``files`` (default: README.md and docs/*.md) that
    differs from its rendering or has no records."""
    out = []
    rendered: Dict[str, str] = {}
    for path in files or doc_files():
        for name, body in blocks(path.read_text()):
            render = renderer(name)
            if render is None:
                needed = TABLES[name][0] if name in TABLES else (name,)
                out.append(f"{path.name}: {name} (no records: "
                           + ", ".join(f"docs/records/{f}" for f in needed) + ")")
                continue
            if name not in rendered:
                rendered[name] = render()
            if body != rendered[name]:
                out.append(f"{path.name}: {name}")
    return out


def write() -> Tuple[List[Path], List[str]]:
    """Rewrite every block that has records; the files changed and the blocks left as they
    were (``file: name``, no records)."""
    changed, missing = [], []

    def render(m: re.Match, path: Path) -> str:
        fn = renderer(m.group(2))
        if fn is None:
            missing.append(f"{path.name}: {m.group(2)}")
            return m.group(0)
        return m.group(1) + fn() + m.group(4)

    for path in doc_files():
        text = path.read_text()
        new = BLOCK.sub(functools.partial(render, path=path), text)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed, missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a table is stale")
    ap.add_argument("--write", action="store_true", help="rewrite the tables")
    ap.add_argument("--store", nargs=2, metavar=("TABLE", "RUNS"),
                    help="copy sweep TABLE's run records from the folder RUNS")
    ap.add_argument("--as", dest="as_name", default=None,
                    help="with --store: the records folder's name (default: TABLE)")
    args = ap.parse_args()
    if args.store:
        for folder in store(args.store[0], Path(args.store[1]), args.as_name):
            print(f"stored {folder.relative_to(ROOT)}")
        return 0
    if args.write:
        changed, missing = write()
        for path in changed:
            print(f"rewrote {path.relative_to(ROOT)}")
        for line in missing:
            print(f"no records, left as it was: {line}", file=sys.stderr)
        return 1 if missing else 0
    bad = stale()
    for line in bad:
        print(f"stale: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

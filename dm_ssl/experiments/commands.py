"""The bodies of ``dm-ssl sweep`` and ``dm-ssl report`` (``dm_ssl.cli`` parses their
arguments and maps their errors to exit codes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict

from dm_ssl.config import ConfigError, apply_overrides

from . import report as rp
from . import sweep as sw
from .tables import TABLES, get_table


def sweep_command(args: argparse.Namespace) -> int:
    """``dm-ssl sweep``: list the tables, or plan / run / submit one table's grid (its runs
    validated first; runs made with another config refused unless ``--rerun-changed``)."""

    if args.list or not args.table:
        for name, build in TABLES.items():
            t = build()
            print(f"{name:<13} {len(t.cells):>3} cells x {len(t.seeds)} seeds  {t.title}")
        return 0
    try:
        table = get_table(args.table)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    overrides = apply_overrides({}, args.overrides)
    for key, value in (("data_dir", args.data_dir), ("device", args.device)):
        if value is not None:
            overrides[key] = value
    try:
        specs = sw.expand(table, Path(args.runs_dir), seeds=args.seeds, only=args.only,
                          overrides=overrides)
    except sw.SweepError as err:
        raise ConfigError(str(err)) from None
    changed = {s.name: (s, c) for s in specs if (c := sw.config_changes(s))}
    if changed and not args.rerun_changed:
        shown = "; ".join(f"{name} ({', '.join(c[:3])}{', …' if len(c) > 3 else ''})"
                          for name, (_, c) in list(changed.items())[:3])
        raise ConfigError(
            f"{len(changed)} run(s) under {Path(args.runs_dir) / table.name} were made with "
            f"another config than this sweep asks for: {shown}"
            f"{'; …' if len(changed) > 3 else ''}. They would be skipped or resumed and "
            "reported as if they matched: use another --runs-dir, or --rerun-changed to move "
            "them aside (kept) and start them again")
    if changed and not args.dry_run:
        for spec, _ in changed.values():
            sw.move_aside(spec, "changed")
    steps = sw.plan(specs)
    counts: Dict[str, int] = {}
    for row in steps:
        counts[row["action"]] = counts.get(row["action"], 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"table {table.name}: {len(specs)} runs ({summary})")
    if args.dry_run:
        for spec, row in zip(specs, steps):
            print(f"  {row['run']:<48} {row['status']:<12} {row['action']:<14} "
                  f"{' '.join(sw.train_command(spec, args.gpus_per_run)[1:])}")
        return 0
    if args.retry_failed:
        for spec, row in zip(specs, steps):
            if row["status"] == "failed":
                sw.move_aside(spec)
    if args.launcher == "local" and args.cluster is None:
        import signal

        def stop(signum, frame):  # SIGTERM like Ctrl-C: the runs save and stop
            raise KeyboardInterrupt
        previous = signal.signal(signal.SIGTERM, stop)
        try:
            results = sw.run_local(specs, parallel=args.parallel,
                                   gpus_per_run=args.gpus_per_run)
        except KeyboardInterrupt:
            print("dm-ssl sweep: stopped; the running runs saved their checkpoints — the same "
                  "command continues the sweep", file=sys.stderr)
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        bad = [r for r in results if r["status"] != "finished"]
        print(f"{len(results) - len(bad)} runs finished, {len(bad)} not"
              + (f": {', '.join(r['run'] for r in bad)}" if bad else ""))
        left = [row["run"] for row in steps if row["status"] == "failed"]
        if left and not args.retry_failed:
            print(f"{len(left)} failed run(s) left as they are: {', '.join(left)} "
                  "(--retry-failed starts them again)")
        return 1 if bad else 0
    jobs = sw.run_submitit(specs, Path(args.runs_dir) / table.name / ".submitit",
                           cluster=args.cluster, gpus_per_run=args.gpus_per_run,
                           cpus_per_run=args.cpus_per_run, time_min=args.time,
                           partition=args.partition, account=args.account,
                           max_parallel=args.max_parallel, mem_gb=args.mem_gb)
    print(f"submitted {len(jobs)} runs" + (f" (job {jobs[0].job_id.split('_')[0]})" if jobs
                                          else " (nothing to do)"))
    return 0


def report_command(args: argparse.Namespace) -> int:
    """``dm-ssl report``: mean ± std per table cell from the runs' records."""
    table = None
    if args.table:
        try:
            table = get_table(args.table)
        except KeyError as err:
            raise ConfigError(str(err.args[0])) from None
    runs = rp.load_runs([Path(p) for p in args.runs], metric=args.metric)
    if not runs:
        raise ConfigError(f"no runs (run.json) under {', '.join(args.runs)}")
    cells, left_out = rp.aggregate(runs, table)
    metric = args.metric or (table.metric if table else
                             "each run's table metric; best_acc for runs outside a sweep")
    flagged = [r for r in runs if r.health and r.metric is not None
               and (table is None or r.table == table.name)]
    text = rp.render(cells, left_out, args.format, title=table.title if table else "",
                     metric=metric, flagged=flagged)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    if args.plots:
        for path in rp.plot(runs, Path(args.plots)):
            print(f"plot: {path}", file=sys.stderr)
    return 0


#: third-party warnings every normal run would print, none about the user's run: timm's

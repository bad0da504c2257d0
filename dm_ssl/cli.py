"""``dm-ssl``: train and evaluate semilearn (USB) algorithms and their DM variants.

    dm-ssl train --config FILE [--data-dir DIR] [--save-dir DIR] [--device cpu|cuda]
                 [--set key=value ...]
    dm-ssl eval  --checkpoint FILE [--data-dir DIR] [--device cpu|cuda]
    dm-ssl sweep TABLE --runs-dir DIR [--seeds ...] [--only PATTERN] [--launcher local|slurm]
                 [--dry-run] [--data-dir DIR] [--device ...] [--set key=value ...]
    dm-ssl report RUNS_DIR... [--table NAME] [--format md|csv|latex] [--plots DIR]
    dm-ssl data download NAME [--data-dir DIR]
    dm-ssl doctor [--config FILE]

Only the command line lives here: arguments, dispatch, exit codes and the third-party warning
filters. Configs: :mod:`dm_ssl.config`; a run's lifecycle: :mod:`dm_ssl.run`; sweeps and
reports: :mod:`dm_ssl.experiments`. A run lives in ``<save_dir>/<save_name>/``: the resolved
``config.yaml``, the label split, checkpoints, ``log.txt``, tensorboard events and
``results.json`` (best *and* final accuracy; USB reports only the best).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from dm_ssl.config import ConfigError, command_line_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dm-ssl", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train an algorithm from a YAML config", parents=[common])
    tr.add_argument("--config", required=True)
    tr.add_argument("--data-dir")
    tr.add_argument("--save-dir")
    tr.add_argument("--device")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    tr.add_argument("--verbose", action="store_true",
                    help="semilearn's log lines on the terminal too (they are always in log.txt)")
    tr.add_argument("--download", action="store_true",
                    help="fetch the dataset into the data folder first when it is missing")
    ev = sub.add_parser("eval", help="evaluate a checkpoint written by dm-ssl train",
                        parents=[common])
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--data-dir")
    ev.add_argument("--device")
    ev.add_argument("--fgsm", type=float, metavar="EPS", help="FGSM error at ℓ∞ ε (8/255: 0.0314)")
    ev.add_argument("--occlusion", action="store_true", help="accuracy vs occluded share")
    ev.add_argument("--mixed", metavar="MIXER", help="mixed-sample top-1/top-2 with this mixer")
    sw = sub.add_parser("sweep", help="run a table's grid (dm_ssl.experiments.tables)",
                        parents=[common])
    sw.add_argument("table", help="a table name (dm-ssl sweep --list shows them)", nargs="?")
    sw.add_argument("--list", action="store_true", help="list the tables and exit")
    sw.add_argument("--runs-dir", default="runs",
                    help="runs go to RUNS_DIR/<table>/<cell>_s<seed> (default: runs)")
    sw.add_argument("--seeds", type=int, nargs="+", help="default: the table's (0 1 2 mostly)")
    sw.add_argument("--only", metavar="PATTERN", help="glob on cell id, setting or method")
    sw.add_argument("--launcher", choices=("local", "slurm"), default="local",
                    help="local: subprocesses on this machine; slurm: a submitit job array")
    sw.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    sw.add_argument("--retry-failed", action="store_true",
                    help="move failed runs aside (kept) and start them again")
    sw.add_argument("--rerun-changed", action="store_true",
                    help="runs made with another config than this sweep asks for (another "
                         "--set, a changed table): move them aside (kept) and start them again")
    sw.add_argument("--data-dir", help="sets data_dir of every run")
    sw.add_argument("--device", help="sets device of every run (cpu, cuda)")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a key in every run's config (repeatable)")
    sw.add_argument("--parallel", type=int, default=1, help="local: runs at a time")
    sw.add_argument("--gpus-per-run", type=int, default=1,
                    help="more than 1: each run is a torchrun DDP job (default: 1)")
    sw.add_argument("--cpus-per-run", type=int, default=8, help="slurm: cpus per task")
    sw.add_argument("--time", type=int, default=24 * 60, metavar="MINUTES",
                    help="slurm: time limit of each task (it requeues itself at the limit)")
    sw.add_argument("--partition", help="slurm partition")
    sw.add_argument("--account", help="slurm account")
    sw.add_argument("--mem-gb", type=int, help="slurm: memory per task")
    sw.add_argument("--max-parallel", type=int, default=64, help="slurm: array parallelism")
    sw.add_argument("--cluster", choices=("slurm", "local", "debug"),
                    help="submitit cluster (default: slurm when sbatch is there)")
    da = sub.add_parser("data", help="get datasets: dm-ssl data download NAME",
                        parents=[common])
    da_sub = da.add_subparsers(dest="data_command", required=True)
    dl = da_sub.add_parser("download", parents=[common],
                           help="fetch a dataset's official archives (checked) and extract "
                                "them into the layout dm-ssl reads")
    dl.add_argument("name", help="a dataset name (cifar10, cifar100, tinyimagenet, cub200, "
                                 "fgvc_aircraft)")
    dl.add_argument("--data-dir", default="./data",
                    help="where the dataset goes: the config's data_dir (default: ./data)")
    dr = sub.add_parser("doctor", help="versions, devices and, for a config, whether its run "
                                       "would start (dataset, weights, disk)", parents=[common])
    dr.add_argument("--config", help="a config to check (optional)")
    dr.add_argument("--data-dir")
    dr.add_argument("--save-dir")
    dr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    rp = sub.add_parser("report", help="mean ± std per table cell beside the paper's number",
                        parents=[common])
    rp.add_argument("runs", nargs="+", metavar="RUNS_DIR",
                    help="folders searched for results.json (sweeps' --runs-dir)")
    rp.add_argument("--table", help="only this table (default: every table found)")
    rp.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    rp.add_argument("--metric", help="results.json key (default: the table's, e.g. best_acc)")
    rp.add_argument("--plots", metavar="DIR", help="write accuracy / mask-ratio plots here")
    rp.add_argument("--output", metavar="FILE", help="write the table here (default: stdout)")
    return parser



#: third-party warnings every normal run would print, none about the user's run: timm's
#: deprecated import path (inside semilearn), semilearn's torch.cuda.amp.GradScaler
#: (deprecated; and "CUDA is not available" on every CPU run, where amp is off anyway)
THIRD_PARTY_WARNINGS = (
    (FutureWarning, r"Importing from timm\.models\.layers is deprecated"),
    (FutureWarning, r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated"),
    (UserWarning, r"torch\.cuda\.amp\.GradScaler is enabled, but CUDA is not available"),
)


#: third-party loggers whose INFO lines reach the terminal once semilearn has configured the
#: root logger (matplotlib's "generated new fontManager" on a machine's first plot)
THIRD_PARTY_LOGGERS = ("matplotlib",)


def quiet_third_party_warnings() -> None:
    import logging
    import warnings

    for category, message in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)



def main(argv: Optional[List[str]] = None) -> int:
    """``dm-ssl``'s entry point; returns the exit status (0 done, 1 run failed, 2 refused or
    bad input, 75 stopped by a signal after saving, 130 a sweep stopped by Ctrl-C)."""
    args = build_parser().parse_args(argv)
    quiet_third_party_warnings()
    try:
        return _dispatch(args)
    except ConfigError as err:
        if args.debug:
            raise
        print(f"dm-ssl: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # one clear line for the known failure classes
        if args.debug:
            raise
        return _report_error(err)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        from dm_ssl.run import train

        cfg, note = command_line_config(args.config, args.overrides, data_dir=args.data_dir,
                                        save_dir=args.save_dir, device=args.device,
                                        verbose=args.verbose,
                                        download=True if args.download else None)
        if note and os.environ.get("RANK", "0") == "0":
            print(f"dm-ssl: {note}", file=sys.stderr)
        train(cfg)
    elif args.command == "sweep":
        from dm_ssl.experiments.commands import sweep_command

        return sweep_command(args)
    elif args.command == "data":
        from dm_ssl.data.download import fetch_dataset
        from dm_ssl.data.registry import get_dataset

        root = fetch_dataset(get_dataset(args.name), args.data_dir)
        print(f"dm-ssl: {args.name} is in {os.path.abspath(root)} (data_dir: {args.data_dir})",
              file=sys.stderr)
    elif args.command == "doctor":
        from dm_ssl.config import validate
        from dm_ssl.run.doctor import doctor, render

        cfg = None
        if args.config:
            cfg = validate(command_line_config(args.config, args.overrides,
                                               data_dir=args.data_dir,
                                               save_dir=args.save_dir)[0])
        rows = doctor(cfg)
        print(render(rows))
        failed = [r.what for r in rows if r.status == "fail"]
        if failed:
            print(f"dm-ssl doctor: would stop the run: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    elif args.command == "report":
        from dm_ssl.experiments.commands import report_command

        return report_command(args)
    else:
        from dm_ssl.run import evaluate

        evaluate(args.checkpoint, args.data_dir, args.device, fgsm_eps=args.fgsm,
                 occlusion=args.occlusion, mixed=args.mixed)
    return 0


def _report_error(err: Exception) -> int:
    """Print ``err`` as one line and return its exit status."""
    from dm_ssl.algorithms import CheckpointError, CheckpointWriteError, NonFiniteLossError
    from dm_ssl.data import DatasetError
    from dm_ssl.run.errors import (
        EXIT_STOPPED,
        RunFailedError,
        RunIncompleteError,
        RunStopped,
        one_line,
    )

    if isinstance(err, RunStopped):
        print(f"dm-ssl: {err}", file=sys.stderr)
        return EXIT_STOPPED
    if isinstance(err, (NonFiniteLossError, RunIncompleteError, CheckpointWriteError,
                        RunFailedError)):
        print(f"dm-ssl: run failed: {err}", file=sys.stderr)
        return 1
    if isinstance(err, (CheckpointError, DatasetError, ValueError, OSError)):
        print(f"dm-ssl: error: {one_line(err)}", file=sys.stderr)
        return 2
    # anything else (an error inside semilearn or torch): still one line, and the way to the
    # traceback
    print(f"dm-ssl: error: {type(err).__name__}: {one_line(err)} (--debug shows the "
          "traceback)", file=sys.stderr)
    return 1


def run() -> None:
    """The ``dm-ssl`` command: :func:`main`, then :func:`exit_now` with its status."""
    exit_now(main())


def exit_now(code: int) -> None:
    """End the process with ``code``, without the interpreter's teardown.

    Clearing torch's, torchvision's and semilearn's modules and running their C++ static
    destructors takes ~2 s on a 2-core machine, after a command has written and closed its
    files (a sweep pays it per run). So: run the ``atexit`` handlers (logging's flush and
    close, multiprocessing's children), flush stdout and stderr, then ``os._exit``. With a
    non-daemon thread still running, the usual exit, which waits for it."""
    import atexit
    import os
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(int(code or 0))


if __name__ == "__main__":
    run()

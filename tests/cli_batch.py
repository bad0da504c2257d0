"""``dm-ssl`` commands in one interpreter, each with what a process of its own would give back:
its exit code and what it printed (file descriptors, so logging and C code too). Tests that
need real ``dm-ssl`` processes run their commands through it: each interpreter start costs
dm_ssl's imports (~5-8 s on 2 cores), a command in a running one does not.

    python tests/cli_batch.py PLAN.json

PLAN.json: ``[{"name": ..., "argv": [...]}, ...]``, run in turn. Per entry, next to PLAN.json:
``<name><tag>.json`` (``{"code": ...}``) and ``<name><tag>.out`` / ``.err``. An exception that
``dm_ssl.cli.main`` lets out is printed to the entry's stderr as Python would print it, exit
code 1: what ``python -m dm_ssl.cli`` does.
"""

import contextlib
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional


@contextlib.contextmanager
def printed_to(out: Path, err: Path):
    """The process's stdout and stderr (file descriptors: logging and C code too) into files."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(out, "w") as fo, open(err, "w") as fe:
        os.dup2(fo.fileno(), 1), os.dup2(fe.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def run_plan(plan_file: Path, tag: str = "", before: Optional[Callable[[], None]] = None,
             extra: Optional[Callable[[], Dict]] = None) -> None:
    """Every entry of ``plan_file`` in turn; ``before()`` ahead of each, ``extra()``'s items
    added to each entry's JSON (a caller's probes)."""
    from dm_ssl import cli

    for entry in json.loads(plan_file.read_text()):
        base = f"{plan_file.parent / entry['name']}{tag}"
        if before is not None:
            before()
        with printed_to(Path(base + ".out"), Path(base + ".err")):
            try:
                code = cli.main(entry["argv"])
            except SystemExit as exc:  # argparse
                code = exc.code
            except BaseException:  # noqa: BLE001  (what the interpreter would print)
                traceback.print_exc()
                code = 1
        Path(base + ".json").write_text(json.dumps({"code": code, **(extra() if extra else {})}))


def run_batch(plan_file: Path, commands: Dict[str, List[str]]) -> subprocess.CompletedProcess:
    """Write ``commands`` (name -> ``dm-ssl`` argv, run in this order) to ``plan_file`` and run
    them in one fresh interpreter; its own exit code and output (the entries': read_entry)."""
    plan_file.write_text(json.dumps([{"name": k, "argv": v} for k, v in commands.items()]))
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), str(plan_file)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                          timeout=600)


def read_entry(plan_file: Path, name: str, tag: str = "") -> Dict[str, Any]:
    """Entry ``name`` of a plan that ran: its JSON (``code`` and any probes), ``stdout`` and
    ``stderr``."""
    base = f"{plan_file.parent / name}{tag}"
    return {**json.loads(Path(base + ".json").read_text()),
            "stdout": Path(base + ".out").read_text(), "stderr": Path(base + ".err").read_text()}


def result(plan_file: Path, name: str, tag: str = "") -> subprocess.CompletedProcess:
    """Entry ``name`` of a plan that ran, as the process it stands for."""
    got = read_entry(plan_file, name, tag)
    return subprocess.CompletedProcess(name, got["code"], got["stdout"], got["stderr"])


if __name__ == "__main__":
    run_plan(Path(sys.argv[1]))
    from dm_ssl.cli import exit_now

    exit_now(0)  # as the dm-ssl command ends

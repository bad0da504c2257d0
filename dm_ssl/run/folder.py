"""The run directory ``<save_dir>/<save_name>/``: its checkpoints, a refused new run's folder
removed again, and ``results.json``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import RunFailedError, one_line
from .prepare import is_main

#: the checkpoint semilearn writes every evaluation, and ``resume`` reads
CKPT = "latest_model.pth"


def checkpoints(ckpt: Path) -> List[Path]:
    """The resume candidates, newest first: the checkpoint and the one kept before it."""
    from dm_ssl.algorithms.driver import PREVIOUS_SUFFIX

    return [ckpt, ckpt.with_name(ckpt.name + PREVIOUS_SUFFIX)]


def first_missing(path: Path) -> Optional[Path]:
    """The outermost folder of ``path`` that does not exist yet (None: it all exists)."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def remove_new_run_dir(run_dir: Path, created: Path) -> None:
    """Remove a refused new run's directory, and the folders above it that this run created
    while they are empty (another run may have started in them meanwhile)."""
    run_dir, created = run_dir.absolute(), created.absolute()
    shutil.rmtree(run_dir, ignore_errors=True)
    folder = run_dir.parent
    while folder != created.parent and created in (folder, *folder.parents):
        try:
            folder.rmdir()
        except OSError:  # not empty: someone else's
            break
        folder = folder.parent


def write_results(run_dir: Path, cfg: Dict[str, Any], info: Any, **fields: Any) -> None:
    from dm_ssl.records import RESULTS_FILE, atomic_json

    if is_main(cfg):
        atomic_json(run_dir / RESULTS_FILE, {
            "algorithm": cfg["algorithm"], "dataset": info.name, "net": cfg.get("net"),
            "num_labels": info.num_labels, "seed": cfg["seed"],
            "experiment": cfg.get("experiment") or {}, **fields})


def fail(run_dir: Path, cfg: Dict[str, Any], info: Any, alg: Any, err: Exception) -> None:
    """Record a run that failed while training or evaluating, then raise
    :class:`RunFailedError` (exit 1, one line) from ``err``."""
    reason = f"{type(err).__name__}: {one_line(err)}"
    try:  # best effort: the disk may be the problem
        write_results(run_dir, cfg, info, status="failed", reason=reason, iterations=alg.it)
    except OSError:
        pass
    if any(p.exists() for p in checkpoints(run_dir / CKPT)):
        then = ("the checkpoints are kept: fix the cause, then resume with --set resume=true")
    else:
        then = "no checkpoint was written yet: fix the cause, then run the same command again"
    raise RunFailedError(f"{one_line(err)} (at iteration {alg.it}; results.json says failed, "
                         f"{then})") from err

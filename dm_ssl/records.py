"""Run records: what a run directory is, and what it measured.

A run directory written by ``dm-ssl train`` holds, beside semilearn's checkpoints, log and
tensorboard events:

- ``config.yaml``: the resolved config (every key, defaults included);
- ``run.json``: what the run is — algorithm, dataset, net, seed, the table cell it belongs to
  (``experiment``, set by ``dm-ssl sweep``), versions (python, torch, torchvision, semilearn,
  timm, dm_ssl and its git commit), device, processes, the SHA-256 of the split / subset files,
  and one entry per start (the first and every resume, with the iteration it started from);
- ``metrics.jsonl``: one JSON object per logged iteration (every ``num_log_iter``, and every
  evaluation): ``{"it": ..., "train/sup_loss": ..., "eval/top-1-acc": ...}``. A resume cuts
  it back to the checkpoint's iteration first, so it always describes one run;
- ``results.json``: best and final accuracy and the status (``finished``, ``interrupted`` with
  the iteration reached, ``failed`` with the reason).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

RUN_FILE, METRICS_FILE, RESULTS_FILE = "run.json", "metrics.jsonl", "results.json"
#: files the data builders write into the run directory (label split, subsets, lists)
SPLIT_PATTERNS = ("split.json", "subset_*.json", "train_*.txt")
#: log keys that vary between identical runs (timers): kept in metrics.jsonl, never compared
TIMING_KEYS = ("train/prefetch_time", "train/run_time")


def atomic_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename: never a half-written record."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """A JSON object, or ``None`` when the file is absent or not JSON (a damaged record)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def git_commit(path: Optional[Path] = None) -> Optional[str]:
    """The commit of the git checkout holding ``path`` (dm_ssl's own by default), with
    ``+dirty`` when it has uncommitted changes; ``None`` outside a checkout."""
    here = Path(path or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], text=True,
                                capture_output=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-"
                                "files=no"], text=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def versions() -> Dict[str, Optional[str]]:
    """The versions a result depends on."""
    import importlib.metadata as md

    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "semilearn", "timm", "dm_ssl"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    out["dm_ssl_git"] = git_commit()
    return out


def split_hashes(run_dir: Path) -> Dict[str, str]:
    """SHA-256 of each split / subset file in the run directory."""
    out = {}
    for pattern in SPLIT_PATTERNS:
        for path in sorted(Path(run_dir).glob(pattern)):
            out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def device_info(device: Any) -> Dict[str, Any]:
    import torch

    dev = torch.device(device)
    info: Dict[str, Any] = {"device": str(dev), "host": platform.node()}
    if dev.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(dev)
        info["cuda"] = torch.version.cuda
    return info


def record_start(run_dir: Path, cfg: Dict[str, Any], device: Any, *, resumed_from: Optional[
        str] = None, start_it: int = 0, event: Optional[Dict[str, Any]] = None
                 ) -> Dict[str, Any]:
    """Write (or extend, at a resume) ``run.json``; ``event``: what this start changes
    (``changes``: key -> [old, new]; ``extension``: the run's new length), kept in its
    ``starts`` entry."""
    path = Path(run_dir) / RUN_FILE
    record = (read_json(path) if resumed_from else None) or {}
    record.update({
        "algorithm": cfg["algorithm"], "dataset": cfg["dataset"], "net": cfg.get("net"),
        "seed": cfg["seed"], "num_labels": cfg.get("num_labels"),
        "label_percent": cfg.get("label_percent"), "subset_percent": cfg.get("subset_percent"),
        "num_train_iter": cfg.get("num_train_iter"), "experiment": cfg.get("experiment") or {},
        "world_size": int(cfg.get("world_size", 1) or 1), **device_info(device),
        "versions": versions(), "split": split_hashes(run_dir),
    })
    record.setdefault("starts", []).append({
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "iteration": int(start_it), "resumed_from": resumed_from, "argv": sys.argv[1:],
        **(event or {})})
    atomic_json(path, record)
    return record


def record_health(run_dir: Path, symptom: Dict[str, Any]) -> None:
    """Add a health warning (:mod:`dm_ssl.run.health`) to ``run.json``'s ``health`` list."""
    path = Path(run_dir) / RUN_FILE
    record = read_json(path) or {}
    record.setdefault("health", []).append(
        {k: list(v) if isinstance(v, tuple) else v for k, v in symptom.items()})
    atomic_json(path, record)


# -- metrics.jsonl ---------------------------------------------------------------------------
def _number(value: Any) -> Optional[float]:
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.item() if value.numel() == 1 else None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def metrics_row(it: int, epoch: int, logs: Dict[str, Any]) -> Dict[str, Any]:
    """One metrics.jsonl row: the iteration (1-based, as logged) and the numeric logs.
    Non-finite values are written as strings (JSON has no NaN)."""
    row: Dict[str, Any] = {"it": int(it), "epoch": int(epoch)}
    for key, value in logs.items():
        number = _number(value)
        if number is not None:
            row[key] = number if math.isfinite(number) else str(number)
    return row


def append_metrics(run_dir: Path, row: Dict[str, Any]) -> None:
    with open(Path(run_dir) / METRICS_FILE, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def read_metrics(run_dir: Path) -> List[Dict[str, Any]]:
    """The rows of ``metrics.jsonl`` (a torn last line, from a killed run, is left out)."""
    return list(_rows(Path(run_dir) / METRICS_FILE))


def _rows(path: Path) -> Iterator[Dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("it"), int):
            yield row


def truncate_metrics(run_dir: Path, it: int) -> int:
    """Keep the rows up to iteration ``it`` (a resume from a checkpoint at ``it``); returns
    how many rows were dropped (those of the iterations that will run again)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    rows = list(_rows(path))
    kept = [r for r in rows if r["it"] <= it]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)
    return len(rows) - len(kept)


def metrics_hook(run_dir: Path, log_every: int, eval_every: int):
    """A semilearn hook writing :func:`metrics_row` rows (after semilearn's own logging)."""
    from semilearn.core.hooks import Hook

    class MetricsHook(Hook):
        def after_train_step(self, algorithm):
            done = algorithm.it + 1
            if done % log_every and done % eval_every and done != algorithm.num_train_iter:
                return
            append_metrics(run_dir, metrics_row(done, algorithm.epoch, algorithm.log_dict))

    return MetricsHook()

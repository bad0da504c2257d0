"""Resuming a run: the same run or a refusal.

Before anything is built (:func:`check_resume_config`): the config against the run's
``config.yaml``, key by key as the schema classifies them (:func:`dm_ssl.config.key_kind`:
an *identity* change is refused naming old → new, a *schedule* change extends the run, an
*operational* one is recorded), the split files against the SHA-256 ``run.json`` recorded,
and a finished run is reported as such. Then (:func:`resume_run`) the newest readable
checkpoint is loaded (the one before it when the latest is damaged).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

from dm_ssl.config import ConfigError, config_changes, key_kind, read_run_config, resume_keys

from .folder import checkpoints


class ResumePlan(NamedTuple):
    """What a resume accepted by :func:`check_resume_config` changes."""

    #: key -> [old, new] for the operational and schedule keys the resume changes
    changes: Dict[str, List[Any]]
    #: the run's num_train_iter as config.yaml recorded it (None: no config.yaml)
    saved_total: Optional[int]
    #: results.json of a run finished at the requested length: nothing to do
    finished: Optional[Dict[str, Any]]


def check_resume_config(cfg: Dict[str, Any], run_dir: Path) -> ResumePlan:
    """Refuse a resume that would change the run (an identity key, a split file), before
    anything is built or written; return what it changes otherwise."""
    from dm_ssl import records

    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    changes: Dict[str, List[Any]] = {}
    if saved is not None:
        identity = config_changes(saved, cfg, resume_keys(cfg))
        if identity:
            raise ConfigError(f"resume: the config would change the run in "
                              f"{'; '.join(identity)} (the run's {run_dir / 'config.yaml'}); "
                              "resume with the run's own values, or start a new run "
                              "(another save_name)")
        changes = {k: [saved[k], cfg.get(k)] for k in cfg if k in saved
                   and key_kind(k) != "identity" and k != "resume" and saved[k] != cfg.get(k)}
    recorded = (records.read_json(run_dir / records.RUN_FILE) or {}).get("split") or {}
    now = records.split_hashes(run_dir)
    for name, digest in recorded.items():
        if now.get(name) != digest:
            what = "is missing" if name not in now else "changed"
            raise ConfigError(f"resume: {run_dir / name} {what} since the run started (run.json "
                              "records its SHA-256): the run trains on the split it started "
                              "with; put that file back, or start a new run (another save_name)")
    results = records.read_json(run_dir / records.RESULTS_FILE) or {}
    finished = None
    if saved is not None and results.get("status") == "finished":  # the same run: compared
        done = int(results.get("iterations") or 0)
        if cfg["num_train_iter"] == done:
            finished = results
        elif cfg["num_train_iter"] < done:
            raise ConfigError(f"resume: num_train_iter {cfg['num_train_iter']} is below the "
                              f"{done} iterations the run finished ({run_dir / 'results.json'})")
    total = saved.get("num_train_iter") if saved is not None else None
    return ResumePlan(changes, total if isinstance(total, int) else None, finished)


def resume_run(alg: Any, ckpt: Path) -> Path:
    """Load the newest readable checkpoint of ``ckpt`` and its predecessor into ``alg``.

    A truncated or corrupt latest checkpoint (a crash or a full disk while it was written
    without dm_ssl's atomic save, a copy cut short) is reported and the previous one is used;
    a checkpoint that reads but does not fit the run is refused as it is."""
    from dm_ssl.algorithms import CorruptCheckpointError

    damaged: List[str] = []
    for path in checkpoints(ckpt):
        if not path.exists():
            continue
        try:
            alg.load_model(str(path))
        except CorruptCheckpointError as err:
            damaged.append(str(err))
            continue
        for msg in damaged:
            print(f"dm-ssl: warning: {msg}; resuming from {path} (iteration {alg.it})",
                  file=sys.stderr)
        return path
    if damaged:
        raise ConfigError("resume: no readable checkpoint: " + "; ".join(damaged))
    raise ConfigError(f"resume: no checkpoint at {ckpt}")


def remove_partial(alg: Any, ckpt: Path) -> None:
    """A save killed while writing left ``NAME.tmp``: never a checkpoint, only disk used
    (removed once the resume is accepted: a refused one changes nothing)."""
    partial = ckpt.with_name(ckpt.name + ".tmp")
    if partial.exists():
        partial.unlink()
        alg.print_fn(f"removed {partial} (a checkpoint write that did not finish)")

"""Resuming a run: the config it must share with the run's record, and the newest readable
checkpoint (the one before it when the latest is damaged)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

from dm_ssl.config import ConfigError, config_changes, read_run_config, resume_keys

from .folder import checkpoints


def resume_run(alg: Any, ckpt: Path) -> Path:
    """Load the newest readable checkpoint of ``ckpt`` and its predecessor into ``alg``.

    A truncated or corrupt latest checkpoint (a crash or a full disk while it was written
    without dm_ssl's atomic save, a copy cut short) is reported and the previous one is used;
    a checkpoint that reads but does not fit the run is refused as it is."""
    from dm_ssl.algorithms import CorruptCheckpointError

    partial = ckpt.with_name(ckpt.name + ".tmp")
    if partial.exists():  # a save killed while writing: never a checkpoint, only disk used
        partial.unlink()
        alg.print_fn(f"removed {partial} (a checkpoint write that did not finish)")
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


def check_resume_config(cfg: Dict[str, Any], run_dir: Path) -> None:
    """Refuse a resume whose config differs from the run's ``config.yaml`` in a key that
    shapes the run (:func:`dm_ssl.config.resume_keys`), naming the keys (before anything is
    built or written)."""
    saved = read_run_config(run_dir)
    diff = config_changes(saved, cfg, resume_keys(cfg)) if saved is not None else []
    if diff:
        raise ConfigError(f"resume: the config differs from the run's "
                          f"{Path(run_dir) / 'config.yaml'} in {'; '.join(diff)}; resume with "
                          "the run's own values or start a new run (another save_name)")

"""The run lifecycle: a validated config → a built algorithm → a trained, recorded run.

``prepare`` (seeds, torchrun start, datasets, logger, algorithm) → ``resume`` (config and
checkpoint checks) → ``training`` (the loop, its hooks and records) → ``folder``
(``<save_dir>/<save_name>/``, ``results.json``); ``checkpoint_eval`` evaluates a finished
run; ``errors`` holds how a run ends when it does not finish.

Importing the package is cheap: a name is imported from its module when first read (PEP 562),
so a process that needs only ``dm_ssl.run.errors`` (a sweep worker mapping an exit status)
does not import torch, torchvision and semilearn (~7 s on a 2-core machine).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are (for readers, type checkers and the API docs)
    from .checkpoint_eval import evaluate
    from .errors import (
        EXIT_STOPPED,
        STOP_SIGNALS,
        RunFailedError,
        RunIncompleteError,
        RunStopped,
        one_line,
    )
    from .folder import CKPT, checkpoints, write_results
    from .prepare import init_distributed, is_main, prepare_run, set_seed
    from .resume import check_resume_config, resume_run
    from .training import train

#: public name -> the module that defines it
_HOMES = {
    "evaluate": "checkpoint_eval",
    **dict.fromkeys(("EXIT_STOPPED", "STOP_SIGNALS", "RunFailedError", "RunIncompleteError",
                     "RunStopped", "one_line"), "errors"),
    **dict.fromkeys(("CKPT", "checkpoints", "write_results"), "folder"),
    **dict.fromkeys(("init_distributed", "is_main", "prepare_run", "set_seed"), "prepare"),
    **dict.fromkeys(("check_resume_config", "resume_run"), "resume"),
    "train": "training",
}

__all__ = [
    "CKPT", "EXIT_STOPPED", "STOP_SIGNALS", "RunFailedError", "RunIncompleteError",
    "RunStopped", "check_resume_config", "checkpoints", "evaluate", "init_distributed",
    "is_main", "one_line", "prepare_run", "resume_run", "set_seed", "train", "write_results",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # read once: later reads are plain attribute lookups
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))

"""The run lifecycle: a validated config → a built algorithm → a trained, recorded run.

``prepare`` (seeds, torchrun start, datasets, logger, algorithm) → ``resume`` (config and
checkpoint checks) → ``training`` (the loop, its hooks and records) → ``folder``
(``<save_dir>/<save_name>/``, ``results.json``); ``checkpoint_eval`` evaluates a finished
run; ``errors`` holds how a run ends when it does not finish.
"""

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

__all__ = [
    "CKPT", "EXIT_STOPPED", "STOP_SIGNALS", "RunFailedError", "RunIncompleteError",
    "RunStopped", "check_resume_config", "checkpoints", "evaluate", "init_distributed",
    "is_main", "one_line", "prepare_run", "resume_run", "set_seed", "train", "write_results",
]

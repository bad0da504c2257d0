"""A run's files written only once the run is accepted.

Building a run (datasets, model, semilearn's algorithm) logs lines and would open a
tensorboard events file; a resume is refused only after that, when its checkpoint is read
(damaged, or not this run's). Until :func:`commit`, the log lines are kept in memory
(:class:`StagedLog`) and no tensorboard writer exists: a refused command leaves the run
directory byte for byte as it was (issue #27).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List

#: marks the handlers this module put on a logger (a process may build several runs)
_MARK = "_dm_ssl_run_log"


class StagedLog(logging.Handler):
    """Keeps a logger's records until the run's ``log.txt`` may be written."""

    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def staged_logger(name: str) -> logging.Logger:
    """semilearn's logger for a run (its format, no file yet): a :class:`StagedLog` in place
    of the ``log.txt`` handler. Handlers of an earlier run of the same name in this process
    are closed and removed (their lines would go into that run's log.txt)."""
    from semilearn.core.utils import get_logger

    logger = get_logger(name)
    for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(handler)
        handler.close()
    staged = StagedLog()
    setattr(staged, _MARK, True)
    logger.addHandler(staged)
    return logger


def commit(alg: Any, run_dir: Path, tensorboard: bool, main: bool = True) -> None:
    """The run is accepted: its kept log lines go to ``run_dir/log.txt`` (appended, as
    semilearn's logger does) and what follows with them; tensorboard starts writing. The
    other processes of a torchrun launch (``main`` False) write neither."""
    logger = alg.run_logger  # set by prepare_run (semilearn keeps only logger.info)
    for staged in [h for h in logger.handlers if isinstance(h, StagedLog)]:
        if not main:
            logger.removeHandler(staged)
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "log.txt")
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s] %(message)s"))
        setattr(handler, _MARK, True)
        for record in staged.records:
            handler.handle(record)
        logger.removeHandler(staged)
        logger.addHandler(handler)
    if main and tensorboard and alg.tb_log is not None:
        from torch.utils.tensorboard import SummaryWriter

        alg.tb_log.writer = SummaryWriter(str(run_dir / "tensorboard"))
        alg.tb_log.use_tensorboard = True

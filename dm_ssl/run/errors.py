"""How a run ends when it does not finish: stopped by a signal, failed, or cut short."""

from __future__ import annotations


class RunIncompleteError(RuntimeError):
    """The training loop ended before ``num_train_iter``."""


class RunFailedError(RuntimeError):
    """An error while the run trained or evaluated (an unreadable image mid-epoch, an error
    inside semilearn or torch): ``results.json`` says failed with the reason; the checkpoints
    already written stay as they were."""


def one_line(err: BaseException) -> str:
    """The error's message on one line. An error raised in a data-loader worker reaches the
    main process as ``Caught DatasetError in DataLoader worker process 0. Original Traceback
    ...``: its last line is the worker's own message."""
    text = str(err)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        head, sep, message = last.partition(": ")
        text = message if sep and " " not in head else last
    return text


class RunStopped(RuntimeError):
    """SIGTERM / SIGUSR1 / SIGUSR2 (a Slurm preemption or time limit, ``kill``): the run saved
    its checkpoint at the end of the step and stopped; ``--set resume=true`` continues it."""

    def __init__(self, it: int, signum: int) -> None:
        import signal

        self.it, self.signal = it, signal.Signals(signum).name
        super().__init__(f"stopped by {self.signal} after iteration {it}; the checkpoint is "
                         "saved, --set resume=true continues the run exactly")


#: exit status of a run stopped by a signal after saving (EX_TEMPFAIL: try again)
EXIT_STOPPED = 75
STOP_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")

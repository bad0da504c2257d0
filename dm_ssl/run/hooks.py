"""The run's own semilearn hooks: a graceful stop on a signal, and the progress bar."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import STOP_SIGNALS, RunStopped


def stop_hook(run_dir: Path):
    """Stop at the end of the step a stop signal arrived in, after saving the checkpoint.
    Under torchrun the processes agree first (any one signalled stops all at the same step)."""
    import signal

    from semilearn.core.hooks import Hook

    class StopHook(Hook):
        def before_run(self, algorithm):
            self.signum = 0

            def handler(signum, frame):
                self.signum = signum
            self.previous = {}
            for name in STOP_SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    try:
                        self.previous[sig] = signal.signal(sig, handler)
                    except ValueError:  # not the main thread: no handlers, no graceful stop
                        pass

        def after_train_step(self, algorithm):
            signum = self.signum
            if algorithm.distributed:
                import torch
                import torch.distributed as dist

                flag = torch.tensor([signum], device=algorithm.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                signum = int(flag.item())
            if not signum:
                return
            done = algorithm.it + 1
            if getattr(algorithm, "_latest_saved_it", None) != done:
                algorithm.save_model("latest_model.pth", str(run_dir))
            raise RunStopped(done, signum)

        def after_run(self, algorithm):
            for sig, old in self.previous.items():
                signal.signal(sig, old)

    return StopHook()


def progress_hook(total: int):
    from semilearn.core.hooks import Hook
    from tqdm import tqdm

    class ProgressHook(Hook):
        def before_run(self, algorithm):
            self.bar = tqdm(total=total, initial=algorithm.it, desc=algorithm.args.save_name,
                            dynamic_ncols=True, file=sys.stderr)

        def after_train_step(self, algorithm):
            logs = algorithm.log_dict
            shown = {k.split("/")[-1]: f"{v:.3f}" for k, v in logs.items()
                     if k.endswith("_loss") or k.endswith("ratio") or k.endswith("top-1-acc")}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

        def after_run(self, algorithm):
            self.bar.close()

    return ProgressHook()

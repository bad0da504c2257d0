"""The training health monitor: a run that is not learning says so (issue #27).

At every log step (``num_log_iter``) a hook reads the step's logs and looks for the symptoms
of the runs users hit most — a DM run whose labeled loss stays high (the official
``dm_w_ll: 1`` collapsed on one of two seeds of a CIFAR-layout set at 250 labels), a mask
that lets no pseudo-label through, a DM term whose gradient drowns the labeled loss's.
Each symptom prints **one** warning line (naming it, the keys most likely behind it and the
docs section) the first time it shows, and is recorded in ``run.json`` (``health``) so that
``dm-ssl report`` flags the run. A non-finite loss already stops the run
(:class:`dm_ssl.algorithms.NonFiniteLossError`). Thresholds are config keys
(``health_*``); ``health: false`` turns the monitor off. The checks only read the logs: the
run trains exactly as without them.

The checks, with ``N`` = num_train_iter and ``w`` = ``health_window``:

* **labeled loss not falling**: at the first log step past ``w·N``, the mean of the last three
  logged ``train/sup_loss`` is above ``(1 − health_sup_drop)`` × the mean of the first three;
* **mask stuck at 0**: at that step, ``train/util_ratio`` (the host's mask) or
  ``train/mix_mask_ratio`` (DM's L_lu mask) was 0 at every log step of the window's second
  half;
* **DM gradient dominates**: ``train/dm_grad_ratio`` (‖∇ DM term‖ / ‖∇ L_sup‖ on the backbone,
  measured every ``health_grad_every`` iterations by the DM hosts) above
  ``health_grad_ratio``. ``scripts/exp_ll_gradients.py`` measured 1.3–2.6 with
  ``dm_w_ll: 1`` on the colour digits (docs/records/ll_gradients.json).
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import fmean
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

#: where the docs explain each symptom and what to change
DOCS = "docs/ssl.md#training-health"


class Symptom(NamedTuple):
    """One health warning: what shows, at which iteration, and the keys to look at."""

    name: str
    it: int
    detail: str
    keys: tuple

    def line(self) -> str:
        return (f"dm-ssl: warning: {self.name} at iteration {self.it} ({self.detail}); likely "
                f"key(s): {', '.join(self.keys)} (see {DOCS})")


def loss_not_falling(values: Sequence[float], drop: float) -> Optional[str]:
    """The detail of a labeled loss that has not fallen by ``drop`` (a share of its start)
    between its first and its last three logged values; None when it fell (or too few)."""
    if len(values) < 2:
        return None
    k = min(3, len(values) // 2)
    first, last = fmean(values[:k]), fmean(values[-k:])
    if last > (1.0 - drop) * first:
        return f"train/sup_loss {first:.3f} -> {last:.3f}, less than a {drop:.0%} drop"
    return None


def stuck_at_zero(values: Sequence[float]) -> bool:
    """Every value of the second half of ``values`` is 0 (at least two of them)."""
    half = list(values[len(values) // 2:])
    return len(half) >= 2 and all(v == 0 for v in half)


class HealthConfig(NamedTuple):
    window: float
    sup_drop: float
    grad_ratio: float

    @classmethod
    def from_config(cls, cfg: Dict[str, Any]) -> HealthConfig:
        return cls(float(cfg["health_window"]), float(cfg["health_sup_drop"]),
                   float(cfg["health_grad_ratio"]))


class HealthMonitor:
    """The checks over a run's logged values (no semilearn: testable on lists of logs)."""

    def __init__(self, cfg: HealthConfig, total: int, dm: bool,
                 seen: Sequence[str] = ()) -> None:
        self.cfg, self.total, self.dm = cfg, int(total), dm
        self.logs: List[Dict[str, Any]] = []
        self.warned = set(seen)  # a resumed run does not repeat its warnings
        self.window_checked = False

    def observe(self, it: int, logs: Dict[str, Any]) -> List[Symptom]:
        """Add the logs of iteration ``it`` (1-based, as logged); the new symptoms."""
        self.logs.append({"it": it, **logs})
        out: List[Symptom] = []
        ratio = logs.get("train/dm_grad_ratio")
        if ratio is not None and ratio > self.cfg.grad_ratio:
            out.append(Symptom("DM gradient dominates", it,
                               f"|grad DM term| / |grad L_sup| = {ratio:.1f} on the backbone, "
                               f"above health_grad_ratio {self.cfg.grad_ratio:g}",
                               ("dm_w_ll", "dm_ramp_ll", "dm_w_lu")))
        if not self.window_checked and it >= self.cfg.window * self.total:
            self.window_checked = True
            out += self._window(it)
        new = [s for s in out if s.name not in self.warned]
        self.warned.update(s.name for s in new)
        return new

    def _window(self, it: int) -> List[Symptom]:
        out = []
        sup = [r["train/sup_loss"] for r in self.logs if "train/sup_loss" in r]
        detail = loss_not_falling(sup, self.cfg.sup_drop)
        if detail is not None:
            keys = ("lr", "dm_w_ll", "dm_ramp_ll") if self.dm else ("lr", "batch_size")
            out.append(Symptom("labeled loss not falling", it,
                               f"{detail} over the first {self.cfg.window:.0%} of the run", keys))
        for key, keys in (("train/util_ratio", ("p_cutoff", "lr")),
                          ("train/mix_mask_ratio", ("dm_p_mix_cutoff", "p_cutoff"))):
            values = [r[key] for r in self.logs if key in r]
            if stuck_at_zero(values):
                out.append(Symptom("mask ratio stuck at 0", it,
                                   f"{key} was 0 at every log step since iteration "
                                   f"{self.logs[len(self.logs) // 2]['it']}: no pseudo-label "
                                   "passes the threshold", keys))
                break
        return out


def health_hook(cfg: Dict[str, Any], run_dir: Path, main: bool):
    """The semilearn hook running :class:`HealthMonitor` at every log step; a resumed run
    starts from its ``metrics.jsonl`` and does not repeat the warnings ``run.json`` holds."""
    from semilearn.core.hooks import Hook

    from dm_ssl import records

    class HealthHook(Hook):
        def before_run(self, algorithm):
            seen = [h["name"] for h in (records.read_json(run_dir / records.RUN_FILE) or {})
                    .get("health", [])]
            dm = bool(getattr(getattr(algorithm, "dm_cfg", None), "enabled", False))
            self.monitor = HealthMonitor(HealthConfig.from_config(cfg),
                                         algorithm.num_train_iter, dm, seen)
            for row in records.read_metrics(run_dir):
                if row["it"] <= algorithm.it:
                    self.monitor.logs.append(row)
                    self.monitor.window_checked |= (
                        row["it"] >= self.monitor.cfg.window * self.monitor.total)

        def after_train_step(self, algorithm):
            if not self.every_n_iters(algorithm, algorithm.num_log_iter):
                return
            for symptom in self.monitor.observe(algorithm.it + 1, algorithm.log_dict):
                if main:
                    print(symptom.line(), file=sys.stderr)
                    records.record_health(run_dir, symptom._asdict())

    return HealthHook()

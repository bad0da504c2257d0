"""A run's schedules when it is extended (or shortened) at a resume.

Everything in a run that follows the run's length — the learning-rate schedule (USB's
``cos(7πk/16K)``, the supervised warm-up + cosine, Self-Tuning's), DM's ramps
(``dm_ramp_lu``, ``dm_ramp_ll``), learned mixers' momentum — is a function of the iteration
``k`` and the run's length ``K``. A resume at iteration ``t`` that changes ``K`` from ``a`` to
``b`` would otherwise jump: rebuilt for ``b``, the cosine at ``t`` is another value (issue #27:
lr 0.0154 at it 30 → 0.0209 at it 35 for 40 → 60 iterations). Instead the rest of the
schedule is stretched over the new rest of the run: the *schedule clock*

    φ(k) = k                                for k <= t
    φ(k) = t + (k − t) · (a − t) / (b − t)  for k > t

runs the original schedule at ``φ(k)``: continuous at ``t``, and it reaches the schedule's
end value at the new end ``b``. Several extensions compose (the latest is applied first), so
the clock of a run is its original length and its list of :class:`Extension`.
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Sequence, Tuple


class Extension(NamedTuple):
    """At iteration ``at`` the run's length changed from ``old_total`` to ``new_total``."""

    at: int
    old_total: int
    new_total: int


def check_extension(at: int, old_total: int, new_total: int) -> None:
    """A length the run can still train to from iteration ``at`` (ValueError otherwise)."""
    if new_total <= at:
        raise ValueError(f"num_train_iter {new_total} is not beyond the checkpoint's "
                         f"iteration {at}")
    if old_total < at:
        raise ValueError(f"the run's length {old_total} is below its iteration {at}")


def clock(k: float, extensions: Sequence[Extension]) -> float:
    """φ(k): iteration ``k`` of the extended run in the original schedule's iterations."""
    for ext in reversed(extensions):
        if k > ext.at:
            k = ext.at + (k - ext.at) * (ext.old_total - ext.at) / (ext.new_total - ext.at)
    return k


def stretched(fn: Callable[[float], float], extensions: Sequence[Extension]
              ) -> Callable[[float], float]:
    """``fn`` (a schedule of the original run, e.g. a LambdaLR factor) on the extended run.

    A function, not a callable object: LambdaLR's state_dict pickles the ``__dict__`` of
    callable objects, and a checkpoint would then hold the schedule's closure."""
    exts = tuple(extensions)

    def factor(k: float) -> float:
        return fn(clock(k, exts))
    return factor


def to_state(base_total: int, extensions: List[Extension]) -> dict:
    """The checkpoint's record of the clock."""
    return {"base_total": int(base_total), "extensions": [list(e) for e in extensions]}


def from_state(state: dict) -> Tuple[int, List[Extension]]:
    return int(state["base_total"]), [Extension(*map(int, e)) for e in state["extensions"]]

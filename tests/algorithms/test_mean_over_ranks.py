"""Logged numbers under DDP are the means over the ranks.

The all-gather is torch.distributed's, stood in for here by the other rank's numbers (two gloo
processes cost two interpreters with semilearn's imports); tests/test_distributed.py checks the
real thing: under torchrun every logged loss is the mean of the two processes' own."""

import pytest
import torch.distributed as dist

pytest.importorskip("semilearn")

from dm_ssl.algorithms.driver import mean_over_ranks  # noqa: E402

LOGS = {0: {"train/sup_loss": 2.0, "train/mask_ratio": 0.0, "train/only_rank0": 7.0,
            "train/flag": True},
        1: {"train/sup_loss": 3.0, "train/mask_ratio": 0.5, "note": "x", "train/flag": False}}


def _as_rank(monkeypatch, rank: int) -> None:
    """This process as rank ``rank`` of two, the other rank's numbers gathered as gloo would."""
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)

    def all_gather_object(out, obj):
        other = {k: float(v) for k, v in LOGS[1 - rank].items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        out[rank], out[1 - rank] = obj, other

    monkeypatch.setattr(dist, "all_gather_object", all_gather_object)


@pytest.mark.parametrize("rank", [0, 1])
def test_logged_losses_are_the_mean_of_the_ranks(monkeypatch, rank):
    _as_rank(monkeypatch, rank)
    out = mean_over_ranks(dict(LOGS[rank]))
    assert out["train/sup_loss"] == pytest.approx(2.5)
    assert out["train/mask_ratio"] == pytest.approx(0.25)
    assert out["train/flag"] is LOGS[rank]["train/flag"]  # not a number: this rank's
    if rank == 0:
        assert out["train/only_rank0"] == 7.0             # a key one rank lacks keeps its value
    else:
        assert out["note"] == "x"


def test_without_a_process_group_the_logs_are_unchanged():
    logs = {"train/sup_loss": 1.25, "flag": True}
    assert mean_over_ranks(logs) is logs

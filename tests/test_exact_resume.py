"""A run killed with SIGKILL at a random iteration and resumed is the run never stopped.

A ``dm-ssl train`` child process on digits (CPU, seeded, one thread) is killed; the resumed
run's per-iteration losses (``metrics.jsonl``), final weights and results equal the
uninterrupted run's bit for bit, mid-epoch included, with data-loader workers on. The
uninterrupted run and the resume are the same command run in this process (``cli.main``, one
torch thread, as the child, which is this process forked: no interpreter start at all), and
the resume still starts from nothing but the killed run's files.
"""

import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("semilearn")
pytestmark = pytest.mark.slow  # training runs, one of them killed

from dm_ssl import cli, records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASE = {"dataset": "digits", "in_channels": 1, "net": "small_cnn", "seed": 3,
        "num_train_iter": 24, "epoch": 2, "num_eval_iter": 4, "num_log_iter": 1,
        "batch_size": 4, "eval_batch_size": 64, "num_workers": 1, "progress": False}
CASES = {
    "fixmatch_dm": {"algorithm": "fixmatch_dm", "num_labels": 20, "uratio": 2,
                    "dm_w_ll": 1.0, "dm_mixer": "mixup,cutmix"},
    "fixmatch_dm_device": {"algorithm": "fixmatch_dm", "num_labels": 20, "uratio": 2,
                           "dm_mixer": "cutmix", "augment_on": "device"},
    # the supervised stream on the device (the loader's sampler is fixmatch_dm's and
    # selftuning_dm's)
    "supervised_mixup_device": {"algorithm": "supervised_mixup", "mix_mixers": "mixup,cutmix",
                                "mix_loss": "dm_ce", "subset_percent": 50,
                                "augment_on": "device"},
    "selftuning_dm": {"algorithm": "selftuning_dm", "num_labels": 20, "uratio": 1,
                      "st_queue_size": 4, "st_proj_dim": 16},
}


def _command(config: Path, save_dir: Path, *extra: str):
    return [sys.executable, "-m", "dm_ssl.cli", "train", "--config", str(config),
            "--save-dir", str(save_dir), "--device", "cpu", *extra]


def _main(cmd) -> None:
    """``cmd`` (a ``dm-ssl train`` command line) in this process."""
    assert cli.main(cmd[3:]) == 0


def _kill_at(cmd, run_dir: Path, it: int, err: Path) -> int:
    """Run ``cmd`` in a child process, SIGKILL it once metrics.jsonl has reached iteration
    ``it``. The child is this process forked (a process of its own, with dm_ssl already
    imported: no ~10 s interpreter start); its stderr goes to ``err``, and it never returns
    into pytest."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
            code = cli.main(cmd[3:])
        except BaseException:  # noqa: BLE001  (printed for the parent's message)
            traceback.print_exc()
        finally:
            os._exit(code)
    deadline = time.time() + 600
    ended = None  # the child's wait status once reaped
    try:
        while time.time() < deadline:
            rows = records.read_metrics(run_dir)
            if rows and rows[-1]["it"] >= it:
                break
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                ended = status
                pytest.fail(f"run ended before iteration {it}: {err.read_text()[-3000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("timed out waiting for the run")
    finally:
        if ended is None:  # killed here, on success and on a timeout alike
            os.kill(pid, signal.SIGKILL)
            _, ended = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(ended) and os.WTERMSIG(ended) == signal.SIGKILL
    return records.read_metrics(run_dir)[-1]["it"]


def _losses(run_dir: Path):
    return [{k: v for k, v in row.items() if k not in records.TIMING_KEYS}
            for row in records.read_metrics(run_dir)]


def _weights(run_dir: Path):
    ckpt = torch.load(run_dir / "latest_model.pth", map_location="cpu", weights_only=False)
    return ckpt["model"], ckpt["ema_model"], ckpt["optimizer"]["state"]


@pytest.mark.parametrize("name", list(CASES))
def test_sigkill_at_a_random_iteration_then_resume_is_bit_identical(tmp_path, name,
                                                                    torch_threads):
    torch_threads(1)  # all three runs, the forked child's included
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**BASE, **CASES[name]}))
    _main(_command(config, tmp_path / "straight"))
    straight = next((tmp_path / "straight").iterdir())

    rng = random.Random(os.environ.get("DM_SSL_TEST_SEED", name))
    kill_it = rng.randint(6, 21)  # past the first checkpoint (4), mid-epoch or not
    killed_dir = tmp_path / "killed"
    reached = _kill_at(_command(config, killed_dir), killed_dir / straight.name, kill_it,
                       tmp_path / "killed.err")
    run = killed_dir / straight.name
    assert reached < BASE["num_train_iter"]
    _main(_command(config, killed_dir, "--set", "resume=true"))

    assert _losses(run) == _losses(straight)              # every iteration, bit for bit
    for a, b in zip(_weights(run), _weights(straight)):
        assert a.keys() == b.keys()
        for key in a:
            va, vb = a[key], b[key]
            if isinstance(va, dict):
                assert all(torch.equal(va[k], vb[k]) for k in va if torch.is_tensor(va[k]))
            else:
                assert torch.equal(va, vb), key
    got, want = (records.read_json(d / "results.json") for d in (run, straight))
    assert got == want and got["status"] == "finished"
    starts = records.read_json(run / "run.json")["starts"]
    assert len(starts) == 2 and 0 < starts[1]["iteration"] <= reached
    assert starts[1]["resumed_from"].endswith("latest_model.pth")

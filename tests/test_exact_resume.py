"""A run killed with SIGKILL at a random iteration and resumed is the run never stopped.

A real ``dm-ssl train`` subprocess on digits (CPU, seeded, one thread) is killed; the resumed
run's per-iteration losses (``metrics.jsonl``), final weights and results equal the
uninterrupted run's bit for bit, mid-epoch included, with data-loader workers on. The
uninterrupted run and the resume are the same command run in this process (``cli.main``, one
torch thread as the subprocess): two interpreter starts fewer per case, and the resume still
starts from nothing but the killed run's files.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("semilearn")
pytestmark = pytest.mark.slow  # subprocess training runs

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


def _env():
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _main(cmd) -> None:
    """``cmd`` (a ``dm-ssl train`` command line) in this process."""
    assert cli.main(cmd[3:]) == 0


def _kill_at(cmd, run_dir: Path, it: int) -> int:
    """Start ``cmd``, SIGKILL it once metrics.jsonl has reached iteration ``it``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env())
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            rows = records.read_metrics(run_dir)
            if rows and rows[-1]["it"] >= it:
                proc.send_signal(signal.SIGKILL)
                break
            if proc.poll() is not None:
                pytest.fail(f"run ended before iteration {it}: {proc.stderr.read()[-3000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("timed out waiting for the run")
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
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
    torch_threads(1)  # the in-process runs count as the killed subprocess (OMP_NUM_THREADS=1)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**BASE, **CASES[name]}))
    _main(_command(config, tmp_path / "straight"))
    straight = next((tmp_path / "straight").iterdir())

    rng = random.Random(os.environ.get("DM_SSL_TEST_SEED", name))
    kill_it = rng.randint(6, 21)  # past the first checkpoint (4), mid-epoch or not
    killed_dir = tmp_path / "killed"
    reached = _kill_at(_command(config, killed_dir), killed_dir / straight.name, kill_it)
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

"""Two-process DDP training through torchrun on CPU (gloo), from the CLI.

Every run here goes through one torchrun launch (tests/ddp_probe.py runs them in turn in both
processes): a launch costs each process an interpreter and dm_ssl's imports, ~20 s of the
suite per launch on 2 cores. The launch is made once per test session, by whichever pytest
worker asks first (a file lock), and each test reads its runs' folders and output."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

pytest.importorskip("semilearn")
pytestmark = [pytest.mark.slow,  # subprocess training runs
              pytest.mark.skipif(shutil.which("torchrun") is None and not (
                  Path(sys.executable).parent / "torchrun").exists(),
                  reason="torchrun not installed")]

ROOT = Path(__file__).resolve().parents[1]
DIGITS = {"dataset": "digits", "net": "small_cnn", "in_channels": 1, "epoch": 1,
          "eval_batch_size": 64, "num_workers": 0, "seed": 0, "progress": False,
          "device": "cpu"}
SSL = {**DIGITS, "num_labels": 20, "num_train_iter": 4, "num_eval_iter": 2, "batch_size": 8,
       "uratio": 2}
TWO_PROCESSES = {  # test id -> (algorithm, extra keys)
    "fixmatch_dm": ("fixmatch_dm", {}),
    "selftuning_dm": ("selftuning_dm", {"st_queue_size": 2, "st_proj_dim": 8}),  # queues gathered
    "samix": ("fixmatch_dm", {"dm_mixer": "samix", "dm_w_ll": 1.0}),  # a Mix Block in the SSL term
    "device": ("fixmatch_dm", {"augment_on": "device"}),  # each process augments its shard
}
PROBES = {
    "fixmatch_dm": {"algorithm": "fixmatch_dm", "dm_w_ll": 1.0},
    "supervised_mixup": {"algorithm": "supervised_mixup", "mix_mixers": "mixup",
                         "mix_loss": "dm_ce", "mix_eta": 1.0},
}


def _configs(root: Path) -> Dict[str, Dict[str, Any]]:
    """Every run of this module: name -> config."""
    runs = {f"two_{k}": {**SSL, **extra, "algorithm": alg}
            for k, (alg, extra) in TWO_PROCESSES.items()}
    runs["puzzlemix"] = {
        **DIGITS, "algorithm": "supervised_mixup", "dataset": "cifar10", "in_channels": 3,
        "mix_mixers": "puzzlemix,mixup", "mix_switch_prob": 0.0, "mix_loss": "dm_ce",
        "mix_eta": 1.0, "repeated_aug": 3, "optim": "lamb", "lr": 0.01,
        "num_train_iter": 4, "epoch": 2, "num_eval_iter": 2, "batch_size": 8,
        "eval_batch_size": 16, "data_dir": str(root / "cifar")}
    runs["automix"] = {
        **DIGITS, "algorithm": "supervised_mixup", "num_labels": 40, "mix_mixers": "automix",
        "mix_loss": "dm_ce", "mix_eta": 1.0, "mix_clean_weight": 1.0, "num_train_iter": 4,
        "num_eval_iter": 2, "batch_size": 8}
    for k, extra in PROBES.items():
        runs[f"probe_{k}"] = {**DIGITS, "uratio": 2, **extra, "num_labels": 40,
                              "num_train_iter": 3, "num_eval_iter": 3, "num_log_iter": 1,
                              "batch_size": 8}
    # last: a refusal before the run starts
    runs["sync_bn"] = {**SSL, "algorithm": "fixmatch_dm", "num_train_iter": 2, "sync_bn": True}
    return runs


@pytest.fixture(scope="session")
def ddp(once):
    """The launch's folder: ``<name>/runs`` (each run's save_dir) and ``<name>.rank<r>.*``."""
    return once("ddp", _launch)


def _launch(root: Path) -> None:
    from .data.cifar_files import write_cifar10

    write_cifar10(root / "cifar", per_batch=8)
    plan = []
    for name, cfg in _configs(root).items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        plan.append({"name": name, "argv": ["train", "--config", str(root / f"{name}.yaml"),
                                            "--save-dir", str(root / name / "runs")]})
    (root / "plan.json").write_text(json.dumps(plan))
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(ROOT / "tests" / "ddp_probe.py"),
         str(root / "plan.json")], capture_output=True, text=True, cwd=ROOT, timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])


def result(root: Path, name: str, rank: int = 0) -> Dict[str, Any]:
    """A run's exit code, probes and printed output in process ``rank``."""
    from .cli_batch import read_entry

    return read_entry(root / "plan.json", name, f".rank{rank}")


def trained(root: Path, name: str, run: str) -> Path:
    """The run folder of a run both processes finished (exit 0)."""
    for rank in (0, 1):
        res = result(root, name, rank)
        assert res["code"] == 0, res["stderr"][-3000:]
    return root / name / "runs" / run


def evaluate(capsys, *argv: str) -> subprocess.CompletedProcess:
    """``dm-ssl eval ARGV...`` in this process (the same code as the command, no start-up)."""
    from dm_ssl import cli

    capsys.readouterr()
    code = cli.main(["eval", *argv])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


@pytest.mark.parametrize("case", list(TWO_PROCESSES))
def test_torchrun_two_processes_cpu(ddp, capsys, case):
    alg = TWO_PROCESSES[case][0]
    run = trained(ddp, f"two_{case}", f"{alg}_digits")
    results = json.loads((run / "results.json").read_text())
    assert results["final_it"] == 4
    assert yaml.safe_load((run / "config.yaml").read_text())["batch_size"] == 8  # global
    assert not list(run.glob("*.tmp"))
    # the DDP checkpoint evaluates on a single process (this one)
    ev = evaluate(capsys, "--checkpoint", str(run / "latest_model.pth"), "--device", "cpu")
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads(ev.stdout.strip().splitlines()[-1])["iteration"] == 4


def test_torchrun_supervised_puzzlemix_with_repeated_augmentation(ddp):
    """PuzzleMix's extra saliency pass (an input-only backward) next to DDP training, and
    timm's RepeatAugSampler splitting the copies over the processes."""
    run = trained(ddp, "puzzlemix", "supervised_mixup_cifar10")
    assert json.loads((run / "results.json").read_text())["final_it"] == 4


def test_torchrun_learned_mixer_then_mixed_eval(ddp, capsys):
    """AutoMix's Mix Block and momentum encoder inside the DDP model (the Mix Block's loss
    does not pass through DDP's forward), then `dm-ssl eval --mixed automix` with the trained
    Mix Block on one process; a learned mixer the run did not train is refused."""
    run = trained(ddp, "automix", "supervised_mixup_digits")
    assert json.loads((run / "results.json").read_text())["final_it"] == 4
    for mixer, ok in (("automix", True), ("samix", False)):
        ev = evaluate(capsys, "--checkpoint", str(run / "latest_model.pth"), "--device", "cpu",
                      "--mixed", mixer)
        if ok:
            assert ev.returncode == 0, ev.stderr[-3000:]
            out = json.loads(ev.stdout.strip().splitlines()[-1])
            assert all(0 <= out["mixed_automix"][k] <= 1 for k in ("top1", "top2"))
        else:
            assert ev.returncode != 0 and "Traceback" not in ev.stderr
            assert "samix" in ev.stderr and "did not train" in ev.stderr


@pytest.mark.parametrize("alg", list(PROBES))
def test_ranks_draw_their_own_randomness_and_log_the_mean(ddp, alg):
    """Each process mixes with its own ratios, augments with its own per-sample seeds and
    seeds its steps apart (the model and split stay shared), and what is logged is the mean
    of the processes' values (tests/ddp_probe.py records both sides)."""
    run = trained(ddp, f"probe_{alg}", f"{alg}_digits")
    r0, r1 = (result(ddp, f"probe_{alg}", rank) for rank in (0, 1))
    # mixing: both ranks mixed, with different ratios
    assert r0["lam"] and len(r0["lam"]) == len(r1["lam"])
    assert all(a != b for a, b in zip(r0["lam"], r1["lam"]))
    # augmentation: every sample of a rank has its own seed, no seed shared between ranks
    assert r0["sample_seeds"] and not set(r0["sample_seeds"]) & set(r1["sample_seeds"])
    # per-step global RNG seeds differ between the ranks at every step
    assert len(r0["step_seeds"]) == 3
    assert all(a != b for a, b in zip(r0["step_seeds"], r1["step_seeds"]))
    # logs: the logged value is the mean of the ranks' local values, and it is what is written
    assert len(r0["logs"]) == len(r1["logs"]) == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [k for k in r0["logs"][0]["local"] if k.endswith("_loss")]
    assert "train/sup_loss" in losses
    for step, (a, b) in enumerate(zip(r0["logs"], r1["logs"])):
        for key in losses:
            mean = (a["local"][key] + b["local"][key]) / 2
            assert a["logged"][key] == pytest.approx(mean, rel=1e-6)
            assert b["logged"][key] == pytest.approx(mean, rel=1e-6)
            row = next(r for r in rows if r["it"] == step + 1)
            assert row[key] == pytest.approx(mean, rel=1e-6)
    assert any(a["local"]["train/sup_loss"] != b["local"]["train/sup_loss"]
               for a, b in zip(r0["logs"], r1["logs"]))   # the shards do differ


def test_sync_bn_on_cpu_processes_is_refused_before_the_run_starts(ddp):
    """torch's SyncBatchNorm is CUDA-only: on CPU processes the key is named in one line and
    no run directory is made."""
    r0, r1 = (result(ddp, "sync_bn", rank) for rank in (0, 1))
    assert r0["code"] != 0 and r1["code"] != 0
    assert "Traceback" not in r0["stderr"] + r1["stderr"]
    assert "dm-ssl: error: config key 'sync_bn'" in r0["stderr"] and "CUDA" in r0["stderr"]
    assert not (ddp / "sync_bn" / "runs").exists()

"""Two-process DDP training through torchrun on CPU (gloo), from the CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("semilearn")
pytestmark = pytest.mark.slow  # subprocess training runs

ROOT = Path(__file__).resolve().parents[1]


def train_two_processes(cfg: Path, save_dir: Path) -> None:
    """``dm-ssl train`` under torchrun with two CPU processes (gloo)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "dm_ssl.cli", "train",
         "--config", str(cfg), "--save-dir", str(save_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])


def evaluate(capsys, *argv: str) -> subprocess.CompletedProcess:
    """``dm-ssl eval ARGV...`` in this process (the same code as the command, no start-up)."""
    from dm_ssl import cli

    capsys.readouterr()
    code = cli.main(["eval", *argv])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent /
                    "torchrun").exists(), reason="torchrun not installed")
@pytest.mark.parametrize("alg,extra", [
    ("fixmatch_dm", {}),
    ("selftuning_dm", {"st_queue_size": 2, "st_proj_dim": 8}),   # queues all-gathered
    ("fixmatch_dm", {"dm_mixer": "samix", "dm_w_ll": 1.0}),  # a Mix Block in the SSL term
    ("fixmatch_dm", {"augment_on": "device"}),  # each process augments its shard on its device
])
def test_torchrun_two_processes_cpu(tmp_path, capsys, alg, extra):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({
        **extra, "algorithm": alg, "dataset": "digits", "num_labels": 20, "net": "small_cnn",
        "in_channels": 1, "num_train_iter": 4, "epoch": 1, "num_eval_iter": 2,
        "batch_size": 8, "uratio": 2, "eval_batch_size": 64, "num_workers": 0, "seed": 0,
        "progress": False, "device": "cpu"}))
    train_two_processes(cfg, tmp_path / "runs")
    run = tmp_path / "runs" / f"{alg}_digits"
    results = json.loads((run / "results.json").read_text())
    assert results["final_it"] == 4
    assert yaml.safe_load((run / "config.yaml").read_text())["batch_size"] == 8  # global
    assert not list(run.glob("*.tmp"))
    # the DDP checkpoint evaluates on a single process (this one)
    ev = evaluate(capsys, "--checkpoint", str(run / "latest_model.pth"), "--device", "cpu")
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert json.loads(ev.stdout.strip().splitlines()[-1])["iteration"] == 4


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent /
                    "torchrun").exists(), reason="torchrun not installed")
def test_torchrun_supervised_puzzlemix_with_repeated_augmentation(tmp_path):
    """PuzzleMix's extra saliency pass (an input-only backward) next to DDP training, and
    timm's RepeatAugSampler splitting the copies over the processes."""
    from .data.cifar_files import write_cifar10

    write_cifar10(tmp_path / "data", per_batch=8)
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({
        "algorithm": "supervised_mixup", "dataset": "cifar10", "net": "small_cnn",
        "mix_mixers": "puzzlemix,mixup", "mix_switch_prob": 0.0, "mix_loss": "dm_ce",
        "mix_eta": 1.0, "repeated_aug": 3, "optim": "lamb", "lr": 0.01,
        "num_train_iter": 4, "epoch": 2, "num_eval_iter": 2, "batch_size": 8,
        "eval_batch_size": 16, "num_workers": 0, "seed": 0, "progress": False,
        "device": "cpu", "data_dir": str(tmp_path / "data")}))
    train_two_processes(cfg, tmp_path / "runs")
    results = json.loads((tmp_path / "runs" / "supervised_mixup_cifar10" /
                          "results.json").read_text())
    assert results["final_it"] == 4


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent /
                    "torchrun").exists(), reason="torchrun not installed")
def test_torchrun_learned_mixer_then_mixed_eval(tmp_path, capsys):
    """AutoMix's Mix Block and momentum encoder inside the DDP model (the Mix Block's loss
    does not pass through DDP's forward), then `dm-ssl eval --mixed automix` with the trained
    Mix Block on one process; a learned mixer the run did not train is refused."""
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({
        "algorithm": "supervised_mixup", "dataset": "digits", "num_labels": 40,
        "net": "small_cnn", "in_channels": 1, "mix_mixers": "automix", "mix_loss": "dm_ce",
        "mix_eta": 1.0, "mix_clean_weight": 1.0, "num_train_iter": 4, "epoch": 1,
        "num_eval_iter": 2, "batch_size": 8, "eval_batch_size": 64, "num_workers": 0,
        "seed": 0, "progress": False, "device": "cpu"}))
    train_two_processes(cfg, tmp_path / "runs")
    run = tmp_path / "runs" / "supervised_mixup_digits"
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


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent /
                    "torchrun").exists(), reason="torchrun not installed")
@pytest.mark.parametrize("alg,extra", [
    ("fixmatch_dm", {"dm_w_ll": 1.0}),
    ("supervised_mixup", {"mix_mixers": "mixup", "mix_loss": "dm_ce", "mix_eta": 1.0}),
])
def test_ranks_draw_their_own_randomness_and_log_the_mean(tmp_path, alg, extra):
    """Each process mixes with its own ratios, augments with its own per-sample seeds and
    seeds its steps apart (the model and split stay shared), and what is logged is the mean
    of the processes' values (tests/ddp_probe.py records both sides)."""
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({
        **extra, "algorithm": alg, "dataset": "digits", "num_labels": 40, "net": "small_cnn",
        "in_channels": 1, "num_train_iter": 3, "epoch": 1, "num_eval_iter": 3,
        "num_log_iter": 1, "batch_size": 8, "uratio": 2, "eval_batch_size": 64,
        "num_workers": 0, "seed": 0, "progress": False, "device": "cpu"}))
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROBE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(ROOT / "tests" / "ddp_probe.py"),
         "--config", str(cfg), "--save-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
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
    run = tmp_path / "runs" / f"{alg}_digits"
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


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent /
                    "torchrun").exists(), reason="torchrun not installed")
def test_sync_bn_on_cpu_processes_is_refused_before_the_run_starts(tmp_path):
    """torch's SyncBatchNorm is CUDA-only: on CPU processes the key is named in one line and
    no run directory is made."""
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({
        "algorithm": "fixmatch_dm", "dataset": "digits", "num_labels": 20, "net": "small_cnn",
        "in_channels": 1, "num_train_iter": 2, "epoch": 1, "batch_size": 8, "uratio": 2,
        "num_workers": 0, "progress": False, "device": "cpu", "sync_bn": True}))
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "dm_ssl.cli", "train",
         "--config", str(cfg), "--save-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert "dm-ssl: error: config key 'sync_bn'" in proc.stderr and "CUDA" in proc.stderr
    assert "[rank0]: Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()

"""The offline demo runs end to end (tiny settings) and writes its table and plot; the other
experiment and benchmark scripts run (their ``main()`` in this process: the same code without
an interpreter start each)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("semilearn")
pytest.importorskip("matplotlib")
pytestmark = pytest.mark.slow  # each test starts a script: a training run or a benchmark

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *argv: str, monkeypatch, capsys) -> subprocess.CompletedProcess:
    """``python scripts/NAME.py ARGV...``, in this process: its stdout and exit code."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as python puts a script's folder
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    try:
        module.main()
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


def test_demo_smoke(tmp_path, monkeypatch, capsys):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo_digits.py"), "--seeds", "0",
         "--iters", "4", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("supervised only", "FixMatch", "FixMatch + mixup (MCE)", "FixMatch + DM(CE)"):
        assert name in proc.stdout
    assert "±" in proc.stdout
    # quiet: one line per finished run plus the table; semilearn's lines are in each log.txt
    assert "INFO" not in proc.stdout + proc.stderr and "Warning" not in proc.stderr
    assert proc.stderr == ""
    assert len(proc.stdout.strip().splitlines()) == 4 + 9  # 4 runs; the table and its paths
    assert "INFO" in (out / "fixmatch__dmce_s0" / "log.txt").read_text()
    assert (out / "demo_accuracy.png").stat().st_size > 0
    assert (out / "demo.json").exists()
    # a second run into the same folder is refused: earlier results are never overwritten
    # (in this process: the quiet terminal above needed a process of its own, this does not)
    again = run_script("demo_digits", "--out", str(out), monkeypatch=monkeypatch, capsys=capsys)
    assert again.returncode != 0 and "not empty" in again.stderr


def test_mixed_accuracy_experiment_smoke(tmp_path, monkeypatch, capsys):
    import json

    out = tmp_path / "mixed"
    proc = run_script("exp_mixed_accuracy", "--seeds", "0", "--iters", "4", "--out", str(out),
                      monkeypatch=monkeypatch, capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "mixed_accuracy.json").read_text())
    assert set(results) == {"no mixing", "mixup MCE", "mixup DM(CE) η=0.1", "mixup DM(CE) η=1",
                            "cutmix MCE", "cutmix DM(CE) η=0.1", "cutmix DM(CE) η=1"}
    for runs in results.values():
        r = runs[0]
        for m in ("mixup", "cutmix"):       # top-2 (both classes) can never beat top-1
            assert 0 <= r[m]["top2"] <= r[m]["top1"] <= 100
    assert "| mixup DM(CE) η=1 |" in proc.stdout


def test_bench_mixers_smoke(monkeypatch, capsys, torch_threads):
    from dm_ssl.mixers import MIXERS

    # (torch_threads: the script sets --threads as if the process were its own)
    proc = run_script("bench_mixers", "--batch", "4", "--size", "16", "--net", "small_cnn",
                      "--classes", "5", "--repeats", "1", "--threads", "1", "--steps", "samix",
                      monkeypatch=monkeypatch, capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert set(MIXERS) <= lines and "fwd+bwd" in lines
    steps = proc.stdout.split("one training step", 1)[1].split("\n\n")[0].splitlines()
    # a process per mixer (an interpreter start each): the reference and one learned mixer
    assert [line.split()[0] for line in steps[2:]] == ["mixup", "samix"]


def test_dm_options_experiment_smoke(tmp_path, monkeypatch, capsys):
    import json

    out = tmp_path / "opts"
    proc = run_script("exp_dm_options", "--seeds", "0", "--iters", "4", "--only", "FixMatch",
                      "all official", "--out", str(out), "--colour", str(tmp_path / "colour"),
                      "--img-size", "16", "--num-labels", "20", monkeypatch=monkeypatch,
                      capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "colour" / "cifar-10-batches-py" / "test_batch").exists()
    record = json.loads((out / "dm_options.json").read_text())
    results = record["results"]
    assert set(results) == {"FixMatch", "DM(CE), all official values",
                            "DM(CE), all official values, dm_ramp_ll=cosine"}
    assert record["meta"]["iters"] == 4 and record["meta"]["torch_threads"] >= 1
    assert results["FixMatch"][0]["mix_mask"] is None
    assert results["DM(CE), all official values"][0]["mix_mask"] is not None
    assert "| DM(CE), all official values |" in proc.stdout
    assert "colour digits at 16 px, 20 labels" in proc.stdout


def test_ll_gradients_experiment_smoke(tmp_path, monkeypatch, capsys):
    proc = run_script("exp_ll_gradients", "--colour", str(tmp_path / "colour"), "--iters", "3",
                      "--every", "2", "--num-labels", "20", "--out", str(tmp_path / "out"),
                      monkeypatch=monkeypatch, capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line[:4].strip().isdigit()]
    assert [r[0] for r in rows] == ["0", "2"] and all(len(r) == 6 for r in rows)
    assert all(float(r[3]) > 0 and float(r[4]) > 0 and -1 <= float(r[5]) <= 1 for r in rows)
    assert "final test accuracy" in proc.stdout
    import json

    record = json.loads((tmp_path / "out" / "ll_gradients.json").read_text())
    assert [s["step"] for s in record["steps"]] == [0, 2] and 0 <= record["final"] <= 1


def test_mixed_accuracy_learned_set_smoke(tmp_path, monkeypatch, capsys):
    import json

    out = tmp_path / "learned"
    proc = run_script("exp_mixed_accuracy", "--seeds", "0", "--iters", "3", "--set", "learned",
                      "--out", str(out), monkeypatch=monkeypatch, capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "mixed_accuracy.json").read_text())
    assert {"automix MCE", "samix DM(CE) η=1", "mixup MCE"} <= set(results)
    for runs in results.values():
        assert 0 <= runs[0]["own"]["top2"] <= runs[0]["own"]["top1"] <= 100
    assert "own top-1" in proc.stdout


def test_bench_augment_smoke(monkeypatch, capsys):
    proc = run_script("bench_augment", "--batch", "16", "--repeats", "1", "--workers", "1",
                      monkeypatch=monkeypatch, capsys=capsys)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if "img/s" in line]
    assert len(rows) == 9 + 2 * int("batched CUDA" in proc.stdout)
    assert all(float(r.split("img/s")[0].split()[-1]) > 0 for r in rows)
    assert "host syncs 0 / 0" in proc.stdout

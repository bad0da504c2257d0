"""dm-ssl sweep / report end to end on the digits smoke table (real subprocesses, CPU)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("semilearn")

from dm_ssl import cli, records  # noqa: E402
from dm_ssl.config import ConfigError, validate  # noqa: E402
from dm_ssl.experiments import report, sweep  # noqa: E402
from dm_ssl.experiments.tables import TABLES, get_table  # noqa: E402
from dm_ssl.run import evaluate  # noqa: E402

LONG = ["--set", "num_train_iter=80", "--set", "num_eval_iter=50", "--set", "num_log_iter=5"]


def _env():
    return {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}


def _wait(pred, what, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_every_table_expands_and_validates(tmp_path):
    for name in TABLES:
        table = get_table(name)
        specs = sweep.expand(table, tmp_path, seeds=[0])
        assert len(specs) == len(table.cells)
        assert len({s.run_dir for s in specs}) == len(specs)
    a8 = get_table("a8")
    refs = {(c.setting, c.method): c.reference for c in a8.cells}
    assert refs[("CIFAR-100 R-18 Mixup 15%", "DM(CE)")] == 44.39     # spec §9
    assert refs[("CIFAR-100 R-18 vanilla 50%", "vanilla")] == 64.32
    spec = sweep.expand(a8, tmp_path, only="*vanilla*", seeds=[2])[0]
    assert spec.config["mix_prob"] == 0.0 and spec.config["seed"] == 2
    assert spec.config["experiment"] == {"table": "A8", "cell": spec.cell, "setting":
                                         "CIFAR-100 R-18 vanilla 15%", "method": "vanilla",
                                         "reference": 42.48, "metric": "best_acc"}
    with pytest.raises(sweep.SweepError, match="cell fixmatch: .*'lr'"):
        sweep.expand(get_table("digits_smoke"), tmp_path, overrides={"lr": "fast"})
    with pytest.raises(KeyError, match="known tables"):
        get_table("A99")


def test_lock_refuses_a_live_owner_and_takes_over_a_stale_one(tmp_path):
    run = tmp_path / "run"
    sweep.acquire(run)
    assert sweep.run_status(run) == "running"
    with pytest.raises(sweep.SweepError, match="not starting it twice"):
        sweep.acquire(run)
    sweep.release(run)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (run / sweep.LOCK_FILE).write_text(json.dumps({"host": os.uname().nodename,
                                                    "pid": int(dead), "job": None}))
    assert sweep.run_status(run) == "new"
    sweep.acquire(run)                                      # stale: taken over
    sweep.release(run)
    assert not (run / sweep.LOCK_FILE).exists()


def _main_sweep(capsys, runs, *args):
    """``dm-ssl sweep`` in this process (its runs are still subprocesses)."""
    capsys.readouterr()
    code = cli.main(["sweep", "digits_smoke", "--runs-dir", str(runs), "--device", "cpu", *args])
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_sweep_interrupted_then_rerun_finishes_only_what_is_missing(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "dm_ssl.cli", "sweep", "digits_smoke",
                             "--runs-dir", str(runs), "--device", "cpu", "--seeds", "0", *LONG],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    table = runs / "digits_smoke"
    first, second = table / "fixmatch_s0", table / "fixmatch_dm_s0"
    _wait(lambda: len(records.read_metrics(second)) >= 2, "the second run to start")
    proc.send_signal(signal.SIGTERM)                         # like a Ctrl-C or a scheduler
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "the same command continues" in err
    assert records.read_json(first / "results.json")["status"] == "finished"
    stopped = records.read_json(second / "results.json")
    assert stopped["status"] == "interrupted" and "SIGTERM" in stopped["reason"]
    finished_before = (first / "results.json").read_bytes()

    code, plan = _main_sweep(capsys, runs, "--seeds", "0", "--dry-run", *LONG)
    assert code == 0 and "fixmatch_s0" in plan and "1 skip, 1 resume" in plan
    code, again = _main_sweep(capsys, runs, "--seeds", "0", *LONG)
    assert code == 0, again
    assert "1 runs finished, 0 not" in again
    assert (first / "results.json").read_bytes() == finished_before   # not started twice
    assert len(records.read_json(first / "run.json")["starts"]) == 1
    starts = records.read_json(second / "run.json")["starts"]
    assert len(starts) == 2 and starts[1]["iteration"] == stopped["iterations"]
    assert records.read_json(second / "results.json")["status"] == "finished"

    # a crashed run (NaN loss) beside them: listed by the report, never averaged
    code, crash = _main_sweep(capsys, runs, "--seeds", "1", "--only", "fixmatch_dm",
                              "--set", "lr=1e30", *LONG)
    assert code == 1 and "0 runs finished, 1 not" in crash
    _, skip = _main_sweep(capsys, runs, "--seeds", "1", "--only", "fixmatch_dm",
                          "--set", "lr=1e30", "--dry-run", *LONG)
    assert "skip (failed)" in skip

    results = {p.parent.name: records.read_json(p)
               for p in table.glob("*/results.json")}
    rows = report.load_runs([runs])
    cells, left_out = report.aggregate(rows, get_table("digits_smoke"))
    by = {c.cell: c for c in cells}
    assert by["fixmatch"].n == 1 and by["fixmatch_dm"].n == 1      # the failed seed left out
    assert by["fixmatch_dm"].mean == pytest.approx(100 * results["fixmatch_dm_s0"]["final_acc"])
    assert [(r.cell, r.seed, r.status) for r in left_out] == [("fixmatch_dm", 1, "failed")]
    for fmt in ("md", "csv", "latex"):
        code = cli.main(["report", str(runs), "--table", "digits_smoke", "--format", fmt,
                         "--output", str(tmp_path / f"t.{fmt}")])
        assert code == 0
    md = (tmp_path / "t.md").read_text()
    assert "| digits smoke | FixMatch + DM(CE) | 1 |" in md
    assert "fixmatch_dm seed 1: failed at iteration" in md and "non-finite" in md
    csv = (tmp_path / "t.csv").read_text().splitlines()
    assert csv[0].startswith("table,cell,setting,method,n,mean,std,reference,diff")
    assert any(line.startswith("digits_smoke,fixmatch_dm,digits smoke") and ",0," in line
               and "failed seed 1" in line for line in csv)
    tex = (tmp_path / "t.latex").read_text()
    assert r"\begin{tabular}" in tex and r"FixMatch + DM(CE) & 1 &" in tex
    plots = tmp_path / "plots"
    assert cli.main(["report", str(runs), "--plots", str(plots)]) == 0
    assert any("top_1_acc" in p.name for p in plots.iterdir())


@pytest.mark.slow
def test_submitit_local_executor_requeues_a_preempted_run_which_resumes(tmp_path):
    submitit = pytest.importorskip("submitit")  # noqa: F841
    table = get_table("digits_smoke")
    specs = sweep.expand(table, tmp_path, seeds=[0], only="fixmatch_dm",
                         overrides={"device": "cpu", "num_train_iter": 200, "num_eval_iter": 50,
                                    "num_log_iter": 5})
    run = Path(specs[0].run_dir)
    jobs = sweep.run_submitit(specs, tmp_path / ".submitit", cluster="local", gpus_per_run=0,
                              time_min=10)
    assert len(jobs) == 1
    _wait(lambda: len(records.read_metrics(run)) >= 2, "the run to start")
    lock = json.loads((run / sweep.LOCK_FILE).read_text())  # the job function's process
    os.kill(lock["pid"], signal.SIGUSR2)                    # submitit's preemption signal
    out = jobs[0].result()
    assert out["status"] == "finished" and out["returncode"] == 0
    starts = records.read_json(run / "run.json")["starts"]
    assert len(starts) == 2 and starts[1]["resumed_from"].endswith("latest_model.pth")
    assert "requeue" in (jobs[0].stderr() or "").lower() + (jobs[0].stdout() or "").lower()
    assert not (run / sweep.LOCK_FILE).exists()


@pytest.mark.slow
def test_ablation_tables_carry_their_parameter_to_the_report_plot(tmp_path):
    eta = get_table("eta")
    assert {c.param for c in eta.cells if c.param} == {("eta", v) for v in (0.01, 0.05, 0.1,
                                                                            0.5, 1.0, 2.0)}
    assert all(c.reference is None for c in eta.cells)
    by_id = {c.id: c for c in get_table("xi_t").cells}
    xi = by_id["cifar100_cifar_resnet18_cutmix_dm_bce_400ep_xi0.6"].config
    assert (xi["mix_loss"], xi["mix_xi"], xi["mix_t"]) == ("dm_bce", 0.6, 1.0)
    t = by_id["cifar100_cifar_resnet18_mixup_dm_bce_400ep_t0.25"].config
    assert (t["mix_xi"], t["mix_t"]) == (1.0, 0.25)
    # runs as a sweep leaves them (records written by hand: the plot is what is tested)
    specs = sweep.expand(get_table("eta_digits"), tmp_path, seeds=[0, 1])
    for i, spec in enumerate(specs):
        run = Path(spec.run_dir)
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"seed": spec.seed,
                                                  "experiment": spec.config["experiment"]}))
        (run / "results.json").write_text(json.dumps({"status": "finished",
                                                      "final_acc": 0.5 + 0.01 * i}))
    rows = report.load_runs([tmp_path])
    params = sorted({r.param for r in rows if r.param})
    assert params == [("eta", 0.1), ("eta", 0.5), ("eta", 1.0), ("eta", 2.0)]
    assert sum(r.param is None for r in rows) == 2                  # FixMatch, 2 seeds
    paths = report.plot_params(rows, tmp_path / "plots")
    assert [p.name for p in paths] == ["eta_digits_eta_ablation.png"]
    assert paths[0].stat().st_size > 0
    for name, share in (("st15", {"label_percent": 15}), ("st30", {"label_percent": 30}),
                        ("sub", {"subset_percent": 50, "num_labels": 25000}),
                        ("ssl", {"num_labels": 40})):        # runs of plain dm-ssl train
        run = tmp_path / "plain" / name
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"dataset": "cub200", "net": "resnet50",
                                                  "algorithm": "selftuning", **share}))
    plain = report.load_runs([tmp_path / "plain"])
    assert {r.cell: r.method for r in plain}["st15"] == "selftuning (st15)"   # one row each
    settings = {r.cell: r.setting for r in plain}
    assert settings == {"st15": "cub200 15% labels resnet50", "st30": "cub200 30% labels resnet50",
                        "sub": "cub200 50% subset resnet50", "ssl": "cub200 40 labels resnet50"}


@pytest.mark.slow
def test_figure_a1_table_sweeps_and_reports_the_mixed_accuracies(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs = tmp_path / "runs"
    short = ["--set", "num_train_iter=30", "--set", "num_eval_iter=30", "--set",
             "num_log_iter=10"]
    capsys.readouterr()
    code = cli.main(["sweep", "A1_digits", "--runs-dir", str(runs), "--device", "cpu",
                     "--seeds", "0", "--only", "cutmix_mce", *short])
    out = capsys.readouterr().out
    assert code == 0, out
    run = runs / "A1_digits" / "cutmix_mce_s0"
    res = records.read_json(run / "results.json")
    assert res["status"] == "finished"
    # the end-of-training numbers are dm-ssl eval --mixed's on the final checkpoint
    for mixer in ("mixup", "cutmix"):
        ev = evaluate(str(run / "latest_model.pth"), mixed=mixer)[f"mixed_{mixer}"]
        assert res[f"mixed_{mixer}_top1"] == pytest.approx(ev["top1"])   # one unit: fractions
        assert res[f"mixed_{mixer}_top2"] == pytest.approx(ev["top2"])
        assert 0 <= res[f"mixed_{mixer}_top2"] <= res[f"mixed_{mixer}_top1"] <= 1
    assert cli.main(["report", str(runs), "--table", "A1_digits",
                     "--output", str(tmp_path / "a1.md")]) == 0
    md = (tmp_path / "a1.md").read_text()
    assert "| Mixup top-1 | Mixup top-2 | CutMix top-1 | CutMix top-2 |" in md
    row = next(line for line in md.splitlines() if "| cutmix MCE | 1 |" in line)
    assert f"{100 * res['mixed_cutmix_top2']:.2f} ± 0.00" in row
    assert "| mixup MCE | 0 | - |" in md                      # not run: no numbers, no error
    assert cli.main(["report", str(runs), "--table", "A1_digits", "--format", "csv",
                     "--output", str(tmp_path / "a1.csv")]) == 0
    assert "CutMix top-2 mean,CutMix top-2 std" in (tmp_path / "a1.csv").read_text()


def test_eval_mixed_names_are_checked_before_training():
    base = {**get_table("A1_digits").cells[1].config, "seed": 0, "save_dir": "/nonexistent"}
    with pytest.raises(ConfigError, match="'eval_mixed'.*unknown mixer.*mixupp"):
        validate({**base, "eval_mixed": "mixup,mixupp"})
    with pytest.raises(ConfigError, match="'eval_mixed'.*automix is a learned mixer"):
        validate({**base, "eval_mixed": "automix"})
    assert validate({**base, "eval_mixed": ["cutmix", "mixup", "cutmix"]})[
        "eval_mixed"] == "cutmix,mixup"
    learned = get_table("A1_digits_learned").cells[-1].config
    assert validate({**learned, "seed": 0})["eval_mixed"] == "mixup,cutmix,samix"


def test_a_sweep_refuses_runs_made_with_another_config(tmp_path, capsys, monkeypatch):
    """The smoke sweep then the real one into the same --runs-dir: finished runs of the old
    config would be skipped and reported as the new one. Refused naming the run and key;
    --rerun-changed moves them aside (kept) and starts them again."""
    specs = sweep.expand(get_table("digits_smoke"), tmp_path, seeds=[0], only="fixmatch",
                         overrides={"num_train_iter": 6})
    run = Path(specs[0].run_dir)
    run.mkdir(parents=True)
    saved = validate({**specs[0].config, "num_train_iter": 4, "data_dir": "elsewhere"})
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    (run / "results.json").write_text(json.dumps({"status": "finished", "final_acc": 0.5}))
    assert sweep.config_changes(specs[0]) == ["num_train_iter: 4 -> 6"]   # data_dir: runtime
    same = sweep.expand(get_table("digits_smoke"), tmp_path, seeds=[0], only="fixmatch",
                        overrides={"num_train_iter": 4})
    assert sweep.config_changes(same[0]) == []
    argv = ["sweep", "digits_smoke", "--runs-dir", str(tmp_path), "--seeds", "0", "--only",
            "fixmatch", "--set", "num_train_iter=6"]
    def tree():
        return {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    before = tree()
    capsys.readouterr()
    assert cli.main(argv + ["--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "fixmatch_s0 (num_train_iter: 4 -> 6)" in err and "--rerun-changed" in err
    assert cli.main(argv) == 2 and "--rerun-changed" in capsys.readouterr().err
    assert tree() == before  # refused: nothing written, no lock taken
    monkeypatch.setattr(sweep, "run_local", lambda specs, **kw: [])
    assert cli.main(argv + ["--rerun-changed"]) == 0
    assert not run.exists() and len(list(run.parent.glob("fixmatch_s0.changed-*"))) == 1

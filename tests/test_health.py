"""The training health monitor (dm_ssl.run.health, issue #27): a run that is not learning
says so in one line per symptom, run.json records it, dm-ssl report flags the run, and the
run trains exactly as with the monitor off."""

import json

import pytest
import yaml

from dm_ssl.run import health

CFG = health.HealthConfig(window=0.5, sup_drop=0.1, grad_ratio=5.0)


def _observe(monitor, rows):
    out = []
    for it, logs in rows:
        out += monitor.observe(it, logs)
    return out


def test_the_checks_fire_once_on_their_symptom_and_not_on_a_healthy_run():
    healthy = [(i, {"train/sup_loss": 2.3 - 0.2 * i, "train/util_ratio": 0.1 * i,
                    "train/dm_grad_ratio": 1.5}) for i in range(1, 11)]
    assert _observe(health.HealthMonitor(CFG, 10, dm=True), healthy) == []
    flat = [(i, {"train/sup_loss": 2.3 + 0.01 * (i % 2), "train/util_ratio": 0.0,
                 "train/mix_mask_ratio": 0.0, "train/dm_grad_ratio": 9.0 if i == 2 else 1.0})
            for i in range(1, 11)]
    got = _observe(health.HealthMonitor(CFG, 10, dm=True), flat)
    assert [(s.name, s.it) for s in got] == [("DM gradient dominates", 2),
                                             ("labeled loss not falling", 5),
                                             ("mask ratio stuck at 0", 5)]
    assert got[1].keys == ("lr", "dm_w_ll", "dm_ramp_ll") and got[2].keys[0] == "p_cutoff"
    line = got[0].line()
    assert line.startswith("dm-ssl: warning: DM gradient dominates at iteration 2 (")
    assert "9.0" in line and "dm_w_ll" in line and health.DOCS in line and "\n" not in line
    # a resumed run does not repeat what run.json already holds
    again = health.HealthMonitor(CFG, 10, dm=True, seen=[s.name for s in got])
    assert _observe(again, flat) == []
    assert health.loss_not_falling([2.3], 0.1) is None       # too few values to tell
    assert not health.stuck_at_zero([0.0])


def _run(tmp_path, capsys, name, **over):
    from dm_ssl import cli

    cfg = {"algorithm": "fixmatch_dm", "dataset": "digits", "num_labels": 20, "in_channels": 1,
           "net": "small_cnn", "num_train_iter": 8, "epoch": 1, "num_eval_iter": 4,
           "num_log_iter": 1, "batch_size": 8, "uratio": 2, "eval_batch_size": 64,
           "num_workers": 0, "progress": False, "device": "cpu", "seed": 0, "save_name": name,
           "dm_w_ll": 1.0, "health_grad_every": 2, **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    code = cli.main(["train", "--config", str(path), "--save-dir", str(tmp_path / "runs")])
    out, err = capsys.readouterr()
    assert code == 0, err
    return tmp_path / "runs" / name, err


@pytest.mark.slow
def test_a_run_that_is_not_learning_says_so_and_report_flags_it(tmp_path, capsys):
    from dm_ssl import cli, records

    # lr far too small, a threshold nothing passes, a gradient bar every run clears
    run, err = _run(tmp_path, capsys, "sick", lr=1e-7, p_cutoff=1.0, health_grad_ratio=1e-3,
                    health_window=0.5)
    warnings = [line for line in err.splitlines() if line.startswith("dm-ssl: warning:")]
    names = {"labeled loss not falling", "mask ratio stuck at 0", "DM gradient dominates"}
    assert len(warnings) == 3 and all(any(n in w for n in names) for w in warnings), err
    recorded = records.read_json(run / "run.json")["health"]
    assert {h["name"] for h in recorded} == names
    rows = records.read_metrics(run)
    assert [r["it"] for r in rows if "train/dm_grad_ratio" in r] == [2, 4, 6, 8]
    # the same run with the monitor off: no warning, and the same training bit for bit
    quiet, err = _run(tmp_path, capsys, "quiet", lr=1e-7, p_cutoff=1.0, health=False)
    assert "warning" not in err and "health" not in records.read_json(quiet / "run.json")
    off = records.read_metrics(quiet)
    assert [{k: v for k, v in r.items() if k not in ("train/dm_grad_ratio",
                                                    "train/prefetch_time")} for r in rows] == \
        [{k: v for k, v in r.items() if k != "train/prefetch_time"} for r in off]
    # dm-ssl report lists the flagged run (averaged in) with its warnings
    out = tmp_path / "report.md"
    assert cli.main(["report", str(tmp_path / "runs"), "--output", str(out)]) == 0
    text = out.read_text()
    flagged = text.split("Health warnings")[1]
    assert "sick" in flagged and "labeled loss not falling at iteration 4" in flagged
    assert "quiet" not in flagged
    assert json.loads((run / "results.json").read_text())["status"] == "finished"

"""A resume is the same run or a refusal (issue #27): identity keys and split files are
checked before anything is built, a refusal leaves every file of the run as it was, a
finished run is said to be finished, and a longer ``num_train_iter`` extends the run with its
schedules continued from the checkpoint (dm_ssl.algorithms.schedule)."""

import hashlib
import json
import math
import shutil

import pytest
import yaml

from dm_ssl.algorithms import schedule

TINY = {"algorithm": "fixmatch_dm", "dataset": "digits", "num_labels": 20, "in_channels": 1,
        "net": "small_cnn", "epoch": 1, "num_eval_iter": 2, "num_log_iter": 1, "batch_size": 4,
        "uratio": 2, "eval_batch_size": 64, "num_workers": 0, "progress": False,
        "device": "cpu", "seed": 0}


def test_the_schedule_clock_is_continuous_and_ends_where_the_schedule_ended():
    ext = [schedule.Extension(6, 8, 12)]
    assert [schedule.clock(k, ext) for k in (0, 6)] == [0, 6]       # before: untouched
    assert schedule.clock(9, ext) == pytest.approx(7.0)            # 6 + 3 * 2/6
    assert schedule.clock(12, ext) == pytest.approx(8.0)           # the old end at the new end
    twice = [*ext, schedule.Extension(9, 12, 15)]                  # extended again at 9
    assert schedule.clock(9, twice) == pytest.approx(7.0)
    assert schedule.clock(15, twice) == pytest.approx(8.0)
    assert schedule.clock(12, twice) == pytest.approx(schedule.clock(9 + 3 * 3 / 6, ext))
    cosine = schedule.stretched(lambda k: math.cos(7 * math.pi * k / (16 * 8)), ext)
    assert cosine(12) == pytest.approx(math.cos(7 * math.pi / 16))  # USB's final factor
    state = schedule.to_state(8, twice)
    assert schedule.from_state(json.loads(json.dumps(state))) == (8, twice)
    with pytest.raises(ValueError, match="not beyond the checkpoint's iteration 6"):
        schedule.check_extension(6, 8, 6)


def _hashes(run):
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def _train(tmp_path, capsys, *sets, name="c.yaml", **over):
    from dm_ssl import cli

    path = tmp_path / name
    path.write_text(yaml.safe_dump({**TINY, **over}))
    capsys.readouterr()
    code = cli.main(["train", "--config", str(path), "--save-dir", str(tmp_path / "runs"),
                     *[a for s in sets for a in ("--set", s)]])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_a_resume_that_would_change_the_run_is_refused_and_touches_nothing(tmp_path, capsys):
    from dm_ssl import records

    code, _, err = _train(tmp_path, capsys, "num_train_iter=4")
    assert code == 0, err
    run = tmp_path / "runs" / "fixmatch_dm_digits"
    before = _hashes(run)
    # identity keys: refused naming old -> new (lr and T used to be accepted silently)
    for change, named in (("lr=0.5", "lr: 0.03 -> 0.5"), ("T=2", "T: 0.5 -> 2.0"),
                          ("dm_w_ll=0.5", "dm_w_ll:")):
        code, _, err = _train(tmp_path, capsys, "num_train_iter=4", "resume=true", change)
        assert code == 2 and named in err and "config.yaml" in err, err
        assert _hashes(run) == before, change
    # a finished run: said, its results printed again, nothing written (no .prev rotation)
    code, out, err = _train(tmp_path, capsys, "num_train_iter=4", "resume=true",
                            "num_workers=1")
    assert code == 0 and "already finished at iteration 4" in err, err
    assert json.loads(out)["status"] == "finished"
    assert _hashes(run) == before
    # a hand-edited split that is still valid: refused naming the file
    split = run / "split.json"
    saved = split.read_text()
    doc = json.loads(saved)
    doc["lb_idx"][0] = next(i for i in doc["ulb_idx"] if i not in doc["lb_idx"])
    split.write_text(json.dumps(doc))
    (run / "results.json").unlink()  # as if killed before it finished
    edited = _hashes(run)
    code, _, err = _train(tmp_path, capsys, "num_train_iter=4", "resume=true")
    assert code == 2 and "split.json changed since the run started" in err, err
    assert _hashes(run) == edited
    split.write_text(saved)
    # both checkpoints damaged: refused after the run was built, and still no log line, no
    # tensorboard file, no checkpoint touched
    for ckpt in run.glob("latest_model.pth*"):
        ckpt.write_bytes(ckpt.read_bytes()[:64])
    damaged = _hashes(run)
    code, _, err = _train(tmp_path, capsys, "num_train_iter=4", "resume=true")
    assert code == 2 and "no readable checkpoint" in err, err
    assert _hashes(run) == damaged
    assert records.read_json(run / "run.json")["starts"][-1]["iteration"] == 0


@pytest.mark.slow
def test_a_longer_run_continues_its_schedules_from_the_checkpoint(tmp_path, capsys):
    """issue #27: ``--set num_train_iter`` at a resume used to rebuild the lr schedule for
    the new length (a jump). The rest of the schedule is stretched over the rest of the new
    run; run.json records the extension, the checkpoint carries it (a second resume of the
    extended run continues it bit for bit)."""
    import torch
    from semilearn.core.utils import get_cosine_schedule_with_warmup

    from dm_ssl import records

    code, _, err = _train(tmp_path, capsys, "num_train_iter=8")
    assert code == 0, err
    run = tmp_path / "runs" / "fixmatch_dm_digits"
    lr8 = {r["it"]: r["lr"] for r in records.read_metrics(run)}
    # resume at iteration 6 (the latest checkpoint, it 8, cut short; as a run killed at 7)
    latest = run / "latest_model.pth"
    latest.write_bytes(latest.read_bytes()[:64])
    (run / "results.json").unlink()
    code, _, err = _train(tmp_path, capsys, "num_train_iter=12", "resume=true",
                          "num_workers=1")
    assert code == 0, err
    assert "from 8 to 12 iterations at iteration 6" in err and "num_workers: 0 -> 1" in err
    start = records.read_json(run / "run.json")["starts"][-1]
    assert start["extension"] == {"at": 6, "old_total": 8, "new_total": 12}
    assert start["changes"] == {"num_train_iter": [8, 12], "num_workers": [0, 1]}
    assert yaml.safe_load((run / "config.yaml").read_text())["num_train_iter"] == 12
    lr12 = {r["it"]: r["lr"] for r in records.read_metrics(run)}
    assert [lr12[k] for k in range(1, 7)] == [lr8[k] for k in range(1, 7)]
    factor = get_cosine_schedule_with_warmup(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), 8).lr_lambdas[0]
    ext = [schedule.Extension(6, 8, 12)]
    for k in range(7, 13):  # the logged lr is the one after step k
        assert lr12[k] == pytest.approx(0.03 * factor(schedule.clock(k, ext)), rel=1e-6), k
    assert lr12[12] == pytest.approx(0.03 * factor(8))              # where the 8-it run ended
    assert abs(lr12[7] - lr12[6]) < abs(lr8[7] - lr8[6])          # no jump, a slower decline
    assert records.read_json(run / "results.json")["iterations"] == 12
    # the extended run resumed again (from it 10): its checkpoint holds the extension
    shutil.copy(latest, tmp_path / "latest.pth")
    latest.write_bytes(latest.read_bytes()[:64])
    (run / "results.json").unlink()
    code, _, err = _train(tmp_path, capsys, "num_train_iter=12", "resume=true")
    assert code == 0, err
    assert "iterations at iteration" not in err                     # no new extension
    again = {r["it"]: r["lr"] for r in records.read_metrics(run)}
    assert again == lr12
    first, second = (torch.load(p, weights_only=False)["model"]
                     for p in (tmp_path / "latest.pth", latest))
    assert all(torch.equal(first[k], second[k]) for k in first)
    # shorter than the checkpoint's iteration: refused, naming both
    (run / "results.json").unlink()
    code, _, err = _train(tmp_path, capsys, "num_train_iter=10", "resume=true")
    assert code == 2 and "not beyond the checkpoint's iteration 12" in err, err

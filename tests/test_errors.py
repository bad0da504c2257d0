"""The README's table of errors, row by row: ``dm-ssl`` as a subprocess, exit code ≠ 0, one
``dm-ssl: …`` line naming the key or file, no traceback, and an existing run left as it was.

The real processes of this module take two interpreter starts (:func:`processes`): the run the
other rows must leave as it was, then every other one in one batch (tests/cli_batch.py: each
command its own exit code and output, as a process of its own). The other rows call
``cli.main`` in the test's process: the same code without a start each."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import yaml

pytest.importorskip("semilearn")

from .data.cifar_files import write_cifar10  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {"net": "small_cnn", "num_train_iter": 2, "epoch": 1, "num_eval_iter": 2,
        "batch_size": 4, "uratio": 2, "eval_batch_size": 16, "num_workers": 0,
        "progress": False, "device": "cpu"}
DIGITS = {"algorithm": "fixmatch_dm", "dataset": "digits", "num_labels": 20, "in_channels": 1,
          **TINY}


def dm_ssl(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dm_ssl.cli", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def config(tmp: Path, body, name: str = "c.yaml") -> Path:
    path = tmp / name
    path.write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    return path


def hashes(run: Path) -> dict:
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


def one_error_line(proc: subprocess.CompletedProcess, *names: str, code: int = 2) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = [line for line in err.splitlines() if line.startswith("dm-ssl:")]
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _cifar(tmp: Path, **kwargs) -> Path:
    root = tmp / "data"
    write_cifar10(root, **kwargs)
    return root


#: id -> (build argv from tmp dir, strings the one line must name)
CASES = {
    "missing data": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "dataset": "cifar10", "num_labels": 10, "in_channels": 3})),
        "--data-dir", str(t / "nodata")], ["cifar-10-batches-py"]),
    "truncated data": (lambda t: _truncate(t), ["data_batch_1"]),
    "wrong data layout": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "dataset": "cifar10", "num_labels": 10, "in_channels": 3})),
        "--data-dir", str(_wrong_layout(t))], ["cifar-10-batches-py"]),
    "too many labels": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "num_labels": 5000}))], ["num_labels"]),
    "labels not divisible by classes": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "num_labels": 25}))], ["num_labels"]),
    "unknown algorithm": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "algorithm": "fixmatch_dmx"}))], ["fixmatch_dmx", "fixmatch_dm"]),
    "unknown net": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "net": "wrn_28_3"}))], ["net", "wrn_28_3"]),
    "unknown mixer": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "dm_mixer": "mixitup"}))], ["dm_mixer", "mixitup"]),
    "unknown loss": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "algorithm": "supervised_mixup", "mix_loss": "dm_cee"}))], ["mix_loss"]),
    "unknown dataset": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "dataset": "cifar11"}))], ["cifar11"]),
    "unknown optimizer": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "optim": "Adagrad"}))], ["optim", "Adagrad"]),
    "unknown key": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                               "--set", "dm_etaa=1"], ["dm_etaa", "dm_eta"]),
    "wrong type": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                              "--set", "lr=fast"], ["'lr'"]),
    "threshold out of range": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                          "--set", "p_cutoff=1.5"], ["'p_cutoff'"]),
    "uratio 0": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                            "--set", "uratio=0"], ["'uratio'"]),
    "ema_m out of range": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                      "--set", "ema_m=2"], ["'ema_m'"]),
    "temperature 0": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                 "--set", "T=0"], ["'T'", "(0, inf)"]),
    "negative temperature": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                        "--set", "T=-1"], ["'T'"]),
    "epoch 0": (lambda t: ["train", "--config", str(config(t, DIGITS)), "--set", "epoch=0"],
                ["'epoch'", "[1, inf)"]),
    "negative seed": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                 "--set", "seed=-1"], ["'seed'", "[0, 4294967296)"]),
    "negative num_workers": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                        "--set", "num_workers=-1"], ["'num_workers'"]),
    "dataset_options not a mapping": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                                 "--set", "dataset_options=3"],
                                      ["'dataset_options'", "mapping"]),
    "hflip not a boolean": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                       "--set", "hflip=maybe"], ["'hflip'"]),
    "negative image size": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                       "--set", "img_size=-3"], ["'img_size'"]),
    "label_list outside fine-grained transfer": (
        lambda t: ["train", "--config", str(config(t, DIGITS)), "--set",
                   f"label_list={t / 'train_15.txt'}"], ["'label_list'", "num_labels"]),
    "epoch does not divide the run": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                                 "--set", "num_train_iter=10", "--set",
                                                 "epoch=3"], ["'epoch'"]),
    "save directory not writable": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                               "--save-dir", str(_a_file(t) / "runs")],
                                    ["not_a_dir"]),
    "device without a GPU": (lambda t: ["train", "--config", str(config(t, DIGITS)),
                                        "--device", "cuda:3"], ["cuda:3"]),
    "YAML syntax error": (lambda t: ["train", "--config", str(config(
        t, "algorithm: fixmatch\nnum_labels: [40\n"))], ["c.yaml"]),
    "empty config": (lambda t: ["train", "--config", str(config(t, ""))], ["c.yaml"]),
    "config is a directory": (lambda t: ["train", "--config", str(t)], ["--config"]),
    "missing pretrained file": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "net": "resnet18", "pretrained_path": str(t / "r18.pth")}))], ["r18.pth"]),
    "wrong-architecture pretrained file": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "net": "resnet18", "pretrained_path": str(_wrong_weights(t))}))],
        ["wrong.pth"]),
    "missing checkpoint at eval": (lambda t: ["eval", "--checkpoint", str(t / "none.pth")],
                                   ["none.pth"]),
    "checkpoint is a directory at eval": (lambda t: ["eval", "--checkpoint", str(t)],
                                          ["is a directory", "no *.pth"]),
    "data_dir is a file": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "dataset": "cifar10", "num_labels": 10, "in_channels": 3})),
        "--data-dir", str(_a_file(t))], ["not_a_dir", "is a file, not a folder"]),
    "every fine-grained image labeled": (lambda t: ["train", "--config", str(config(t, {
        **DIGITS, "algorithm": "selftuning_dm", "dataset": "cub200", "label_percent": 100}))],
        ["label_percent", "no unlabeled images"]),
    # eval options, refused before the checkpoint, the data or the model are read
    "FGSM epsilon not a number": (lambda t: ["eval", "--checkpoint", str(t / "none.pth"),
                                             "--fgsm", "nan"], ["--fgsm", "nan"]),
    "negative FGSM epsilon": (lambda t: ["eval", "--checkpoint", str(t / "none.pth"),
                                         "--fgsm", "-0.1"], ["--fgsm", "-0.1"]),
    "unknown mixer at eval": (lambda t: ["eval", "--checkpoint", str(t / "none.pth"),
                                         "--mixed", "mixitup"], ["--mixed", "mixitup"]),
}
EVAL_CASES = ("missing checkpoint at eval", "checkpoint is a directory at eval",
              "FGSM epsilon not a number", "negative FGSM epsilon", "unknown mixer at eval")


def _truncate(tmp: Path) -> list:
    root = _cifar(tmp)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:100])
    return ["train", "--config", str(config(tmp, {**DIGITS, "dataset": "cifar10",
                                                   "num_labels": 10, "in_channels": 3})),
            "--data-dir", str(root)]


def _wrong_layout(tmp: Path) -> Path:
    root = tmp / "flat"
    (root / "cifar-10-python").mkdir(parents=True)   # the archive's name, not its folder
    return root


def _a_file(tmp: Path) -> Path:
    path = tmp / "not_a_dir"
    path.write_text("a file where a folder should be")
    return path


def _wrong_weights(tmp: Path) -> Path:
    path = tmp / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(3, 3, 3, 3), "fc.weight": torch.zeros(5, 7)}, path)
    return path


#: the rows run as a real ``dm-ssl`` process (a training config's data and key, an eval's
#: checkpoint); the others call ``cli.main`` in this process, the same code without a start each
AS_PROCESS = ("missing data", "unknown key", "missing checkpoint at eval")
RUN = "fixmatch_dm_digits"  # the finished run's folder under <processes>/runs


def case_argv(case: str, tmp: Path) -> List[str]:
    """Row ``case``'s command, its files under ``tmp``; a new run would go to ``tmp/new``."""
    build, _ = CASES[case]
    argv = build(tmp)
    if case != "save directory not writable" and case not in EVAL_CASES:
        argv += ["--save-dir", str(tmp / "new")]
    return argv


def _plan(root: Path) -> Dict[str, List[str]]:
    """The batch's commands (name -> argv), their files written under ``root``."""
    run = root / "runs" / RUN
    plan = {}
    for i, case in enumerate(AS_PROCESS):
        (root / f"case{i}").mkdir()
        plan[f"case{i}"] = case_argv(case, root / f"case{i}")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    plan["existing"] = ["train", "--config", str(config(root, cfg, "existing.yaml")),
                        "--save-dir", str(run.parent)]
    plan["eval"] = ["eval", "--checkpoint", str(run / "latest_model.pth"), "--device", "cpu"]
    copy = root / "truncated" / "runs" / RUN  # every checkpoint of a copy truncated
    shutil.copytree(run, copy)
    for path in copy.glob("*.pth*"):
        path.write_bytes(path.read_bytes()[:64])
    (copy / "results.json").unlink()  # as a run killed before it finished
    (root / "truncated.json").write_text(json.dumps(hashes(copy)))
    plan["truncated_eval"] = ["eval", "--checkpoint", str(copy / "latest_model.pth")]
    plan["truncated_resume"] = ["train", "--config", str(config(
        root, {**cfg, "resume": True}, "truncated.yaml")), "--save-dir", str(copy.parent)]
    plan["damaged"] = _damaged_image_run(root / "damaged")
    (root / "nan").mkdir()
    plan["nan"] = ["train", "--config", str(config(root / "nan", {
        **DIGITS, "lr": 1e30, "num_train_iter": 4})), "--save-dir", str(root / "nan" / "runs")]
    return plan


def _make_processes(root: Path) -> None:
    proc = dm_ssl("train", "--config", str(config(root, DIGITS)), "--save-dir",
                  str(root / "runs"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (root / "finished.out").write_text(proc.stdout)
    (root / "before.json").write_text(json.dumps(hashes(root / "runs" / RUN)))
    from .cli_batch import run_batch

    batch = run_batch(root / "plan.json", _plan(root))
    assert batch.returncode == 0, batch.stderr[-3000:]


@pytest.fixture(scope="session")
def processes(once) -> Path:
    """The folder of this module's real processes: ``runs/<RUN>``, a finished digits run (2
    iterations) with ``before.json`` (its files' hashes after it finished), and each batch
    command's result (:func:`process`)."""
    return once("errors", _make_processes)


def process(root: Path, name: str) -> subprocess.CompletedProcess:
    """Batch command ``name``'s exit code and output."""
    from .cli_batch import result

    return result(root / "plan.json", name)


def in_process(argv, capsys) -> subprocess.CompletedProcess:
    from dm_ssl import cli

    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in AS_PROCESS
                                  else c for c in CASES])
def test_each_bad_input_is_one_clear_line(tmp_path, capsys, request, case):
    if case in AS_PROCESS:  # made by the batch, under <processes>/case<i>
        root = request.getfixturevalue("processes")
        tmp_path = root / f"case{AS_PROCESS.index(case)}"
        proc = process(root, f"case{AS_PROCESS.index(case)}")
    else:
        proc = in_process(case_argv(case, tmp_path), capsys)
    one_error_line(proc, *CASES[case][1])
    assert not (tmp_path / "new").exists()          # a refused command makes no run directory


@pytest.mark.slow
def test_a_finished_command_exits_with_its_output_and_records_complete(processes):
    """``dm-ssl`` ends without the interpreter's teardown (``cli.exit_now``): what it wrote
    through a pipe (block-buffered), to log.txt and to tensorboard is all there."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    run = processes / "runs" / RUN
    results = json.loads((run / "results.json").read_text())
    printed = json.loads((processes / "finished.out").read_text())
    assert printed["status"] == "finished" and printed["algorithm"] == "fixmatch_dm"
    assert all(printed[k] == v for k, v in results.items() if k in printed)
    assert (run / "log.txt").read_text().splitlines()[-1].endswith(
        (processes / "finished.out").read_text().strip())
    events = [event for path in (run / "tensorboard").iterdir()
              for event in EventFileLoader(str(path)).Load()]
    assert max(e.step for e in events) == results["iterations"] - 1   # the last step's logs


def test_an_existing_run_is_never_changed_by_a_refused_command(processes, tmp_path, capsys):
    run = processes / "runs" / RUN
    before = json.loads((processes / "before.json").read_text())
    # a real process (the batch): refused, and neither it nor the batch's eval changed the run
    one_error_line(process(processes, "existing"), "resume=true")
    assert hashes(run) == before
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    save = ["--save-dir", str(run.parent)]
    rows = {
        "resume from another algorithm's checkpoint": (
            ["train", "--config", str(config(tmp_path, {**DIGITS, "algorithm": "fixmatch",
                                                        "save_name": run.name,
                                                        "resume": True}, "other.yaml"))],
            ["algorithm"]),
        "resume with another net": (
            ["train", "--config", str(config(tmp_path, {**cfg, "net": "wrn_28_2",
                                                        "resume": True}, "net.yaml"))],
            ["net"]),
    }
    for name, (argv, names) in rows.items():
        one_error_line(in_process([*argv, *save], capsys), *names)
        assert hashes(run) == before, name
    # a split that no longer matches the data: named, and the run is otherwise as it was
    split = run / "split.json"
    saved = split.read_text()
    data = json.loads(saved)
    key = next(k for k, v in data.items() if isinstance(v, list))
    data[key] = data[key][:-1]
    try:
        split.write_text(json.dumps(data))
        one_error_line(in_process(["train", "--config", str(config(
            tmp_path, {**cfg, "resume": True}, "resume.yaml")), *save], capsys), "split")
    finally:
        split.write_text(saved)
    assert hashes(run) == before
    # eval (the batch's) worked on the run, and added nothing to it (no log line, no
    # tensorboard file: the hashes above)
    ev = process(processes, "eval")
    assert ev.returncode == 0, ev.stderr[-2000:]


@pytest.mark.slow
def test_truncated_checkpoints_are_named_at_eval_and_at_resume(processes):
    one_error_line(process(processes, "truncated_eval"), "latest_model.pth")
    one_error_line(process(processes, "truncated_resume"), "latest_model.pth")
    # refused after the run was built: no log line, no tensorboard file, nothing else
    copy = processes / "truncated" / "runs" / RUN
    assert hashes(copy) == json.loads((processes / "truncated.json").read_text())


def _damaged_image_run(tmp: Path) -> List[str]:
    """A tiny-imagenet run whose two training images are cut short (their names in
    ``tmp/damaged.json``)."""
    from .data.test_tinyimagenet import write_tinyimagenet

    files = write_tinyimagenet(tmp / "data", per_class=3, val_per_class=1)
    damaged = [files["train"][k][0] for k in (4, 7)]  # not item 0, which building may read
    for path in damaged:
        path.write_bytes(path.read_bytes()[:200])
    (tmp / "damaged.json").write_text(json.dumps([p.name for p in damaged]))
    cfg = {**TINY, "algorithm": "supervised_mixup", "dataset": "tinyimagenet", "in_channels": 3,
           "num_train_iter": 8, "num_workers": 1, "mix_mixers": "mixup", "num_classes": 3}
    return ["train", "--config", str(config(tmp, cfg)), "--data-dir", str(tmp / "data"),
            "--save-dir", str(tmp / "runs")]


@pytest.mark.slow
def test_a_damaged_image_mid_run_fails_the_run_in_one_line(processes):
    """A file that breaks while the run trains (here in a data-loader worker): exit 1, one line
    naming the file (not the worker's traceback) and the iteration, results.json says failed."""
    tmp = processes / "damaged"
    names = json.loads((tmp / "damaged.json").read_text())
    line = one_error_line(process(processes, "damaged"), "run failed", "cannot read image",
                          code=1)
    assert "worker" not in line and any(name in line for name in names)
    run = tmp / "runs" / "supervised_mixup_tinyimagenet"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "failed" and "cannot read image" in results["reason"]
    assert 0 <= results["iterations"] < 8 and f"iteration {results['iterations']}" in line
    # what to do next depends on whether a checkpoint was written before the failure
    has_ckpt = (run / "latest_model.pth").exists()
    assert ("resume with --set resume=true" in line) == has_ckpt
    assert ("run the same command again" in line) == (not has_ckpt)


@pytest.mark.slow
def test_nan_mid_run_fails_the_run_and_says_where(processes):
    line = one_error_line(process(processes, "nan"), "iteration", code=1)
    assert "non-finite" in line
    results = json.loads((processes / "nan" / "runs" / RUN / "results.json").read_text())
    assert results["status"] == "failed"

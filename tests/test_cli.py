"""dm-ssl train / eval end to end, from config files, on generated data (CPU)."""

import json
from pathlib import Path

import pytest
import yaml

pytest.importorskip("semilearn")

from dm_ssl import cli  # noqa: E402
from dm_ssl.config import (  # noqa: E402
    ConfigError,
    apply_overrides,
    check_device,
    load_config,
    shorten_schedule,
    validate,
)
from dm_ssl.evaluation.run_metrics import eval_views  # noqa: E402
from dm_ssl.run import prepare_run, train  # noqa: E402

from .data.cifar_files import write_cifar10  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "ssl").rglob("*.yaml"))
TINY = ["net=small_cnn", "num_train_iter=3", "epoch=1", "num_eval_iter=2", "batch_size=4",
        "uratio=2", "eval_batch_size=16", "num_workers=0", "progress=false"]


def _sets(*pairs):
    return [a for p in pairs for a in ("--set", p)]


def test_every_shipped_config_validates():
    assert len(CONFIGS) == 72
    for path in CONFIGS:
        cfg = validate(load_config(str(path)))
        assert cfg["num_labels"] in (40, 250, 4000, 400, 2500, 10000)
        if cfg["algorithm"].endswith("_dm"):
            assert cfg["dm_eta"] == 1.0 and cfg["dm_scale"] == "pow"


def test_unknown_key_and_bad_values_are_clear_errors(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("algorithm: fixmatch_dm\ndataset: digits\nnum_labels: 20\n")
    assert cli.main(["train", "--config", str(cfg), *_sets("dm_etaa=1")]) == 2
    assert "dm_etaa (did you mean dm_eta?)" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(cfg), *_sets("lr=fast")]) == 2
    assert "'lr' must be a number" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(cfg), *_sets("num_labels=7", *TINY)]) == 2
    assert "num_labels" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(cfg), *_sets("num_train_iter=10", "epoch=3")]) == 2
    assert "'epoch' (3) must divide" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(cfg), *_sets("subset_percent=150")]) == 2
    assert "'subset_percent' must be in (0, 100]" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="resume"):
        train(apply_overrides(load_config(str(cfg)), ["resume=true"]))


def test_set_values_are_typed():
    cfg = apply_overrides({}, ["a=1", "b=0.5", "c=true", "d=cutmix", "e=3e-2", "f=null"])
    assert cfg == {"a": 1, "b": 0.5, "c": True, "d": "cutmix", "e": "3e-2", "f": None}
    assert validate({"algorithm": "fixmatch", "lr": "3e-2"})["lr"] == pytest.approx(0.03)


@pytest.mark.slow
def test_train_resume_refuse_and_eval_on_cifar_layout(tmp_path, capsys):
    data = tmp_path / "data"
    write_cifar10(data, per_batch=10)
    config = Path(__file__).resolve().parents[1] / "configs/ssl/cifar10/fixmatch_dm_cifar10_40.yaml"
    argv = ["train", "--config", str(config), "--data-dir", str(data), "--save-dir",
            str(tmp_path / "runs"), "--device", "cpu", *_sets(*TINY, "num_train_iter=2")]
    assert cli.main(argv) == 0
    run = tmp_path / "runs" / "fixmatch_dm_cifar10_40_0"
    results = json.loads((run / "results.json").read_text())
    assert {"best_acc", "final_acc", "best_it", "final_it"} <= results.keys()
    assert results["final_it"] == 2
    split = json.loads((run / "split.json").read_text())
    assert yaml.safe_load((run / "config.yaml").read_text())["dm_w_ll"] == 1.0
    assert list((run / "tensorboard").iterdir())
    # a second run into the same directory is refused, the first one is untouched
    before = (run / "latest_model.pth").read_bytes()
    capsys.readouterr()
    assert cli.main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "latest_model.pth").read_bytes() == before
    # resume continues from the checkpoint and reuses the saved split
    # (semilearn resumes at the next epoch: the second half is a second epoch)
    assert cli.main(argv + _sets("resume=true", "num_train_iter=4", "epoch=2")) == 0
    assert json.loads((run / "results.json").read_text())["final_it"] == 4
    assert json.loads((run / "split.json").read_text()) == split
    # eval of a checkpoint
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(run / "latest_model.pth"), "--data-dir",
                     str(data), "--device", "cpu", "--fgsm", "0.0314", "--occlusion",
                     "--mixed", "cutmix"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= out["top1"] <= 1.0 and out["iteration"] == 4
    # one unit throughout: fractions, as top1 (the clean accuracy is occlusion's first point)
    assert 0.0 <= out["fgsm_error"] <= 1.0 and out["fgsm_eps"] == 0.0314
    assert set(out["mixed_cutmix"]) == {"top1", "top2"}
    assert 0.0 <= out["mixed_cutmix"]["top2"] <= out["mixed_cutmix"]["top1"] <= 1.0
    assert len(out["occlusion"]) == 10 and out["occlusion"]["0.0"] == pytest.approx(out["top1"])
    # a missing dataset is one clear error naming the file
    assert cli.main(argv[:4] + [str(tmp_path / "nodata"), *argv[5:],
                                *_sets("save_name=other")]) == 2
    assert "cifar-10" in capsys.readouterr().err


@pytest.mark.slow
def test_digits_host_and_dm_from_the_cli(tmp_path):
    cfg = tmp_path / "digits.yaml"
    cfg.write_text(yaml.safe_dump({"algorithm": "flexmatch_dm", "dataset": "digits",
                                   "num_labels": 20, "in_channels": 1, "seed": 1}))
    assert cli.main(["train", "--config", str(cfg), "--save-dir", str(tmp_path), *_sets(*TINY)]) \
        == 0
    assert (tmp_path / "flexmatch_dm_digits" / "results.json").exists()


@pytest.mark.slow
def test_supervised_mixup_data_efficient_from_the_cli(tmp_path):
    data = tmp_path / "data"
    write_cifar10(data, per_batch=10)
    cfg = tmp_path / "sup.yaml"
    cfg.write_text(yaml.safe_dump({
        "algorithm": "supervised_mixup", "dataset": "cifar10", "subset_percent": 50,
        "mix_mixers": "mixup,cutmix", "mix_loss": "dm_ce", "mix_eta": 0.1, "seed": 0}))
    argv = ["train", "--config", str(cfg), "--data-dir", str(data), "--save-dir",
            str(tmp_path / "runs"), *_sets(*TINY)]
    assert cli.main(argv) == 0
    run = tmp_path / "runs" / "supervised_mixup_cifar10"
    assert json.loads((run / "results.json").read_text())["final_it"] == 3
    subset = json.loads((run / "subset_50.json").read_text())["lb_idx"]
    labels = [i % 10 for i in range(50)]                   # the fixture's labels cycle 0..9
    counts = [sum(labels[i] == c for i in subset) for c in range(10)]
    assert len(set(counts)) == 1 and 2 <= counts[0] <= 3   # 50 % of 5 per class, balanced


@pytest.mark.slow
def test_every_supervised_config_validates_and_one_runs(tmp_path):
    from .data.cifar_files import write_cifar100

    configs = sorted((CONFIGS[0].parents[2] / "supervised").rglob("*.yaml"))
    assert len(configs) == 202
    learned = 0
    for path in configs:
        cfg = validate(load_config(str(path)))
        assert cfg["num_train_iter"] % cfg["epoch"] == 0
        if cfg["mix_mixers"] in ("automix", "samix"):  # OpenMixup's settings (spec §5.1)
            learned += 1
            assert cfg["mix_alpha"] == "2.0" and cfg["mix_clean_weight"] == 1.0
            assert cfg["mix_head"] == "separate"
            if cfg["mix_loss"] == "dm_ce":
                assert cfg["mix_eta"] == 1.0
        elif cfg["mix_mixers"] == "puzzlemix" and cfg["mix_loss"] == "dm_ce":  # dynamic (B.3)
            assert cfg["mix_alpha"] == "2.0" and cfg["mix_eta"] == 1.0
        elif cfg["mix_loss"] in ("dm_ce", "dm_bce"):
            assert cfg["mix_alpha"] == "0.2" and cfg["mix_eta"] in (0.1, 1.0)
    assert learned == 64
    data = tmp_path / "data"
    write_cifar100(data, per_class=4)
    for name, net in (("cifar100_cifar_resnet18_mixup_dm_ce_30pct", "cifar_resnet18"),
                      ("cifar100_cifar_resnet18_puzzlemix_dm_ce_800ep", "small_cnn"),
                      ("cifar100_cifar_resnet18_samix_dm_ce_800ep", "small_cnn")):
        path = [p for p in configs if p.name == f"{name}.yaml"][0]
        argv = ["train", "--config", str(path), "--data-dir", str(data), "--save-dir",
                str(tmp_path / "runs"), *_sets(*TINY, f"net={net}")]
        assert cli.main(argv) == 0


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["imagenet_deit_s_deit_mixup_cutmix_dm_ce",
                                    "imagenet_resnet50_rsb_a3_mixup_cutmix_dm_bce",
                                    "imagenet_resnet50_rsb_a3_samix_dm_bce"])
def test_imagenet_recipes_run_from_their_configs(tmp_path, recipe):
    """The DeiT and RSB A3 configs run as shipped (optimizer, schedule, repeated augmentation,
    RandAugment, erasing, EMA, BCE threshold, drop path), only smaller: a timm test net,
    32-pixel crops, four steps on an image-folder fixture."""
    from .data.test_tinyimagenet import write_image_folder

    write_image_folder(tmp_path / "data", per_class=6, val_per_class=2, size=48)
    path = CONFIGS[0].parents[2] / "supervised" / "imagenet" / f"{recipe}.yaml"
    shipped = validate(load_config(str(path)))
    small = ["net=timm/test_resnet", "num_classes=3", "img_size=32", "num_train_iter=4",
             "epoch=2", "num_warmup_iter=1", "num_eval_iter=2", "batch_size=6",
             "eval_batch_size=8", "num_workers=0", "progress=false"]
    if shipped.get("eval_img_size"):
        small.append("eval_img_size=40")
    argv = ["train", "--config", str(path), "--data-dir", str(tmp_path / "data"), "--save-dir",
            str(tmp_path / "runs"), *_sets(*small)]
    assert cli.main(argv) == 0
    run = tmp_path / "runs" / shipped["save_name"]
    assert json.loads((run / "results.json").read_text())["final_it"] == 4
    used = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("optim", "auto_augment", "repeated_aug", "ema_m", "mix_bce_threshold",
                "net_options", "mix_alpha"):
        assert used[key] == shipped[key]


@pytest.mark.slow
@pytest.mark.parametrize("recipe,net,options", [
    ("imagenet_swin_t_deit_samix_dm_ce", "timm/swin_tiny_patch4_window7_224",
     "{img_size: 32, window_size: 2, embed_dim: 8, depths: [1, 1, 1, 1], "
     "num_heads: [1, 1, 1, 1], drop_path_rate: 0.2}"),
    ("imagenet_deit_s_deit_automix_mce", "timm/deit_small_patch16_224",
     "{img_size: 32, patch_size: 8, depth: 2, embed_dim: 16, num_heads: 2, "
     "drop_path_rate: 0.1}"),
])
def test_table_a5_transformer_configs_with_learned_mixers_run(tmp_path, recipe, net, options):
    """Table A5's rows: the DeiT recipe with AutoMix / SAMix on a ViT or a Swin (smaller),
    the Mix Block on the transformer's tokens / NHWC maps, OpenMixup's switch_off."""
    from .data.test_tinyimagenet import write_image_folder

    write_image_folder(tmp_path / "data", per_class=6, val_per_class=2, size=48)
    path = CONFIGS[0].parents[2] / "supervised" / "imagenet" / f"{recipe}.yaml"
    shipped = validate(load_config(str(path)))
    assert shipped["mix_options"][shipped["mix_mixers"]]["switch_off"] == 0.8
    small = [f"net={net}", f"net_options={options}", "num_classes=3", "img_size=32",
             "num_train_iter=4", "epoch=2", "num_warmup_iter=1", "num_eval_iter=2",
             "batch_size=6", "eval_batch_size=8", "num_workers=0", "progress=false"]
    argv = ["train", "--config", str(path), "--data-dir", str(tmp_path / "data"), "--save-dir",
            str(tmp_path / "runs"), *_sets(*small)]
    assert cli.main(argv) == 0
    run = tmp_path / "runs" / shipped["save_name"]
    assert json.loads((run / "results.json").read_text())["final_it"] == 4
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("train/mixblock_mask_loss" in r for r in rows)


def test_recipe_keys_are_refused_where_they_would_be_ignored():
    with pytest.raises(ConfigError, match="auto_augment"):
        validate({"algorithm": "fixmatch", "dataset": "cifar10",
                      "auto_augment": "rand-m9-mstd0.5-inc1"})
    with pytest.raises(ConfigError, match="net_options"):
        validate({"algorithm": "supervised_mixup", "dataset": "cifar10", "net_options": 3})


@pytest.mark.parametrize("setting,key", [
    ("p_cutoff=1.5", "p_cutoff"), ("p_cutoff=0", "p_cutoff"), ("ema_m=2", "ema_m"),
    ("num_eval_iter=0", "num_eval_iter"), ("eval_batch_size=0", "eval_batch_size"),
    ("uratio=0", "uratio"), ("lr=-0.1", "lr"), ("momentum=1.0", "momentum"),
    ("optim=Adagrad", "optim"), ("dm_w_lu=-1", "dm_w_lu"),
])
def test_out_of_range_values_are_refused_naming_the_key(tmp_path, capsys, setting, key):
    """issue #13/#14: each refused before anything is built or written (exit 2, one line)."""
    config = ROOT / "configs" / "ssl" / "cifar10" / "fixmatch_dm_cifar10_40.yaml"
    code = cli.main(["train", "--config", str(config), "--save-dir", str(tmp_path / "runs"),
                     "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and f"'{key}'" in err
    assert not (tmp_path / "runs").exists()


def test_a_missing_cuda_device_is_named():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    config = ROOT / "configs" / "ssl" / "cifar10" / "fixmatch_dm_cifar10_40.yaml"
    with pytest.raises(ConfigError, match="device 'cuda' is not available.*no CUDA"):
        validate({**load_config(str(config)), "device": "cuda"})
    with pytest.raises(ConfigError, match="--device 'cuda:1'"):
        check_device("cuda:1", "--device")
    check_device("cpu", "device")


@pytest.mark.slow
def test_a_non_finite_loss_stops_the_run_and_says_so(tmp_path, capsys):
    """issue #13: NaN/inf stops at once naming the iteration and term; results.json says
    failed; the checkpoints written before are left as they were."""
    cfg = tmp_path / "nan.yaml"
    cfg.write_text(yaml.safe_dump({"algorithm": "fixmatch_dm", "dataset": "digits",
                                   "num_labels": 20, "in_channels": 1, "lr": 1e30,
                                   "num_train_iter": 40, "epoch": 1, "num_eval_iter": 1,
                                   "seed": 0}))
    code = cli.main(["train", "--config", str(cfg), "--save-dir", str(tmp_path),
                     *_sets(*[s for s in TINY if not s.startswith(("num_train_iter", "epoch",
                                                                    "num_eval_iter"))])])
    err = capsys.readouterr().err
    assert code == 1 and "non-finite loss at iteration" in err and "Traceback" not in err
    run = tmp_path / "fixmatch_dm_digits"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "failed" and results["iterations"] < 40
    assert results["terms"] and "non-finite" in results["reason"]
    import torch

    ckpt = torch.load(run / "latest_model.pth", map_location="cpu", weights_only=False)
    assert ckpt["it"] <= results["iterations"]
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values()
               if torch.is_tensor(v) and v.is_floating_point())


@pytest.mark.slow
def test_a_run_that_ends_early_is_not_reported_as_finished(tmp_path, capsys, monkeypatch):
    """issue #14: whatever ends the loop before num_train_iter, exit != 0 and
    results.json says interrupted with the iteration reached."""
    from dm_ssl.algorithms import SupervisedMixup

    real = SupervisedMixup.train

    def short(self):
        self.num_train_iter, total = 2, self.num_train_iter
        try:
            real(self)
        finally:
            self.num_train_iter = total
    monkeypatch.setattr(SupervisedMixup, "train", short)
    cfg = tmp_path / "short.yaml"
    cfg.write_text(yaml.safe_dump({"algorithm": "supervised_mixup", "dataset": "digits",
                                   "in_channels": 1, "seed": 0}))
    code = cli.main(["train", "--config", str(cfg), "--save-dir", str(tmp_path),
                     *_sets("net=small_cnn", "num_train_iter=4", "epoch=1", "num_eval_iter=2",
                            "batch_size=8", "eval_batch_size=64", "num_workers=0",
                            "progress=false")])
    assert code == 1 and "stopped at iteration 2 of 4" in capsys.readouterr().err
    results = json.loads((tmp_path / "supervised_mixup_digits" / "results.json").read_text())
    assert results["status"] == "interrupted" and results["iterations"] == 2


def _digits_run(tmp_path, **over):
    cfg = tmp_path / "digits.yaml"
    cfg.write_text(yaml.safe_dump({"algorithm": "fixmatch_dm", "dataset": "digits",
                                   "num_labels": 20, "in_channels": 1, "seed": 0, **over}))
    argv = ["train", "--config", str(cfg), "--save-dir", str(tmp_path / "runs"),
            *_sets(*[s for s in TINY if not s.startswith(("num_train_iter", "num_eval_iter"))],
                   "num_train_iter=6", "num_eval_iter=2", "num_log_iter=1")]
    return argv, tmp_path / "runs" / "fixmatch_dm_digits"


@pytest.mark.slow
def test_run_records_metrics_and_a_truncated_latest_checkpoint(tmp_path, capsys):
    """issue #10: run.json / metrics.jsonl / results.json say what the run is and measured;
    a truncated latest checkpoint is reported and the previous one resumes the run."""
    from dm_ssl import records

    argv, run = _digits_run(tmp_path, experiment={"table": "t", "cell": "c"})
    assert cli.main(argv) == 0
    record = records.read_json(run / "run.json")
    assert record["experiment"] == {"table": "t", "cell": "c"} and record["seed"] == 0
    assert record["versions"]["torch"] and record["versions"]["semilearn"] == "0.3.2"
    assert record["split"]["split.json"] and record["device"] == "cpu"
    rows = records.read_metrics(run)
    assert [r["it"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all("train/sup_loss" in r for r in rows)
    assert [r["it"] for r in rows if "eval/top-1-acc" in r] == [2, 4, 6]
    results = records.read_json(run / "results.json")
    assert results["experiment"]["cell"] == "c" and results["status"] == "finished"
    # the latest checkpoint (it 6) cut short; its predecessor (it 4) is kept as .prev
    prev = run / "latest_model.pth.prev"
    assert prev.exists()
    latest = run / "latest_model.pth"
    latest.write_bytes(latest.read_bytes()[:1000])
    (run / "results.json").unlink()  # as a run killed in its last save (a finished one: no-op)
    capsys.readouterr()
    assert cli.main(argv + _sets("resume=true")) == 0
    err = capsys.readouterr().err
    assert "latest_model.pth is truncated or corrupt" in err and "resuming from" in err
    assert records.read_json(run / "run.json")["starts"][1]["iteration"] == 4
    assert [r["it"] for r in records.read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    # both damaged: one clear error, nothing trained
    for path in (latest, prev):
        path.write_bytes(b"not a checkpoint")
    (run / "results.json").unlink()
    assert cli.main(argv + _sets("resume=true")) == 2
    assert "no readable checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_a_refused_resume_leaves_the_run_as_it_was(tmp_path, capsys):
    """issue #14: resuming with another net is refused before config.yaml (or anything else
    of the run's record) is rewritten."""
    argv, run = _digits_run(tmp_path)
    assert cli.main(argv) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert cli.main(argv + _sets("resume=true", "net=wrn_28_2")) == 2
    err = capsys.readouterr().err
    assert "net: 'small_cnn' -> 'wrn_28_2'" in err and len(err) < 400
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # refused by the checkpoint itself (no config.yaml to compare): config.yaml not rewritten
    (run / "config.yaml").unlink()
    before.pop("config.yaml")
    assert cli.main(argv + _sets("resume=true", "net=wrn_28_2")) == 2
    assert "does not fit" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert "config.yaml" not in after and after["run.json"] == before["run.json"]


@pytest.mark.slow
def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, capsys, monkeypatch):
    """issue #13/#14: disk full while a checkpoint is written: one message, exit 1, the
    previous checkpoint intact, no partial file left, results.json says failed."""
    import errno

    import torch

    argv, run = _digits_run(tmp_path)
    real, calls = torch.save, []

    def save(obj, f, *a, **kw):
        calls.append(1)
        if len(calls) == 2:  # the second checkpoint: a full disk after a partial write
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **kw)
    monkeypatch.setattr(torch, "save", save)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot write checkpoint" in err and "No space left" in err
    assert "Traceback" not in err
    assert not list(run.glob("*.tmp"))
    ckpt = torch.load(run / "latest_model.pth", map_location="cpu", weights_only=False)
    assert ckpt["it"] == 2
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "failed" and "No space left" in results["reason"]


@pytest.mark.slow
def test_a_run_is_quiet_on_the_terminal_and_verbose_on_request(tmp_path, capsys):
    """semilearn's log lines go to log.txt only (--verbose: the terminal too), no third-party
    warning is printed, stdout is one JSON line; --debug shows a traceback instead of one
    line. The quiet run is the first command of a fresh interpreter (every import and its
    warnings inside it); the verbose one follows it in the same interpreter (tests/cli_batch.py:
    each its own exit code and output): one start instead of two."""
    from .cli_batch import read_entry, run_batch

    cfg = tmp_path / "digits.yaml"
    cfg.write_text(yaml.safe_dump({"algorithm": "fixmatch_dm", "dataset": "digits",
                                   "num_labels": 20, "in_channels": 1, "device": "cpu"}))

    def train(*extra, save="runs"):
        return ["train", "--config", str(cfg), "--save-dir", str(tmp_path / save),
                *_sets(*TINY), *extra]

    plan = tmp_path / "batch" / "plan.json"
    plan.parent.mkdir()
    batch = run_batch(plan, {"quiet": train(), "loud": train("--verbose", save="loud")})
    assert batch.returncode == 0 and batch.stderr == "", batch.stderr[-2000:]  # imports: silent
    quiet = read_entry(plan, "quiet")
    assert quiet["code"] == 0, quiet["stderr"][-2000:]
    assert quiet["stderr"] == ""                               # no INFO lines, no warnings
    out = json.loads(quiet["stdout"].strip())
    assert out["status"] == "finished" and out["iterations"] == 3
    log = (tmp_path / "runs" / "fixmatch_dm_digits" / "log.txt").read_text()
    assert "INFO] 2 iteration" in log and "results:" in log
    loud = read_entry(plan, "loud")
    assert loud["code"] == 0 and "INFO] 2 iteration" in loud["stderr"]
    assert "Warning" not in loud["stderr"]
    # a run is already there: refused in one line, or with --debug the exception itself (the
    # same code as the process above, in this process: two interpreter starts fewer)
    argv = ["train", "--config", str(cfg), "--save-dir", str(tmp_path / "runs"), *_sets(*TINY)]
    capsys.readouterr()
    assert cli.main(argv) == 2
    again = capsys.readouterr()
    assert again.err.count("\n") == 1 and again.out == ""
    assert again.err.startswith("dm-ssl: error:") and "resume=true" in again.err
    with pytest.raises(ConfigError, match="resume=true"):
        cli.main(argv + ["--debug"])


@pytest.mark.slow
def test_a_shortened_run_fits_epoch_and_intervals_and_says_so(tmp_path, capsys):
    """USB's schedule (2^20 iterations in 1024 epochs, evaluation every 5120) with
    --set num_train_iter=6: epoch and intervals follow, in one line; keys set by the user win."""
    cfg = tmp_path / "usb.yaml"
    cfg.write_text(yaml.safe_dump({"algorithm": "fixmatch", "dataset": "digits",
                                   "num_labels": 20, "in_channels": 1, "num_train_iter": 2**20,
                                   "epoch": 1024, "num_eval_iter": 5120, "num_log_iter": 256,
                                   "device": "cpu"}))
    tiny = [t for t in TINY if not t.startswith(("num_train_iter", "epoch", "num_eval_iter"))]
    assert cli.main(["train", "--config", str(cfg), "--save-dir", str(tmp_path / "a"),
                     *_sets("num_train_iter=6", *tiny)]) == 0
    err = capsys.readouterr().err
    note = [line for line in err.splitlines() if "num_train_iter=6" in line]
    assert len(note) == 1 and "epoch=1" in note[0] and "num_eval_iter=6" in note[0]
    run = tmp_path / "a" / "fixmatch_digits"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["epoch"], saved["num_eval_iter"], saved["num_log_iter"]) == (1, 6, 6)
    assert json.loads((run / "results.json").read_text())["iterations"] == 6
    # the user's own epoch is kept (and checked): 4 does not divide 6
    assert cli.main(["train", "--config", str(cfg), "--save-dir", str(tmp_path / "b"),
                     *_sets("num_train_iter=6", "epoch=4", *tiny)]) == 2
    assert "'epoch' (4) must divide" in capsys.readouterr().err
    # a schedule that already fits is left alone, without a note
    out, note = shorten_schedule({"num_train_iter": 100, "epoch": 1}, {"num_train_iter": 50,
                                     "epoch": 1, "num_eval_iter": 10}, {"num_train_iter"})
    assert note is None and out["epoch"] == 1
    out, _ = shorten_schedule({"num_train_iter": 10240, "epoch": 10},
                                  {"num_train_iter": 3072, "epoch": 10}, {"num_train_iter"})
    assert out["epoch"] == 3                        # 1024 iterations per epoch, as the file


@pytest.mark.slow
def test_eval_needs_neither_the_imagenet_file_nor_the_training_directory(tmp_path, capsys,
                                                                         monkeypatch):
    """config.yaml records paths absolute, and eval rebuilds the net without the ImageNet
    weights (the checkpoint holds every weight): it runs from another directory after the
    weights file is gone, and leaves the run directory as it was."""
    import hashlib

    import torch
    import torchvision

    monkeypatch.chdir(tmp_path)
    write_cifar10(tmp_path / "data", per_batch=20)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    cfg = {"algorithm": "supervised_mixup", "dataset": "cifar10", "net": "resnet18",
           "data_dir": "data",
           "pretrained_path": "r18.pth", "num_train_iter": 2, "epoch": 1, "num_eval_iter": 2,
           "batch_size": 8, "eval_batch_size": 64, "num_workers": 0, "progress": False,
           "device": "cpu"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["train", "--config", "c.yaml", "--save-dir", "runs"]) == 0
    run = tmp_path / "runs" / "supervised_mixup_cifar10"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["pretrained_path"] == str(tmp_path / "r18.pth")
    assert saved["data_dir"] == str(tmp_path / "data")
    (tmp_path / "r18.pth").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    def state():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*")
                if p.is_file()}

    before = state()
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(run / "latest_model.pth"), "--occlusion"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((run / "results.json").read_text())
    assert out["top1"] == pytest.approx(results["final_acc"])
    assert state() == before


def test_robustness_measures_read_the_centre_of_ten_crops():
    """A ten-crop evaluation set (ten_crop: true, the transfer configs) gives FGSM / mixed /
    occlusion its centre crop (torchvision's TenCrop order: tl, tr, bl, br, centre, ...)."""
    import torch

    crops = torch.arange(10.0).view(1, 10, 1, 1, 1).expand(2, 10, 3, 4, 4)
    (x, y), = eval_views([{"x_lb": crops, "y_lb": torch.tensor([1, 2])}], "cpu")
    assert x.shape == (2, 3, 4, 4) and (x == 4).all() and y.tolist() == [1, 2]
    plain = torch.randn(2, 3, 4, 4)
    (x, _), = eval_views([{"x_lb": plain, "y_lb": torch.tensor([0, 0])}], "cpu")
    assert torch.equal(x, plain)


@pytest.mark.slow
def test_a_run_that_scores_zero_still_has_a_best_checkpoint(tmp_path, monkeypatch):
    """semilearn keeps an evaluation only if it beats 0.0: a run scoring 0 % everywhere (a
    broken first try, a tiny debug run) used to write no model_best.pth and report best_it 1.
    The first evaluation is now the best so far."""
    cfg = validate({"algorithm": "supervised_mixup", "dataset": "digits", "in_channels": 1,
                        "net": "small_cnn", "num_train_iter": 4, "epoch": 1, "num_eval_iter": 2,
                        "batch_size": 8, "eval_batch_size": 64, "num_workers": 0,
                        "progress": False, "device": "cpu", "save_dir": str(tmp_path)})
    alg, _, run = prepare_run(cfg)
    real = alg.evaluate
    monkeypatch.setattr(alg, "evaluate", lambda *a, **k: {**real(*a, **k), "eval/top-1-acc": 0.0})
    alg.train()
    assert (alg.best_eval_acc, alg.best_it) == (0.0, 1)       # the first evaluation, it 2
    assert (run / "model_best.pth").is_file()


@pytest.mark.slow
def test_softmatch_checkpoints_evaluate_and_resume(tmp_path, capsys):
    """SoftMatch's get_save_dict reads DistAlignHook.p_model, None on a freshly built model:
    listing the keys to restore used to fail every eval and resume of softmatch(_dm). And
    semilearn's print of its p_target stays off stdout (dm-ssl's one JSON line)."""
    cfg = {"algorithm": "softmatch_dm", "dataset": "digits", "num_labels": 20, "in_channels": 1,
           "net": "small_cnn", "num_train_iter": 2, "epoch": 1, "num_eval_iter": 2,
           "batch_size": 4, "uratio": 2, "eval_batch_size": 64, "num_workers": 0,
           "progress": False, "device": "cpu"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    argv = ["train", "--config", str(path), "--save-dir", str(tmp_path / "runs")]
    capsys.readouterr()
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and json.loads(out[0])["status"] == "finished"
    run = tmp_path / "runs" / "softmatch_dm_digits"
    assert cli.main(["eval", "--checkpoint", str(run / "latest_model.pth")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["iteration"] == 2
    assert cli.main(argv + ["--set", "resume=true", "--set", "num_train_iter=4"]) == 0
    assert json.loads((run / "results.json").read_text())["iterations"] == 4

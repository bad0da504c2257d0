"""The config grids of the paper's experiments: one source for ``configs/`` (spec §6, §7).

    .venv/bin/python scripts/make_configs.py      # rewrites configs/{ssl,transfer,supervised}

:func:`all_configs` gives every shipped config by its path under ``configs/``;
:mod:`dm_ssl.experiments.tables` builds the paper's tables from the same functions.

SSL (``configs/ssl/``):
    .venv/bin/python scripts/make_ssl_configs.py      # rewrites configs/ssl/*.yaml

USB's classic-CV protocol (spec §7, docs/usb-notes.md): 2^20 iterations, SGD lr 0.03 (cosine),
momentum 0.9, nesterov, wd 5e-4 (CIFAR-100: 1e-3), EMA 0.999, batch 64, uratio 7, threshold
0.95, evaluation every 5120 iterations. CIFAR-10 uses WRN-28-2; CIFAR-100 uses WRN-28-8 (the
paper and TorchSSL) and, as ``*_wrn28x2.yaml``, WRN-28-2 (USB's own published table).

Transfer (``configs/transfer/``):
    .venv/bin/python scripts/make_transfer_configs.py      # rewrites configs/transfer/*.yaml

{CUB-200-2011, Stanford Cars, FGVC-Aircraft} × {15, 30, 50 % labels} × {selftuning,
selftuning_dm, fixmatch, fixmatch_dm} for ImageNet-pretrained ResNet-50 and ResNet-18, with the
Self-Tuning recipe: 27k steps, SGD lr 1e-3 (classifier ×10), momentum 0.9, nesterov, wd 5e-4
(the paper; the official code used 1e-4), batch 24 labeled + 24 unlabeled, Resize 256 →
RandomResizedCrop 224 → flip, test Resize 256 → TenCrop 224 (the official numbers are 10-crop).
Self-Tuning's configs follow the official run: MultiStepLR (6k/12k/18k/24k, γ 0.1),
RandAugment (2, 10) on all four views, two momentum updates per step (m²), classifier
N(0, 0.01). Weights come from ``pretrained_path`` or the torch hub cache; nothing is downloaded.

Supervised (``configs/supervised/``):
    .venv/bin/python scripts/make_supervised_configs.py      # rewrites configs/supervised/*.yaml

Recipes (spec §7): SGD momentum 0.9, cosine to 0, batch 100, wd 1e-4, RandomFlip + RandomCrop
pad 4; CIFAR-100 lr 0.1 for 800 epochs (Table A2) or 400 (A7), Tiny-ImageNet lr 0.2 for 400
epochs; data-efficient CIFAR-100 at 15/30/50 % labels (A8, 400 epochs); fine-grained CUB-200 /
FGVC-Aircraft from ImageNet weights, 200 epochs, lr 0.001, wd 5e-4, batch 16 (A6). DM(CE) uses
η = 0.1 (static mixers, CIFAR-100; ResNeXt-50) or 1 (ResNet-18 on Tiny-ImageNet and
fine-grained) and, with DM, α = 0.2 (spec §3, appendix B.3); MCE baselines use each mixer's
usual α. PuzzleMix (dynamic, Table A2): MCE with α = 1, DM(CE) with η = 1 and α = 2.

ImageNet-1k (Table A1, spec §7), ``configs/supervised/imagenet/``, from timm's parts:
- PyTorch-style: SGD lr 0.1, batch 256, wd 1e-4, 100 epochs, cosine; RandomResizedCrop 224 +
  flip; ResNet-18/34/50 × Mixup / CutMix (α 0.2) × MCE / DM(CE) (η 0.1);
- DeiT: timm ``adamw`` lr 1e-3, batch 1024, wd 0.05, 300 epochs, 5 warm-up epochs from 1e-6,
  cosine to 1e-5, RandAugment ``rand-m9-mstd0.5-inc1``, random erasing 0.25, repeated
  augmentation ×3, Mixup 0.8 / CutMix 1.0 switched with p 0.5, label smoothing 0.1, EMA
  0.99996, bicubic, drop-path 0.1 (DeiT-S) / 0.2 (Swin-T); MCE / DM(CE) (η 0.1);
- RSB A3: timm ``lamb`` lr 8e-3, batch 2048, wd 0.02, 100 epochs, 5 warm-up epochs, cosine,
  train 160 / test 224 (crop 0.95), ``rand-m6-mstd0.5-inc1``, Mixup 0.1 / CutMix 1.0 switched
  with p 0.5, BCE with target threshold 0.2 averaged over classes (timm's), bicubic, drop-path
  0.05, no EMA; ResNet-18/34/50 × MBCE / DM(BCE).
DM variants use α = 0.2 for Mixup and CutMix (spec §3, B.3), the baselines the recipe's α.

Learned mixers (AutoMix, SAMix; spec §5.1) in the rows of Tables A2, A3, A4, A6 and A7, with
OpenMixup's settings: α = 2 for MCE and DM(CE) (η = 1), a separate mix head (N(0, 0.01)) next
to the classifier's head trained on the clean batch (``mix_clean_weight`` 1), CIFAR / Tiny-ImageNet
SGD cosine to ``min_lr`` 0.05 (WRN-28-8: 1e-3); ImageNet and fine-grained: the Mix Block with
λ concatenated (``lam_concat``), momentum to 0.99999, the mask-loss weight cosine-annealed to 0,
fine-grained Mix Block lr 10× the backbone's. DeiT-S / Swin-T (Table A5) are not generated: a
Mix Block reads a feature map (N, C, h, w) and timm's ViT blocks give tokens.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import yaml

CONFIGS_ROOT = Path(__file__).resolve().parents[2] / "configs"
SPLITS = {"cifar10": (10, (40, 250, 4000)), "cifar100": (100, (400, 2500, 10000))}
HOST_KEYS = {
    "fixmatch": {"hard_label": True, "T": 0.5, "p_cutoff": 0.95},
    "flexmatch": {"hard_label": True, "T": 0.5, "p_cutoff": 0.95, "thresh_warmup": True},
    "freematch": {"hard_label": True, "T": 0.5, "ema_p": 0.999, "ent_loss_ratio": 0.001,
                  "use_quantile": False, "clip_thresh": False},
    "softmatch": {"hard_label": True, "T": 0.5, "dist_align": True, "dist_uniform": True,
                  "ema_p": 0.999, "n_sigma": 2, "per_class": False},
}
DM_KEYS = {  # spec §6.1, the official defaults
    "dm_w_ll": 1.0, "dm_w_lu": 1.0, "dm_mixer": "mixup", "dm_alpha": 1.0, "dm_loss": "dm_ce",
    "dm_eta": 1.0, "dm_mode": "both", "dm_thr": 0.5, "dm_scale": "pow", "dm_t": 1.0,
    "dm_k": 1.0, "dm_p_mix_cutoff": None, "dm_mask": "auto", "dm_head": "separate",
    # what OpenMixup's DMixMatch does (README: Differences from the official code)
    "dm_ramp_ll": "none", "dm_ramp_lu": "cosine", "dm_bias_ll": True, "dm_bn": "freeze",
    "dm_forward": "separate", "dm_head_init": "normal", "dm_pseudo": "ema",
}
#: where the shipped SSL DM configs leave the official values (issue #27): L_ll's weight ramps
#: like L_lu's. Measured, 5 seeds on two data sets (docs/results.md, "Should the paper configs
#: ramp L_ll?"): the ramp gained 1.2 points on average and kept more pseudo-labels on both.
#: ``dm_ramp_ll: none`` restores the official run.
SSL_DM_DEVIATIONS = {"dm_ramp_ll": "cosine"}


def ssl_config(alg: str, dataset: str, num_labels: int, net: str, seed: int = 0) -> dict:
    host = alg.removesuffix("_dm")
    num_classes = SPLITS[dataset][0]
    suffix = "_wrn28x2" if dataset == "cifar100" and net == "wrn_28_2" else ""
    name = f"{alg}_{dataset}_{num_labels}{suffix}_{seed}"
    cfg = {
        "algorithm": alg, "save_dir": "./saved_models/ssl", "save_name": name, "resume": False,
        "use_tensorboard": True,
        "epoch": 1024, "num_train_iter": 1048576, "num_eval_iter": 5120, "num_log_iter": 256,
        "num_labels": num_labels, "batch_size": 64, "eval_batch_size": 256, "uratio": 7,
        "ulb_loss_ratio": 1.0, "ema_m": 0.999,
        **HOST_KEYS[host],
        "crop_ratio": 0.875, "img_size": 32,
        "optim": "SGD", "lr": 0.03, "momentum": 0.9,
        "weight_decay": 0.001 if dataset == "cifar100" else 0.0005, "layer_decay": 1.0,
        "amp": False, "clip_grad": 0.0, "use_cat": True,
        "net": net, "net_from_name": False,
        "data_dir": "./data", "dataset": dataset, "num_classes": num_classes,
        "train_sampler": "RandomSampler", "num_workers": 4, "seed": seed,
    }
    if alg.endswith("_dm"):
        cfg.update(DM_KEYS, **SSL_DM_DEVIATIONS)
    return cfg




def dataset_entry(name: str) -> Any:
    """The registry entry of ``name`` (:data:`dm_ssl.data.registry.DATASETS`: class count,
    training-set size, display name; imported on use, it imports torchvision)."""
    from dm_ssl.data.registry import get_dataset

    return get_dataset(name)


def transfer_datasets() -> Tuple[str, ...]:
    """The fine-grained transfer datasets of the registry (CUB-200, Cars, Aircraft)."""
    from dm_ssl.data.registry import names

    return names("transfer")


PERCENTS = (15, 30, 50)
NETS = {"resnet50": "r50", "resnet18": "r18"}
ST_KEYS = {"st_tau": 0.07, "st_momentum": 0.999, "st_queue_size": 32, "st_proj_dim": 1024,
           "st_projector": "linear", "st_head_lr_mult": 10.0, "p_cutoff": 0.95,
           # the official run (thuml/Self-Tuning src/main.py, data/tranforms.py)
           "st_lr_schedule": "multistep", "st_lr_milestones": [6000, 12000, 18000, 24000],
           "st_lr_gamma": 0.1, "st_momentum_updates": 2, "st_classifier_init": "normal",
           "randaugment": True, "randaugment_views": "all", "randaugment_n": 2,
           "randaugment_m": 10}


def transfer_config(alg: str, dataset: str, percent: int, net: str, seed: int = 0) -> dict:
    host = alg.removesuffix("_dm")
    name = f"{alg}_{dataset}_{percent}_{NETS[net]}_{seed}"
    cfg = {
        "algorithm": alg, "save_dir": "./saved_models/transfer", "save_name": name,
        "resume": False, "use_tensorboard": True,
        "epoch": 27, "num_train_iter": 27000, "num_eval_iter": 1000, "num_log_iter": 100,
        "dataset": dataset, "data_dir": "./data", "label_percent": percent,
        "num_classes": dataset_entry(dataset).num_classes, "resize": 256, "img_size": 224,
        "ten_crop": True,
        "randaugment": host == "fixmatch",
        "batch_size": 24, "uratio": 1, "eval_batch_size": 64, "ema_m": 0.0,
        "net": net, "use_pretrain": True, "pretrained_path": None,
        "optim": "SGD", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0005,
        "num_workers": 4, "seed": seed,
    }
    cfg.update(ST_KEYS if host == "selftuning" else HOST_KEYS[host])
    if alg.endswith("_dm"):
        # no EMA teacher here (ema_m 0, as Self-Tuning): L_lu's pseudo-labels are the host's
        cfg.update(DM_KEYS, dm_pseudo="host")
    return cfg


ALPHA = {"mixup": 1.0, "cutmix": 0.2, "manifoldmix": 2.0, "saliencymix": 0.2, "fmix": 0.2,
         "resizemix": 1.0}
STATIC = tuple(ALPHA)
DYNAMIC_ALPHA = {"puzzlemix": 1.0}  # the official PuzzleMix CIFAR setting
LEARNED = ("automix", "samix")
IMAGENET_NETS = ("resnet18", "resnet34", "resnet50")


def sup_config(dataset: str, net: str, mixer: str, loss: str, epochs: int, lr: float,
           batch: int = 100, wd: float = 1e-4, percent: int = 0, eta: float = 0.1,
           tag: str = "") -> dict:
    entry = dataset_entry(dataset)
    n = entry.train_size * (percent or 100) // 100
    per_epoch = math.ceil(n / batch)
    finegrained = entry.transfer is not None
    name = f"{dataset}_{net}_{mixer}_{loss}{tag}"
    cfg = {
        "algorithm": "supervised_mixup", "save_dir": "./saved_models/supervised",
        "save_name": name + "_0", "dataset": dataset, "data_dir": "./data",
        "num_classes": entry.num_classes, "net": net, "epoch": epochs,
        "num_train_iter": epochs * per_epoch, "num_eval_iter": 10 * per_epoch,
        "num_log_iter": per_epoch, "batch_size": batch, "eval_batch_size": 256, "ema_m": 0.0,
        "optim": "SGD", "lr": lr, "momentum": 0.9, "weight_decay": wd, "num_workers": 4,
        "seed": 0,
        "mix_mixers": mixer, "mix_loss": loss,
        "mix_alpha": str(dm_alpha(loss, str(ALPHA.get(mixer, DYNAMIC_ALPHA.get(mixer))),
                                  dynamic=mixer in DYNAMIC_ALPHA)),
    }
    if loss == "dm_ce":
        cfg.update(mix_eta=eta, mix_mode="both", mix_scale="none")
    if mixer in LEARNED:
        cfg.update(learned_keys(dataset, net, mixer, lr))
    if mixer == "puzzlemix":  # its data-smoothness term on the [0, 1] pixel scale, as official
        cfg["mix_options"] = {"puzzlemix": {"pixel_std": pixel_std(dataset)}}
    if percent:
        cfg["subset_percent"] = percent
    if finegrained:
        cfg.update(label_percent=100, use_pretrain=True, pretrained_path=None, img_size=224)
    return cfg


def supervised_configs():
    for loss in ("mce", "dm_ce"):
        for mixer in STATIC:  # Table A2: CIFAR-100 800 epochs, Tiny-ImageNet 400 epochs
            yield sup_config("cifar100", "cifar_resnet18", mixer, loss, 800, 0.1, tag="_800ep")
            yield sup_config("cifar100", "cifar_resnext50", mixer, loss, 800, 0.1, tag="_800ep")
            yield sup_config("tinyimagenet", "cifar_resnet18", mixer, loss, 400, 0.2, eta=1.0,
                         tag="_400ep")
        for mixer in DYNAMIC_ALPHA:  # Table A2, dynamic mixers: DM(CE) with η = 1, α = 2
            for net in ("cifar_resnet18", "cifar_resnext50"):
                yield sup_config("cifar100", net, mixer, loss, 800, 0.1, eta=1.0, tag="_800ep")
            yield sup_config("tinyimagenet", "cifar_resnet18", mixer, loss, 400, 0.2, eta=1.0,
                         tag="_400ep")
        for mixer in LEARNED + ("saliencymix", "puzzlemix"):  # A2 rows not above
            for net in (("cifar_resnet18", "cifar_resnext50", "wrn_28_8") if mixer in LEARNED
                        else ("wrn_28_8",)):
                yield sup_config("cifar100", net, mixer, loss, 800, 0.1, eta=1.0, tag="_800ep")
            for net in (("cifar_resnet18", "cifar_resnext50") if mixer in LEARNED
                        else ("cifar_resnext50",)):
                yield sup_config("tinyimagenet", net, mixer, loss, 400, 0.2, eta=1.0,
                             tag="_400ep")
        for mixer in LEARNED:  # Table A7: CIFAR-100 and Tiny-ImageNet R-18 400 epochs
            yield sup_config("cifar100", "cifar_resnet18", mixer, loss, 400, 0.1, eta=1.0,
                         tag="_400ep")
        for mixer in ("mixup", "cutmix", "manifoldmix"):  # Table A7: 400 epochs
            yield sup_config("cifar100", "cifar_resnet18", mixer, loss, 400, 0.1, tag="_400ep")
        for mixer in ("mixup", "cutmix"):  # Table A8: data-efficient
            for pct in (15, 30, 50):
                yield sup_config("cifar100", "cifar_resnet18", mixer, loss, 400, 0.1, percent=pct,
                             tag=f"_{pct}pct")
        for dataset in ("cub200", "fgvc_aircraft"):  # Table A6: fine-grained
            for net, eta in (("resnet18", 1.0), ("resnext50_32x4d", 0.1)):
                for mixer in STATIC:
                    yield sup_config(dataset, net, mixer, loss, 200, 0.001, batch=16, wd=5e-4,
                                 eta=eta)
                for mixer in LEARNED:  # dynamic: η = 1
                    yield sup_config(dataset, net, mixer, loss, 200, 0.001, batch=16, wd=5e-4,
                                 eta=1.0)


def imagenet(recipe: str, net: str, loss: str, mixers: str, alpha: str, epochs: int,
             batch: int, **extra) -> dict:
    """One ImageNet-1k config (spec §7); batches are global, semilearn drops the last one."""
    per_epoch = dataset_entry("imagenet").train_size // batch
    model = {"deit_small_patch16_224": "deit_s", "swin_tiny_patch4_window7_224": "swin_t"
             }.get(net, net)
    name = f"imagenet_{model}_{recipe}_{mixers.replace(',', '_')}_{loss}"
    cfg = {
        "algorithm": "supervised_mixup", "save_dir": "./saved_models/supervised",
        "save_name": name + "_0", "dataset": "imagenet", "data_dir": "./data/imagenet",
        "num_classes": 1000, "net": f"timm/{net}", "img_size": 224, "epoch": epochs,
        "num_train_iter": epochs * per_epoch, "num_eval_iter": per_epoch, "num_log_iter": 100,
        "batch_size": batch, "eval_batch_size": 256, "ema_m": 0.0, "amp": True,
        "num_workers": 8, "seed": 0, "mix_mixers": mixers, "mix_alpha": alpha,
        "mix_switch_prob": 0.5, "mix_loss": loss,
    }
    if loss == "dm_ce":
        cfg.update(mix_eta=0.1, mix_mode="both", mix_scale="none")
    cfg.update(extra)
    if "num_warmup_epochs" in cfg:
        cfg["num_warmup_iter"] = cfg.pop("num_warmup_epochs") * per_epoch
    return cfg


def learned_keys(dataset: str, net: str, mixer: str, lr: float) -> dict:
    """OpenMixup's AutoMix / SAMix settings for a dataset (module docstring)."""
    keys = {"mix_alpha": "2.0", "mix_clean_weight": 1.0, "mix_head": "separate",
            "mix_head_init": "normal"}
    if dataset in ("cifar100", "tinyimagenet"):
        keys["min_lr"] = 1e-3 if net == "wrn_28_8" else 0.05   # "mlr5e_2" / "mlr1e_3"
    else:  # ImageNet and fine-grained: λ concatenated, 0.99999, annealed mask loss
        options = {"end_momentum": 0.99999, "mask_loss_decay": "cosine"}
        if mixer == "automix":
            options["lam_concat"] = True
        keys["mix_options"] = {mixer: options}
        if dataset in ("cub200", "fgvc_aircraft"):
            keys["mix_block_lr_mult"] = 10.0                   # Mix Block lr 0.01 vs 0.001
    return keys


def pixel_std(dataset: str) -> list:
    """The per-channel std the dataset's images are normalised with (dm_ssl.data)."""
    from dm_ssl.data.supervised import get_supervised_spec

    return [round(v, 4) for v in get_supervised_spec(dataset).std]


def dm_alpha(loss: str, recipe: str, dynamic: bool = False) -> str:
    """Spec §3 (appendix B.3): with DM, static mixers use α = 0.2 and dynamic ones α = 2;
    baselines keep the recipe's α."""
    if not loss.startswith("dm_"):
        return recipe
    return "2.0" if dynamic else "0.2"


def imagenet_configs():
    for loss in ("mce", "dm_ce"):
        for net in IMAGENET_NETS:  # PyTorch-style
            for mixer in ("mixup", "cutmix"):
                yield imagenet("pytorch", net, loss, mixer, "0.2", 100, 256, optim="SGD",
                               lr=0.1, momentum=0.9, weight_decay=1e-4)
            for mixer in LEARNED:  # Table A3: η = 1, α = 2
                yield imagenet("pytorch", net, loss, mixer, "2.0", 100, 256, optim="SGD",
                               lr=0.1, momentum=0.9, weight_decay=1e-4,
                               **learned_keys("imagenet", net, mixer, 0.1),
                               **({"mix_eta": 1.0} if loss == "dm_ce" else {}))
        for net, drop_path in (("deit_small_patch16_224", 0.1),
                               ("swin_tiny_patch4_window7_224", 0.2)):  # DeiT
            deit = dict(optim="adamw", lr=1e-3, weight_decay=0.05, num_warmup_epochs=5,
                        warmup_lr=1e-6, min_lr=1e-5, auto_augment="rand-m9-mstd0.5-inc1",
                        reprob=0.25, repeated_aug=3, mix_label_smoothing=0.1,
                        ema_m=0.99996, interpolation="bicubic",
                        net_options={"drop_path_rate": drop_path})
            yield imagenet("deit", net, loss, "mixup,cutmix", dm_alpha(loss, "0.8,1.0"), 300,
                           1024, **deit)
            for mixer in LEARNED:  # Table A5: η = 1, α = 2, OpenMixup's ViT AutoMix settings
                keys = learned_keys("imagenet", net, mixer, 1e-3)
                keys["mix_options"][mixer].update(switch_off=0.8, momentum_scope=[0.25, 1.0])
                yield imagenet("deit", net, loss, mixer, "2.0", 300, 1024,
                               **{**deit, **keys},
                               **({"mix_eta": 1.0} if loss == "dm_ce" else {}))
    for loss in ("mbce", "dm_bce"):
        for net in IMAGENET_NETS:  # RSB A3
            yield imagenet("rsb_a3", net, loss, "mixup,cutmix", dm_alpha(loss, "0.1,1.0"), 100,
                           2048,
                           optim="lamb", lr=8e-3, weight_decay=0.02, num_warmup_epochs=5,
                           img_size=160, eval_img_size=224, crop_pct=0.95,
                           auto_augment="rand-m6-mstd0.5-inc1", interpolation="bicubic",
                           mix_bce_threshold=0.2, mix_bce_class_reduction="mean",
                           **({"mix_bce_mode": "one"} if loss == "mbce" else {}),
                           net_options={"drop_path_rate": 0.05})
        for mixer in LEARNED:  # Table A4: RSB A3 ResNet-50 with a learned mixer
            yield imagenet("rsb_a3", "resnet50", loss, mixer, "2.0", 100, 2048,
                           optim="lamb", lr=8e-3, weight_decay=0.02, num_warmup_epochs=5,
                           img_size=160, eval_img_size=224, crop_pct=0.95,
                           auto_augment="rand-m6-mstd0.5-inc1", interpolation="bicubic",
                           mix_bce_threshold=0.2, mix_bce_class_reduction="mean",
                           **({"mix_bce_mode": "one"} if loss == "mbce" else {}),
                           **learned_keys("imagenet", "resnet50", mixer, 8e-3),
                           net_options={"drop_path_rate": 0.05})


def ssl_configs() -> Iterator[dict]:
    for dataset, (_, splits) in SPLITS.items():
        for net in (["wrn_28_2"] if dataset == "cifar10" else ["wrn_28_8", "wrn_28_2"]):
            for num_labels in splits:
                for host in HOST_KEYS:
                    for alg in (host, f"{host}_dm"):
                        yield ssl_config(alg, dataset, num_labels, net)


def transfer_configs() -> Iterator[dict]:
    for dataset in transfer_datasets():
        for percent in PERCENTS:
            for net in NETS:
                for host in ("selftuning", "fixmatch"):
                    for alg in (host, f"{host}_dm"):
                        yield transfer_config(alg, dataset, percent, net)


def config_path(kind: str, cfg: dict) -> str:
    """A config's path under ``configs/``: ``<kind>/<dataset>/<save_name without _0>.yaml``."""
    return f"{kind}/{cfg['dataset']}/{cfg['save_name'].removesuffix('_0')}.yaml"


def all_configs() -> Dict[str, dict]:
    """Every shipped config by its path under ``configs/``."""
    out: Dict[str, dict] = {}
    for kind, configs in (("ssl", ssl_configs()), ("transfer", transfer_configs()),
                          ("supervised", [*supervised_configs(), *imagenet_configs()])):
        for cfg in configs:
            out[config_path(kind, cfg)] = cfg
    return out


def render(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


def write_configs(root: Path = CONFIGS_ROOT) -> Tuple[int, int]:
    """Write :func:`all_configs` under ``root``; returns (written, unchanged)."""
    written = unchanged = 0
    for rel, cfg in all_configs().items():
        path = Path(root) / rel
        text = render(cfg)
        if path.is_file() and path.read_text() == text:
            unchanged += 1
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written += 1
    return written, unchanged

#!/usr/bin/env python
"""Write configs/supervised/: supervised and data-efficient mixup, MCE and DM(CE) (spec §6.3, §7).

    .venv/bin/python scripts/make_supervised_configs.py      # rewrites configs/supervised/*.yaml

Recipes (spec §7): SGD momentum 0.9, cosine to 0, batch 100, wd 1e-4, RandomFlip + RandomCrop
pad 4; CIFAR-100 lr 0.1 for 800 epochs (Table A2) or 400 (A7), Tiny-ImageNet lr 0.2 for 400
epochs; data-efficient CIFAR-100 at 15/30/50 % labels (A8, 400 epochs); fine-grained CUB-200 /
FGVC-Aircraft from ImageNet weights, 200 epochs, lr 0.001, wd 5e-4, batch 16 (A6). DM(CE) uses
η = 0.1 (static mixers, CIFAR-100; ResNeXt-50) or 1 (ResNet-18 on Tiny-ImageNet and
fine-grained) and, with DM, α = 0.2 (spec §3, appendix B.3); MCE baselines use each mixer's
usual α. The ImageNet recipes (DeiT, RSB) and the dynamic mixers are not generated yet.
"""

from __future__ import annotations

import math
from pathlib import Path

from make_ssl_configs import write

ROOT = Path(__file__).resolve().parents[1] / "configs" / "supervised"
ALPHA = {"mixup": 1.0, "cutmix": 0.2, "manifoldmix": 2.0, "saliencymix": 0.2, "fmix": 0.2,
         "resizemix": 1.0}
STATIC = tuple(ALPHA)
TRAIN_SIZE = {"cifar100": 50000, "tinyimagenet": 100000, "cub200": 5994, "fgvc_aircraft": 6667}
CLASSES = {"cifar100": 100, "tinyimagenet": 200, "cub200": 200, "fgvc_aircraft": 100}


def config(dataset: str, net: str, mixer: str, loss: str, epochs: int, lr: float,
           batch: int = 100, wd: float = 1e-4, percent: int = 0, eta: float = 0.1,
           tag: str = "") -> dict:
    n = TRAIN_SIZE[dataset] * (percent or 100) // 100
    per_epoch = math.ceil(n / batch)
    finegrained = dataset in ("cub200", "fgvc_aircraft")
    name = f"{dataset}_{net}_{mixer}_{loss}{tag}"
    cfg = {
        "algorithm": "supervised_mixup", "save_dir": "./saved_models/supervised",
        "save_name": name + "_0", "dataset": dataset, "data_dir": "./data",
        "num_classes": CLASSES[dataset], "net": net, "epoch": epochs,
        "num_train_iter": epochs * per_epoch, "num_eval_iter": 10 * per_epoch,
        "num_log_iter": per_epoch, "batch_size": batch, "eval_batch_size": 256, "ema_m": 0.0,
        "optim": "SGD", "lr": lr, "momentum": 0.9, "weight_decay": wd, "num_workers": 4,
        "seed": 0,
        "mix_mixers": mixer, "mix_loss": loss,
        "mix_alpha": str(0.2 if loss == "dm_ce" else ALPHA[mixer]),
    }
    if loss == "dm_ce":
        cfg.update(mix_eta=eta, mix_mode="both", mix_scale="none")
    if percent:
        cfg["subset_percent"] = percent
    if finegrained:
        cfg.update(label_percent=100, use_pretrain=True, pretrained_path=None, img_size=224)
    return cfg


def configs():
    for loss in ("mce", "dm_ce"):
        for mixer in STATIC:  # Table A2: CIFAR-100 800 epochs, Tiny-ImageNet 400 epochs
            yield config("cifar100", "cifar_resnet18", mixer, loss, 800, 0.1, tag="_800ep")
            yield config("cifar100", "cifar_resnext50", mixer, loss, 800, 0.1, tag="_800ep")
            yield config("tinyimagenet", "cifar_resnet18", mixer, loss, 400, 0.2, eta=1.0,
                         tag="_400ep")
        for mixer in ("mixup", "cutmix", "manifoldmix"):  # Table A7: 400 epochs
            yield config("cifar100", "cifar_resnet18", mixer, loss, 400, 0.1, tag="_400ep")
        for mixer in ("mixup", "cutmix"):  # Table A8: data-efficient
            for pct in (15, 30, 50):
                yield config("cifar100", "cifar_resnet18", mixer, loss, 400, 0.1, percent=pct,
                             tag=f"_{pct}pct")
        for dataset in ("cub200", "fgvc_aircraft"):  # Table A6: fine-grained
            for net, eta in (("resnet18", 1.0), ("resnext50_32x4d", 0.1)):
                for mixer in STATIC:
                    yield config(dataset, net, mixer, loss, 200, 0.001, batch=16, wd=5e-4,
                                 eta=eta)


def main() -> None:
    write(ROOT, configs())


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Write configs/transfer/: semi-supervised fine-grained transfer (spec §6.2, §7).

    .venv/bin/python scripts/make_transfer_configs.py      # rewrites configs/transfer/*.yaml

{CUB-200-2011, Stanford Cars, FGVC-Aircraft} × {15, 30, 50 % labels} × {selftuning,
selftuning_dm, fixmatch, fixmatch_dm} for ImageNet-pretrained ResNet-50 and ResNet-18, with the
Self-Tuning recipe: 27k steps, SGD lr 1e-3 (classifier ×10), momentum 0.9, nesterov, wd 5e-4
(the paper; the official code used 1e-4), batch 24 labeled + 24 unlabeled, Resize 256 →
RandomResizedCrop 224 → flip, test Resize 256 → TenCrop 224 (the official numbers are 10-crop).
Self-Tuning's configs follow the official run: MultiStepLR (6k/12k/18k/24k, γ 0.1),
RandAugment (2, 10) on all four views, two momentum updates per step (m²), classifier
N(0, 0.01). Weights come from ``pretrained_path`` or the torch hub cache; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from make_ssl_configs import DM_KEYS, HOST_KEYS, write  # noqa: E402  (same folder)

ROOT = Path(__file__).resolve().parents[1] / "configs" / "transfer"
DATASETS = {"cub200": 200, "stanford_cars": 196, "fgvc_aircraft": 100}
PERCENTS = (15, 30, 50)
NETS = {"resnet50": "r50", "resnet18": "r18"}
ST_KEYS = {"st_tau": 0.07, "st_momentum": 0.999, "st_queue_size": 32, "st_proj_dim": 1024,
           "st_projector": "linear", "st_head_lr_mult": 10.0, "p_cutoff": 0.95,
           # the official run (thuml/Self-Tuning src/main.py, data/tranforms.py)
           "st_lr_schedule": "multistep", "st_lr_milestones": [6000, 12000, 18000, 24000],
           "st_lr_gamma": 0.1, "st_momentum_updates": 2, "st_classifier_init": "normal",
           "randaugment": True, "randaugment_views": "all", "randaugment_n": 2,
           "randaugment_m": 10}


def config(alg: str, dataset: str, percent: int, net: str, seed: int = 0) -> dict:
    host = alg.removesuffix("_dm")
    name = f"{alg}_{dataset}_{percent}_{NETS[net]}_{seed}"
    cfg = {
        "algorithm": alg, "save_dir": "./saved_models/transfer", "save_name": name,
        "resume": False, "use_tensorboard": True,
        "epoch": 27, "num_train_iter": 27000, "num_eval_iter": 1000, "num_log_iter": 100,
        "dataset": dataset, "data_dir": "./data", "label_percent": percent,
        "num_classes": DATASETS[dataset], "resize": 256, "img_size": 224, "ten_crop": True,
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


def main() -> None:
    write(ROOT, (config(alg, dataset, percent, net)
                 for dataset in DATASETS for percent in PERCENTS for net in NETS
                 for host in ("selftuning", "fixmatch") for alg in (host, f"{host}_dm")))


if __name__ == "__main__":
    main()

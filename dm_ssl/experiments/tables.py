"""The paper's tables, and the repository's own small experiments, as data.

A :class:`Table` is settings (rows) × methods (columns) × seeds; each :class:`Cell` holds the
full config of one run (from :mod:`~dm_ssl.experiments.grids`, the source of ``configs/``, plus
the cell's own keys) and the reference number for it: the paper's top-1 (%) where the spec
(§9) gives it, the README's measured number for the repository's own experiments, else none.

    from dm_ssl.experiments.tables import get_table, TABLES
    table = get_table("A8")            # data-efficient CIFAR-100, R-18, 15/30/50 %
    for cell in table.cells: cell.id, cell.setting, cell.method, cell.config, cell.reference

``dm-ssl sweep TABLE`` runs a table, ``dm-ssl report`` sets the runs beside the references.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from . import grids


@dataclass(frozen=True)
class Cell:
    """One (setting, method): the config a run of it trains, without ``seed``/``save_*``."""

    id: str
    setting: str
    method: str
    config: Dict[str, Any]
    reference: Optional[float] = None  # top-1 %, see the table's ``reference_source``
    #: an ablation's swept hyper-parameter and its value, e.g. ("eta", 0.1): the report plots
    #: the metric against it (per setting)
    param: Optional[Tuple[str, float]] = None


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    cells: Tuple[Cell, ...]
    seeds: Tuple[int, ...] = (0, 1, 2)
    metric: str = "best_acc"          # the results.json key the report averages
    reference_source: str = "paper (spec §9)"
    notes: str = ""
    #: further results.json keys the report shows beside ``metric``, as (key, column label)
    columns: Tuple[Tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        ids = [c.id for c in self.cells]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"table {self.name}: duplicate cell ids {dupes}")

    def select(self, pattern: Optional[str]) -> List[Cell]:
        """Cells whose id, setting or method matches the glob ``pattern`` (all when None)."""
        if not pattern:
            return list(self.cells)
        return [c for c in self.cells
                if any(fnmatch.fnmatch(text, pattern) for text in (c.id, c.setting, c.method))]

    @property
    def settings(self) -> List[str]:
        return list(dict.fromkeys(c.setting for c in self.cells))

    @property
    def methods(self) -> List[str]:
        return list(dict.fromkeys(c.method for c in self.cells))


def _strip(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """A grid config without the keys a sweep sets per run."""
    return {k: v for k, v in cfg.items()
            if k not in ("save_dir", "save_name", "seed", "resume")}


def _cell(cfg: Dict[str, Any], setting: str, method: str,
          reference: Optional[float] = None, **extra: Any) -> Cell:
    cid = cfg["save_name"].removesuffix("_0") + extra.pop("_suffix", "")
    return Cell(cid, setting, method, {**_strip(cfg), **extra}, reference)


LOSS_NAMES = {"mce": "MCE", "dm_ce": "DM(CE)", "mbce": "MBCE", "dm_bce": "DM(BCE)"}
MIXER_NAMES = {"mixup": "Mixup", "cutmix": "CutMix", "manifoldmix": "ManifoldMix",
               "saliencymix": "SaliencyMix", "fmix": "FMix", "resizemix": "ResizeMix",
               "puzzlemix": "PuzzleMix", "automix": "AutoMix", "samix": "SAMix",
               "mixup,cutmix": "Mixup+CutMix"}
NET_NAMES = {"cifar_resnet18": "R-18", "cifar_resnext50": "RX-50", "wrn_28_8": "WRN-28-8",
             "wrn_28_2": "WRN-28-2", "resnet18": "R-18", "resnet34": "R-34", "resnet50": "R-50",
             "resnext50_32x4d": "RX-50", "timm/resnet18": "R-18", "timm/resnet34": "R-34",
             "timm/resnet50": "R-50", "timm/deit_small_patch16_224": "DeiT-S",
             "timm/swin_tiny_patch4_window7_224": "Swin-T"}
def data_name(dataset: str) -> str:
    """The short name the paper's tables give ``dataset`` (its registry entry's ``label``)."""
    return grids.dataset_entry(dataset).label

# spec §9: (dataset, net, epochs tag, mixer) -> (MCE, DM(CE)) top-1 %
PAPER_A2 = {("cifar100", "cifar_resnet18", "saliencymix"): (79.12, 79.28),
            ("cifar100", "cifar_resnet18", "puzzlemix"): (81.13, 81.34),
            ("cifar100", "cifar_resnet18", "automix"): (82.04, 82.32),
            ("cifar100", "cifar_resnet18", "samix"): (82.30, 82.40),
            ("tinyimagenet", "cifar_resnet18", "saliencymix"): (64.60, 66.56)}
PAPER_A7 = {"mixup": (79.34, 79.70), "cutmix": (79.58, 79.77), "manifoldmix": (80.18, 81.06)}
PAPER_A8 = {"mixup": ((42.23, 55.61, 64.55), (44.39, 56.78, 65.92)),
            "cutmix": ((43.81, 55.99, 64.38), (44.85, 57.14, 65.87)),
            "vanilla": (42.48, 56.41, 64.32)}
PAPER_SELFTUNING_R50 = {"cub200": (64.4, 74.5, 79.4), "stanford_cars": (75.4, 85.9, 89.8),
                        "fgvc_aircraft": (66.2, 79.6, 84.6)}


def _paper(pair: Optional[Tuple[float, float]], loss: str) -> Optional[float]:
    if pair is None:
        return None
    return pair[0] if loss in ("mce", "mbce") else pair[1]


def _supervised(select: Callable[[Dict[str, Any]], bool],
                ref: Callable[[Dict[str, Any]], Optional[float]] = lambda c: None,
                configs: Optional[Iterable[Dict[str, Any]]] = None) -> Tuple[Cell, ...]:
    cells = []
    for cfg in configs if configs is not None else grids.supervised_configs():
        if not select(cfg):
            continue
        setting = (f"{data_name(cfg['dataset'])} {NET_NAMES.get(cfg['net'], cfg['net'])} "
                   f"{MIXER_NAMES.get(cfg['mix_mixers'], cfg['mix_mixers'])}")
        if cfg.get("subset_percent"):
            setting += f" {cfg['subset_percent']}%"
        cells.append(_cell(cfg, setting, LOSS_NAMES[cfg["mix_loss"]], ref(cfg)))
    return tuple(cells)


def table_a2() -> Table:
    def ref(c):
        return _paper(PAPER_A2.get((c["dataset"], c["net"], c["mix_mixers"])), c["mix_loss"])
    return Table("A2", "Supervised CIFAR-100 (800 ep) and Tiny-ImageNet (400 ep): MCE vs DM(CE)",
                 _supervised(lambda c: c["save_name"].endswith(("_800ep_0",))
                             or (c["dataset"] == "tinyimagenet"
                                 and c["save_name"].endswith("_400ep_0")), ref))


def table_a6() -> Table:
    return Table("A6", "Supervised fine-grained (CUB-200, FGVC-Aircraft; 200 ep, ImageNet "
                 "weights): MCE vs DM(CE)",
                 _supervised(lambda c: c["dataset"] in ("cub200", "fgvc_aircraft")))


def table_a7() -> Table:
    return Table("A7", "Supervised CIFAR-100 ResNet-18, 400 epochs: MCE vs DM(CE)",
                 _supervised(lambda c: c["dataset"] == "cifar100"
                             and c["save_name"].endswith("_400ep_0"),
                             lambda c: _paper(PAPER_A7.get(c["mix_mixers"]), c["mix_loss"])))


def table_a8() -> Table:
    def ref(c):
        i = (15, 30, 50).index(c["subset_percent"])
        mce, dm = PAPER_A8[c["mix_mixers"]]
        return (mce if c["mix_loss"] == "mce" else dm)[i]
    cells = list(_supervised(lambda c: bool(c.get("subset_percent")), ref))
    for pct, acc in zip((15, 30, 50), PAPER_A8["vanilla"]):  # no mixing: the same recipe
        base = grids.sup_config("cifar100", "cifar_resnet18", "mixup", "mce", 400, 0.1,
                                percent=pct, tag=f"_{pct}pct")
        cells.append(_cell(base, f"CIFAR-100 R-18 vanilla {pct}%", "vanilla", acc,
                           mix_prob=0.0, _suffix="_vanilla"))
    return Table("A8", "Data-efficient CIFAR-100 ResNet-18 (15/30/50 % labels, 400 ep)",
                 tuple(cells))


def _imagenet(select: Callable[[Dict[str, Any]], bool]) -> Tuple[Cell, ...]:
    cells = []
    for cfg in grids.imagenet_configs():
        if select(cfg):
            recipe = cfg["save_name"].split("_")[2] if "rsb_a3" not in cfg["save_name"] \
                else "rsb_a3"
            setting = (f"ImageNet {NET_NAMES.get(cfg['net'], cfg['net'])} {recipe} "
                       f"{MIXER_NAMES.get(cfg['mix_mixers'], cfg['mix_mixers'])}")
            cells.append(_cell(cfg, setting, LOSS_NAMES[cfg["mix_loss"]]))
    return tuple(cells)


def table_a1() -> Table:
    return Table("A1", "ImageNet-1k: PyTorch-style, DeiT and RSB A3 recipes, MCE / DM(CE), "
                 "MBCE / DM(BCE)",
                 _imagenet(lambda c: c["mix_mixers"] not in grids.LEARNED), seeds=(0,))


def table_a3() -> Table:
    return Table("A3", "ImageNet-1k PyTorch-style with learned mixers (AutoMix, SAMix)",
                 _imagenet(lambda c: c["mix_mixers"] in grids.LEARNED
                           and "_pytorch_" in c["save_name"]), seeds=(0,))


def table_a5() -> Table:
    return Table("A5", "ImageNet-1k DeiT recipe, DeiT-S and Swin-T with learned mixers "
                 "(AutoMix, SAMix): MCE vs DM(CE)",
                 _imagenet(lambda c: c["mix_mixers"] in grids.LEARNED
                           and "_deit_" in c["save_name"]), seeds=(0,))


def table_a4() -> Table:
    return Table("A4", "ImageNet-1k RSB A3 ResNet-50 with learned mixers: MBCE vs DM(BCE)",
                 _imagenet(lambda c: c["mix_mixers"] in grids.LEARNED
                           and "_rsb_a3_" in c["save_name"]), seeds=(0,))


def table_ssl() -> Table:
    cells = []
    for cfg in grids.ssl_configs():
        setting = (f"{data_name(cfg['dataset'])} {cfg['num_labels']} labels "
                   f"{NET_NAMES[cfg['net']]}")
        cells.append(_cell(cfg, setting, cfg["algorithm"]))
    return Table("ssl", "SSL from scratch (CIFAR-10/100, USB protocol): host vs host + DM",
                 tuple(cells), notes="USB reports the best accuracy (error = 100 - best).")


def table_transfer() -> Table:
    cells = []
    for cfg in grids.transfer_configs():
        ref = None
        if cfg["algorithm"] == "selftuning" and cfg["net"] == "resnet50":
            ref = PAPER_SELFTUNING_R50[cfg["dataset"]][(15, 30, 50).index(cfg["label_percent"])]
        setting = (f"{data_name(cfg['dataset'])} {cfg['label_percent']}% "
                   f"{NET_NAMES[cfg['net']]}")
        cells.append(_cell(cfg, setting, cfg["algorithm"], ref))
    return Table("transfer", "Semi-supervised fine-grained transfer (Self-Tuning recipe)",
                 tuple(cells), reference_source="Self-Tuning's official runs (spec §9)")


# -- the repository's own offline experiments ------------------------------------------------
#: the digits demo (scripts/demo_digits.py): methods and base config
DIGITS_METHODS: Dict[str, Dict[str, Any]] = {
    "supervised only": {"algorithm": "fixmatch", "ulb_loss_ratio": 0.0},
    "FixMatch": {"algorithm": "fixmatch"},
    "FixMatch + mixup (MCE)": {"algorithm": "fixmatch_dm", "dm_loss": "mce"},
    "FixMatch + DM(CE)": {"algorithm": "fixmatch_dm"},
}


def digits_config(iters: int = 300, num_labels: int = 50) -> Dict[str, Any]:
    return {
        "dataset": "digits", "num_labels": num_labels, "net": "small_cnn", "in_channels": 1,
        "img_size": 8, "channels_last": False, "batch_size": 16, "uratio": 4,
        "eval_batch_size": 600,
        "num_train_iter": iters, "epoch": 1, "num_eval_iter": max(iters // 12, 1),
        "num_log_iter": max(iters // 12, 1), "lr": 0.03, "weight_decay": 5e-4, "ema_m": 0.99,
        "p_cutoff": 0.95, "num_workers": 0, "progress": False,
    }


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in text.lower())
    return "_".join(part for part in out.split("_") if part)


def table_digits_demo() -> Table:
    cells = tuple(Cell(_slug(name), "digits 50 labels, 300 it", name,
                       {**digits_config(), **method}) for name, method in DIGITS_METHODS.items())
    return Table("digits_demo", "Offline SSL demo on scikit-learn's digits (the README's demo)",
                 cells, metric="final_acc", reference_source="none (measure it)")


def table_digits_smoke() -> Table:
    """Seconds per run: checks a sweep end to end on any machine (and in the tests)."""
    base = {**digits_config(iters=8), "num_labels": 20, "batch_size": 4, "uratio": 2,
            "num_eval_iter": 4, "num_log_iter": 2, "eval_batch_size": 256}
    cells = (Cell("fixmatch", "digits smoke", "FixMatch", {**base, "algorithm": "fixmatch"}),
             Cell("fixmatch_dm", "digits smoke", "FixMatch + DM(CE)",
                  {**base, "algorithm": "fixmatch_dm"}))
    return Table("digits_smoke", "A seconds-long sweep check on digits", cells, seeds=(0, 1),
                 metric="final_acc", reference_source="none")


# -- ablations (the paper's Figures A2-A3: η for DM(CE), ξ and t for DM(BCE)) -------------------
#: The spec gives neither the figures' numbers nor their exact grids: these values bracket the
#: paper's choices (η 0.1 static / 1 dynamic; ξ 0.8, t 1 cutting; ξ 1, t 0.5 interpolation).
ETA_VALUES = (0.01, 0.05, 0.1, 0.5, 1.0, 2.0)
XI_VALUES = (0.6, 0.7, 0.8, 0.9, 1.0)
T_VALUES = (0.25, 0.5, 0.75, 1.0)
ABLATION_NOTE = ("the spec gives no numbers for this figure: no reference column; the swept "
                 "values are dm_ssl's choice around the paper's defaults")


def _a7_base(mixer: str, loss: str) -> Dict[str, Any]:
    """Table A7's recipe (CIFAR-100, ResNet-18, 400 epochs) for one mixer and loss."""
    return grids.sup_config("cifar100", "cifar_resnet18", mixer, loss, 400, 0.1, tag="_400ep")


def table_eta() -> Table:
    cells = []
    for mixer in ("mixup", "cutmix"):
        setting = f"CIFAR-100 R-18 {MIXER_NAMES[mixer]}"
        cells.append(_cell(_a7_base(mixer, "mce"), setting, "MCE"))
        for eta in ETA_VALUES:
            cell = _cell(_a7_base(mixer, "dm_ce"), setting, f"DM(CE) η={eta:g}", None,
                         mix_eta=eta, _suffix=f"_eta{eta:g}")
            cells.append(Cell(cell.id, cell.setting, cell.method, cell.config, None,
                              ("eta", eta)))
    return Table("eta", "Ablation of η (DM(CE)), CIFAR-100 ResNet-18, 400 epochs (Fig. A2)",
                 tuple(cells), reference_source="none", notes=ABLATION_NOTE)


def table_xi_t() -> Table:
    cells = []
    for mixer, name, values, fixed in (("cutmix", "xi", XI_VALUES, {"mix_t": 1.0}),
                                       ("mixup", "t", T_VALUES, {"mix_xi": 1.0})):
        setting = f"CIFAR-100 R-18 {MIXER_NAMES[mixer]}"
        cells.append(_cell(_a7_base(mixer, "mbce"), setting, "MBCE", None, mix_bce_mode="one"))
        for v in values:
            label = {"xi": "ξ", "t": "t"}[name]
            cell = _cell(_a7_base(mixer, "dm_bce"), setting, f"DM(BCE) {label}={v:g}", None,
                         **fixed, **{f"mix_{name}": v}, _suffix=f"_{name}{v:g}")
            cells.append(Cell(cell.id, cell.setting, cell.method, cell.config, None, (name, v)))
    return Table("xi_t", "Ablation of ξ (CutMix, t=1) and t (Mixup, ξ=1) for DM(BCE), "
                 "CIFAR-100 ResNet-18, 400 epochs (Fig. A3)", tuple(cells),
                 reference_source="none", notes=ABLATION_NOTE)


#: Figure A1 at small scale (scripts/exp_mixed_accuracy.py): supervised digits runs, scored at
#: the end on the test set mixed at λ = 0.5 (``eval_mixed``)
A1_STATIC: Dict[str, Dict[str, Any]] = {
    "no mixing": {"mix_prob": 0.0, "mix_loss": "mce"},
    **{f"{mixer} {name}": {"mix_mixers": mixer, **loss}
       for mixer in ("mixup", "cutmix")
       for name, loss in (("MCE", {"mix_loss": "mce"}),
                          ("DM(CE) η=0.1", {"mix_loss": "dm_ce", "mix_eta": 0.1}),
                          ("DM(CE) η=1", {"mix_loss": "dm_ce", "mix_eta": 1.0}))},
}
A1_LEARNED: Dict[str, Dict[str, Any]] = {
    f"{mixer} {name}": {"mix_mixers": mixer, "mix_alpha": "2.0", **loss}
    for mixer in ("mixup", "automix", "samix")
    for name, loss in (("MCE", {"mix_loss": "mce"}),
                       ("DM(CE) η=1", {"mix_loss": "dm_ce", "mix_eta": 1.0}))
}
A1_EVAL_MIXERS = ("mixup", "cutmix")


def a1_config(iters: int = 1000) -> Dict[str, Any]:
    return {
        "algorithm": "supervised_mixup", "dataset": "digits", "net": "small_cnn",
        "in_channels": 1, "channels_last": False, "batch_size": 32, "eval_batch_size": 600,
        "num_train_iter": iters, "epoch": 1, "num_eval_iter": iters, "num_log_iter": iters,
        "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "ema_m": 0.99, "mix_alpha": "1.0",
        "num_workers": 0, "progress": False,
    }


def a1_eval_mixers(method: Dict[str, Any], own: bool) -> Tuple[str, ...]:
    """The mixers a Figure A1 run is scored with: Mixup, CutMix and (learned set) its own."""
    return A1_EVAL_MIXERS + ((method["mix_mixers"],) if own else ())


def _a1_columns(own_names: Iterable[str] = ()) -> Tuple[Tuple[str, str], ...]:
    cols = [(f"mixed_{m}_{k}", f"{label} {k[:3]}-{k[3:]}")
            for m, label in (("mixup", "Mixup"), ("cutmix", "CutMix"), *own_names)
            for k in ("top1", "top2")]
    return tuple(cols)


def _table_a1(name: str, methods: Dict[str, Dict[str, Any]], own: bool) -> Table:
    cells = []
    for method_name, method in methods.items():
        cfg = {**a1_config(), **method,
               "eval_mixed": ",".join(dict.fromkeys(a1_eval_mixers(method, own)))}
        cells.append(Cell(_slug(method_name.replace("η", "eta")), "digits supervised, 1000 it",
                          method_name, cfg))
    own_cols = (("automix", "AutoMix"), ("samix", "SAMix")) if own else ()
    return Table(name, "Figure A1 at small scale: clean and mixed-sample (λ = 0.5) accuracy on "
                 "digits" + (", learned mixers" if own else ""), tuple(cells), metric="final_acc",
                 reference_source="none (README's measured table)", columns=_a1_columns(own_cols),
                 notes="top-1: the top prediction is one of the two classes; top-2: the two top "
                       "predictions are exactly the two classes (dm-ssl eval --mixed). A "
                       "learned mixer's own column is filled only for the runs that trained it.")


def table_a1_digits() -> Table:
    return _table_a1("A1_digits", A1_STATIC, own=False)


def table_a1_digits_learned() -> Table:
    return _table_a1("A1_digits_learned", A1_LEARNED, own=True)


def table_eta_digits() -> Table:
    """η on the offline digits demo (FixMatch + DM(CE)): the ablation any machine can run."""
    cells = [Cell("fixmatch", "digits 50 labels, 300 it", "FixMatch",
                  {**digits_config(), "algorithm": "fixmatch"})]
    for eta in (0.1, 0.5, 1.0, 2.0):
        cells.append(Cell(f"fixmatch_dm_eta{eta:g}", "digits 50 labels, 300 it",
                          f"FixMatch + DM(CE) η={eta:g}",
                          {**digits_config(), "algorithm": "fixmatch_dm", "dm_eta": eta},
                          None, ("eta", eta)))
    return Table("eta_digits", "Ablation of η on the offline digits demo (FixMatch + DM(CE))",
                 tuple(cells), metric="final_acc", reference_source="none (measure it)")


TABLES: Dict[str, Callable[[], Table]] = {
    "ssl": table_ssl, "transfer": table_transfer, "A1": table_a1, "A2": table_a2,
    "A3": table_a3, "A4": table_a4, "A5": table_a5, "A6": table_a6, "A7": table_a7, "A8": table_a8,
    "eta": table_eta, "xi_t": table_xi_t, "eta_digits": table_eta_digits,
    "A1_digits": table_a1_digits, "A1_digits_learned": table_a1_digits_learned,
    "digits_demo": table_digits_demo, "digits_smoke": table_digits_smoke,
}


def get_table(name: str) -> Table:
    """A table by name (case-insensitive); a clear error listing the known ones."""
    for key, build in TABLES.items():
        if key.lower() == name.lower():
            return build()
    raise KeyError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")

"""A device-aware driver for semilearn (USB 0.3.2) algorithms, without editing semilearn.

USB 0.3.2 cannot train on a CPU as shipped (``docs/usb-notes.md``): ``process_batch`` and
``evaluate`` call ``.cuda()``, ``TimerHook`` records CUDA events, the FlexMatch/FreeMatch/
SoftMatch ``load_model`` call ``.cuda()``, and
``get_config(dict)`` never sets ``args.distributed``. Every algorithm dm_ssl builds — the host
baselines included — is the registered semilearn class with :class:`DriverMixin` in front of it
in the MRO, so baselines and ``*_dm`` algorithms run through exactly the same code.

The mixin also makes resuming strict and exact: a checkpoint that cannot restore every piece of
state (model, EMA, optimizer, scheduler, iteration, the host's hook state, DM state) is refused
with a :class:`CheckpointError` instead of training on half-loaded, and a resumed run is the
same run as one never stopped (bit-identical on CPU): the training streams draw through
:class:`~dm_ssl.data.sampling.ResumableSampler` (order and per-sample augmentation seeds are
functions of the seed, the epoch and the position, so a resume starts mid-epoch at the right
sample), and :class:`StepSeedHook` seeds python, numpy and torch from ``(seed, rank, it)``
before every step (dropout, drop-path and any other draw from the global RNGs). The DM term's
and supervised mixup's mixing generators are reseeded from ``(seed, rank, it)`` at every step
(:class:`~dm_ssl.algorithms.mixing.StepGenerators`); their state also travels in the
checkpoint. With ``augment_on: device`` the streams are
:class:`~dm_ssl.data.device_data.DeviceBatches` over the same sampler.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Type

import numpy as np
import torch
import torch.nn.functional as F
from semilearn.core.hooks import Hook, TimerHook
from torch import nn
from torch.utils.data import DataLoader

from dm_ssl.data.device_data import device_stream
from dm_ssl.data.sampling import ResumableSampler, SeededDataset, derive_seed, seed_everything

from . import schedule as sched

#: Where each host keeps the extra tensors its ``get_save_dict`` writes (its ``load_model``
#: puts them back with ``.cuda()``, which is why the driver restores them itself).
_HOOK_STATE: Dict[str, str] = {
    "classwise_acc": "MaskingHook", "selected_label": "MaskingHook",           # flexmatch
    "time_p": "MaskingHook", "label_hist": "MaskingHook",                      # freematch
    "p_target": "DistAlignHook",                                               # softmatch
    "prob_max_mu_t": "MaskingHook", "prob_max_var_t": "MaskingHook",
}
#: keys older checkpoints may lack (``schedule``: before dm_ssl recorded extensions)
_OPTIONAL_KEYS = {"aim_run_hash", "schedule"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot restore the whole training state."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file that cannot be read at all (truncated, not a torch file)."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, permissions); the previous one is intact."""

    def __init__(self, path: str, err: OSError) -> None:
        self.path = path
        super().__init__(f"cannot write checkpoint {path}: {err.strerror or err}; the previous "
                         "checkpoint is intact (free space or fix the permissions, then resume "
                         "with --set resume=true)")


#: the checkpoint kept beside ``latest_model.pth`` (the one before it), for a resume whose
#: latest file is truncated
PREVIOUS_SUFFIX = ".prev"


class NonFiniteLossError(RuntimeError):
    """A step's loss is NaN or infinite: the run stops before the update (nothing is saved
    from this step, the last checkpoint stays the last good one)."""

    def __init__(self, it: int, terms: List[str]) -> None:
        self.it, self.terms = it, terms
        super().__init__(f"non-finite loss at iteration {it} ({', '.join(terms)}); stopped "
                         "before the update, the last saved checkpoint is the last good one "
                         "(a lower lr, amp off or gradient clipping may help)")


class StepFlagHook(Hook):
    """Marks whether hooks run inside a step (before ``it += 1``) or after the loop."""

    def before_train_step(self, algorithm):
        algorithm._mid_step = True

    def after_run(self, algorithm):
        algorithm._mid_step = False


class StepSeedHook(Hook):
    """Seeds python, numpy and torch from ``(seed, rank, it)`` before each step, so every
    draw a step makes from the global RNGs is a function of the step alone: a resumed run
    repeats it exactly, and the processes of a distributed run draw their own."""

    def before_train_step(self, algorithm):
        rank = algorithm.rank if algorithm.distributed else 0
        seed_everything(derive_seed(int(algorithm.args.seed), 0x57E9, rank, algorithm.it))


class ResumeSamplingHook(Hook):
    """Puts the training streams' samplers on the epoch, and after a resume on the position
    inside it (``algorithm._resume_skip`` batches in), before each epoch's loaders start."""

    def before_train_epoch(self, algorithm):
        skip, algorithm._resume_skip = getattr(algorithm, "_resume_skip", 0), 0
        for name in ("train_lb", "train_ulb"):
            loader = algorithm.loader_dict.get(name)
            sampler = getattr(loader, "sampler", None)
            if isinstance(sampler, ResumableSampler):
                sampler.set_epoch(algorithm.epoch, skip * loader.batch_size)


class WallClockTimerHook(Hook):
    """``TimerHook`` without CUDA events: logs the data-loading time of each step."""

    def before_run(self, algorithm):
        self._t = time.perf_counter()

    def before_train_step(self, algorithm):
        algorithm._dm_data_time = time.perf_counter() - self._t

    def after_train_step(self, algorithm):
        algorithm.log_dict["lr"] = algorithm.optimizer.param_groups[-1]["lr"]
        algorithm.log_dict["train/prefetch_time"] = getattr(algorithm, "_dm_data_time", 0.0)
        self._t = time.perf_counter()


def mean_over_ranks(logs: Dict[str, Any]) -> Dict[str, Any]:
    """The logged numbers as the mean over the distributed ranks (each rank's are its shard's).

    Keys a rank lacks, and non-numbers, keep this rank's value: ranks may log conditionally.
    A no-op without an initialised process group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return logs
    gathered: List[Any] = [None] * dist.get_world_size()
    numbers = {k: float(v) for k, v in logs.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    dist.all_gather_object(gathered, numbers)
    out = dict(logs)
    for key in numbers:
        values = [g[key] for g in gathered if key in g]
        if len(values) == len(gathered):
            out[key] = sum(values) / len(values)
    return out


def masking_probs(algorithm: Any, kwargs: Dict[str, Any]) -> Optional[torch.Tensor]:
    """The unlabeled probabilities a host passed to ``call_hook("masking", ...)``.

    Hosts pass probabilities with ``softmax_x_ulb=False`` (FixMatch, FlexMatch, SoftMatch) or
    logits with the default ``softmax_x_ulb=True`` (FreeMatch)."""
    logits = kwargs.get("logits_x_ulb")
    if logits is None:
        return None
    logits = logits.detach()
    return algorithm.compute_prob(logits) if kwargs.get("softmax_x_ulb", True) else logits


class ModuleWrapper(nn.Module):
    """Gives the EMA copy the ``module.`` prefix of the DDP-wrapped model, so semilearn's EMA
    hook can copy state dicts between them unchanged."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, dict):
        return {k: v.to(device, non_blocking=True) for k, v in value.items()}
    return value.to(device, non_blocking=True)


class DriverMixin:
    """Put in front of a semilearn algorithm class: device from ``args.device``."""

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        args.distributed = getattr(args, "distributed", False)
        self._idx_ulb, self._masked = None, None  # the last batch's, for pl_acc
        self.device = torch.device(getattr(args, "device", None) or
                                   ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type != "cuda":
            args.amp = False  # semilearn's amp is torch.cuda.amp
        super().__init__(args, net_builder, tb_log, logger, **kwargs)
        self.epoch = getattr(self, "epoch", self.start_epoch)  # get_save_dict reads it
        # parameters keep their identity under .to(), so the optimizer built above stays valid
        self.model.to(self.device)
        self.ema_model.to(self.device)
        if getattr(args, "channels_last", False):
            self.model.to(memory_format=torch.channels_last)
            self.ema_model.to(memory_format=torch.channels_last)
        if self.distributed:
            self._wrap_distributed()
        # semilearn starts at 0.0 and keeps a result only if it is higher: a run whose every
        # evaluation scores 0 % would write no model_best.pth and report best_it 1. Below any
        # accuracy, the first evaluation is the best so far (a resume restores the saved one).
        self.best_eval_acc = -1.0
        # the schedules' clock (dm_ssl.algorithms.schedule): the length the run started with
        # and its extensions; a checkpoint carries them
        self.schedule_base: int = int(self.num_train_iter)
        self.schedule_extensions: List[sched.Extension] = []
        self.schedule_restored = False

    def _wrap_distributed(self) -> None:
        """DDP around the model (torchrun / USB's distributed mode); one process per device.

        Only local rank 0 writes checkpoints and logs (semilearn tests
        ``rank % ngpus_per_node``; on CPU processes ``ngpus_per_node`` would be 0)."""
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.ngpus_per_node = int(os.environ.get("LOCAL_WORLD_SIZE", max(self.ngpus_per_node, 1)))
        ids = [self.device.index] if self.device.type == "cuda" else None
        if getattr(self.args, "sync_bn", False):
            # BN statistics over the global batch. The converted layers take over the BN
            # parameters and buffers themselves, so the optimizer, the EMA and checkpoints
            # (same keys) stay valid; the EMA (evaluation) model keeps plain BN.
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model = DDP(self.model, device_ids=ids, broadcast_buffers=False)
        self.ema_model = ModuleWrapper(self.ema_model)

    # -- data -------------------------------------------------------------------------------
    def set_dataset(self):
        """Datasets come from ``args.dataset_dict`` (built by :mod:`dm_ssl.data`), never from
        semilearn's loader, which downloads with torchvision and writes into site-packages."""
        dataset_dict = getattr(self.args, "dataset_dict", None)
        if dataset_dict is None:
            raise ValueError("dataset_dict: build the datasets with dm_ssl.data and pass them "
                             "in the config (dm_ssl.algorithms.build_algorithm does)")
        dataset_dict = {"test": None, **dataset_dict}  # semilearn indexes "test" unconditionally
        self.args.ulb_dest_len = len(dataset_dict["train_ulb"])
        self.args.lb_dest_len = len(dataset_dict["train_lb"])
        return dataset_dict

    def set_data_loader(self):
        """semilearn's loaders, with the training streams made exactly resumable: the same
        batches, workers and collate function, drawn through :class:`ResumableSampler`."""
        loaders = super().set_data_loader()
        if loaders is None:
            return loaders
        for stream, name in enumerate(("train_lb", "train_ulb")):
            if name in loaders:
                loaders[name] = self._resumable(loaders[name], stream)
        return loaders

    def _resumable(self, loader: Any, stream: int) -> Any:
        from semilearn.datasets import DistributedSampler

        on_device = getattr(self.args, "augment_on", "loader") == "device"
        if on_device and isinstance(loader, DataLoader) and isinstance(loader.sampler,
                                                                       ResumableSampler):
            # a loader of our own, resumable already (repeated_aug): the same draws on the device
            return device_stream(loader.dataset, loader.sampler, loader.batch_size, self.device,
                                 loader.drop_last)
        # semilearn's RandomSampler only; its weighted sampler (and loaders of our own that
        # are resumable already) stay as they are
        if not isinstance(loader, DataLoader) or type(loader.sampler) is not DistributedSampler:
            if on_device:
                raise ValueError(f"augment_on=device: {self.args.algorithm}'s training stream "
                                 "is not semilearn's uniform sampler; use augment_on=loader")
            return loader
        old = loader.sampler
        sampler = ResumableSampler(len(loader.dataset), old.total_size, int(self.args.seed),
                                   stream, num_replicas=old.num_replicas, rank=old.rank)
        if on_device:  # the images on the device, augmented there (dm_ssl.data.device_data)
            return device_stream(loader.dataset, sampler, loader.batch_size, self.device,
                                 loader.drop_last)
        return DataLoader(SeededDataset(loader.dataset), batch_size=loader.batch_size,
                          sampler=sampler, num_workers=loader.num_workers,
                          collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                          drop_last=loader.drop_last)

    def process_batch(self, input_args=None, **kwargs):
        # kept for the pseudo-label accuracy log (true labels of the unlabeled batch)
        self._idx_ulb = kwargs.get("idx_ulb")
        if input_args is None:
            input_args = list(inspect.signature(self.train_step).parameters)
        return {k: _to(v, self.device) for k, v in kwargs.items()
                if k in input_args and v is not None}

    # -- pseudo-label accuracy -----------------------------------------------------------------
    def call_hook(self, fn_name, hook_name=None, *args, **kwargs):
        out = super().call_hook(fn_name, hook_name, *args, **kwargs)
        if fn_name == "masking" and hook_name is not None:
            self._masked = (masking_probs(self, kwargs), out)
        return out

    def _driver_train_step(self, *args, **kwargs):
        self._masked = None
        out_dict, log_dict = super().train_step(*args, **kwargs)
        loss = out_dict.get("loss")
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all()):
            terms = [k.split("/", 1)[-1] for k, v in log_dict.items()
                     if isinstance(v, float) and not math.isfinite(v)]
            raise NonFiniteLossError(self.it, terms or ["loss"])
        log_dict.update(self._pseudo_label_logs())
        done = self.it + 1
        if self.distributed and (done % max(self.num_log_iter, 1) == 0
                                 or done % max(self.num_eval_iter, 1) == 0
                                 or done == self.num_train_iter):
            log_dict = mean_over_ranks(log_dict)  # only where a log line / metrics row is made
        return out_dict, log_dict

    def _pseudo_label_logs(self) -> Dict[str, float]:
        """Accuracy of the argmax pseudo-labels (all, and where the mask keeps them)."""
        targets = getattr(self.dataset_dict["train_ulb"], "targets", None)
        if self._masked is None or self._masked[0] is None or self._idx_ulb is None \
                or targets is None:
            return {}
        probs, mask = self._masked
        y_true = torch.as_tensor(np.asarray(targets)[self._idx_ulb.cpu().numpy()],
                                 device=probs.device)
        correct = (probs.argmax(-1) == y_true).float()
        logs = {"train/pl_acc": correct.mean().item()}
        if torch.is_tensor(mask) and mask.shape == correct.shape:
            weight = mask.float()
            if weight.sum() > 0:
                logs["train/pl_acc_masked"] = ((correct * weight).sum() / weight.sum()).item()
        return logs

    # -- hooks ------------------------------------------------------------------------------
    def set_hooks(self):
        self._mid_step = False
        super().set_hooks()
        self.register_hook(StepFlagHook(), "StepFlagHook", "HIGHEST")
        self.register_hook(StepSeedHook(), "StepSeedHook", "HIGHEST")
        self.register_hook(ResumeSamplingHook(), "ResumeSamplingHook", "HIGHEST")
        if self.device.type != "cuda":
            for i, hook in enumerate(self._hooks):
                if type(hook) is TimerHook:
                    timer = WallClockTimerHook()
                    timer.priority, timer.name = hook.priority, hook.name
                    self._hooks[i] = timer
            self.hooks_dict = {h.name: h for h in self._hooks}

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, eval_dest="eval", out_key="logits", return_logits=False):
        """USB's evaluation (EMA weights, same keys) on ``self.device``."""
        from sklearn.metrics import balanced_accuracy_score, f1_score

        self.model.eval()
        self.ema.apply_shadow()
        total_loss, y_true, y_pred, logits_all = 0.0, [], [], []
        try:
            for data in self.loader_dict[eval_dest]:
                x, y = _to(data["x_lb"], self.device), data["y_lb"].to(self.device)
                if torch.is_tensor(x) and x.dim() == 5:  # multi-crop (10-crop): average logits
                    b, n_crops = x.shape[:2]
                    logits = self.model(x.flatten(0, 1))[out_key].view(b, n_crops, -1).mean(1)
                else:
                    logits = self.model(x)[out_key]
                total_loss += F.cross_entropy(logits, y, reduction="sum").item()
                y_true.append(y.cpu())
                y_pred.append(logits.argmax(-1).cpu())
                if return_logits:
                    logits_all.append(logits.cpu().numpy())
        finally:
            self.ema.restore()
            self.model.train()
        y_true_np, y_pred_np = torch.cat(y_true).numpy(), torch.cat(y_pred).numpy()
        out = {
            f"{eval_dest}/loss": total_loss / max(len(y_true_np), 1),
            f"{eval_dest}/top-1-acc": float((y_true_np == y_pred_np).mean()),
            f"{eval_dest}/balanced_acc": float(balanced_accuracy_score(y_true_np, y_pred_np)),
            f"{eval_dest}/F1": float(f1_score(y_true_np, y_pred_np, average="macro")),
        }
        if return_logits:
            out[f"{eval_dest}/logits"] = np.concatenate(logits_all)
        return out

    # -- the schedules' length -----------------------------------------------------------------
    def schedule_time(self) -> tuple:
        """``(iteration, length)`` on the schedule clock: where the run's ramps are (the
        iteration itself, unless the run was extended)."""
        return sched.clock(self.it, self.schedule_extensions), self.schedule_base

    def schedule_total(self) -> int:
        """The length the run's schedules currently end at."""
        ext = self.schedule_extensions
        return ext[-1].new_total if ext else self.schedule_base

    def extend_schedule(self) -> Optional[sched.Extension]:
        """After a resume with another ``num_train_iter``: the rest of every schedule is
        stretched from the checkpoint's iteration to the new length (no jump in the lr or the
        ramps). Returns the extension, or None when the length is unchanged."""
        old, new = self.schedule_total(), int(self.num_train_iter)
        if old == new:
            return None
        try:
            sched.check_extension(self.it, old, new)
        except ValueError as err:
            raise CheckpointError(f"resume: {err}") from None
        ext = sched.Extension(int(self.it), old, new)
        self.schedule_extensions.append(ext)
        self._install_schedule()
        return ext

    def _install_schedule(self) -> None:
        """The lr schedule of the run's original length, on the schedule clock. The original
        factors come from the algorithm's own ``set_optimizer`` built for that length (a
        throwaway optimizer: USB's, the supervised and Self-Tuning schedules alike)."""
        if not self.schedule_extensions or self.scheduler is None:
            return
        if not isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
            raise CheckpointError(f"resume: {type(self.scheduler).__name__} cannot be extended "
                                  "(a LambdaLR schedule can)")
        built = self.num_train_iter
        self.num_train_iter = self.schedule_base
        try:
            _, base = self.set_optimizer()
        finally:
            self.num_train_iter = built
        self.scheduler.lr_lambdas = [sched.stretched(f, self.schedule_extensions)
                                     for f in base.lr_lambdas]

    # -- checkpoints ------------------------------------------------------------------------
    def load_model(self, load_path):
        """Restore every piece of training state, or refuse (:class:`CheckpointError`)."""
        try:
            checkpoint = torch.load(load_path, map_location="cpu", weights_only=False)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {load_path} not found") from None
        except Exception as err:  # unreadable file: say which one, and that it is damaged
            raise CorruptCheckpointError(f"checkpoint {load_path} is truncated or corrupt "
                                         f"({type(err).__name__}: {err})") from None
        if not isinstance(checkpoint, dict):
            raise CorruptCheckpointError(f"{load_path} is not a training checkpoint")
        expected = self._save_keys(checkpoint) - _OPTIONAL_KEYS
        missing = sorted(expected - set(checkpoint))
        if missing:
            raise CheckpointError(
                f"checkpoint {load_path} lacks {missing}: it was not written by this algorithm "
                f"({self.args.algorithm}) with this configuration; refusing to load it "
                "half-way")
        try:
            self.model.load_state_dict(_match_prefix(checkpoint["model"], self.model))
            self.ema_model.load_state_dict(_match_prefix(checkpoint["ema_model"],
                                                         self.ema_model))
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(checkpoint["scheduler"])
            self.loss_scaler.load_state_dict(checkpoint["loss_scaler"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(f"checkpoint {load_path} does not fit this model/optimizer: "
                                  f"{_short(err)}") from None
        # semilearn stores epoch + 1 even mid-epoch, and restoring it as is skips the rest of
        # that epoch (issue #14: a run resumed at 600 of 1200 with epoch: 1 trained nothing):
        # the epoch holding iteration `it` runs again from its position `it` (the samplers
        # skip the batches already trained on, ResumeSamplingHook)
        self.it = checkpoint["it"]
        per_epoch = max(int(self.num_train_iter // max(self.epochs, 1)), 1)
        self.start_epoch = min(self.it // per_epoch, max(self.epochs - 1, 0))
        self.epoch = self.start_epoch
        self._resume_skip = min(self.it - self.start_epoch * per_epoch, per_epoch)
        self.best_it, self.best_eval_acc = checkpoint["best_it"], checkpoint["best_eval_acc"]
        self.schedule_restored = "schedule" in checkpoint
        if self.schedule_restored:
            self.schedule_base, self.schedule_extensions = sched.from_state(
                checkpoint["schedule"])
            self._install_schedule()
        base = {"model", "ema_model", "optimizer", "scheduler", "loss_scaler", "it", "epoch",
                "best_it", "best_eval_acc", "schedule"}
        for key in sorted(expected - base):
            self.load_extra_state(key, checkpoint[key], load_path)
        self.print_fn(f"loaded {load_path} at iteration {self.it}")
        return checkpoint

    def _save_keys(self, checkpoint: Dict[str, Any]) -> set:
        """The keys ``get_save_dict`` writes, listed on a freshly built algorithm. Some host
        state exists only after the first step (SoftMatch's ``get_save_dict`` reads
        ``DistAlignHook.p_model``, None until then, and so failed at every eval and resume):
        a hook attribute that is None and saved in ``checkpoint`` gets a placeholder while the
        keys are listed (the checkpoint's value replaces it when restored)."""
        placed = [(hook, key) for hook in self.hooks_dict.values() for key in checkpoint
                  if isinstance(key, str) and getattr(hook, key, False) is None]
        for hook, key in placed:
            setattr(hook, key, torch.zeros(0))
        try:
            return set(self.get_save_dict())
        finally:  # get_save_dict only reads the hooks: put the None back
            for hook, key in placed:
                setattr(hook, key, None)

    def load_extra_state(self, key: str, value: Any, load_path: str) -> None:
        """Put back one extra entry of ``get_save_dict`` (host hook state, DM state).

        Classes behind this mixin may define ``restore_state(key, value) -> bool`` to claim
        their own keys (the DM mixin does for ``dm_state``)."""
        claim = getattr(self, "restore_state", None)
        if claim is not None and claim(key, value):
            return
        hook_name = _HOOK_STATE.get(key)
        if hook_name is None:  # p_model lives in MaskingHook (freematch) or DistAlignHook
            owners = [n for n, h in self.hooks_dict.items() if hasattr(h, key)]
            hook_name = owners[0] if len(owners) == 1 else None
            if key == "p_model" and "DistAlignHook" in self.hooks_dict:
                hook_name = "DistAlignHook"
        if hook_name is None or not hasattr(self.hooks_dict.get(hook_name), key):
            raise CheckpointError(f"checkpoint {load_path}: no place to restore {key!r}")
        setattr(self.hooks_dict[hook_name], key,
                value.to(self.device) if torch.is_tensor(value) else value)

    def get_save_dict(self):
        save_dict = super().get_save_dict()
        # semilearn stores it + 1, right inside a step; after the loop (its final save) that
        # counts one iteration that never ran, and a resume would skip it
        save_dict["it"] = self.it + 1 if self._mid_step else self.it
        save_dict["schedule"] = sched.to_state(self.schedule_base, self.schedule_extensions)
        return save_dict

    def save_model(self, save_name, save_path):
        """Atomic, durable save: written to ``NAME.tmp``, fsynced, renamed over ``NAME``; the
        latest checkpoint's predecessor is kept as ``NAME.prev`` (a resume falls back to it
        when the latest one is damaged). A failed write (disk full, permissions) removes the
        partial file and raises :class:`CheckpointWriteError`; nothing else is touched."""
        if self.distributed and self.rank != 0:
            return
        target = os.path.join(save_path, save_name)
        tmp = target + ".tmp"
        state = self.get_save_dict()
        # the final save repeats the last step's: keep the older predecessor then
        rotate = (save_name == "latest_model.pth" and os.path.exists(target)
                  and getattr(self, "_latest_saved_it", None) != state["it"])
        try:
            os.makedirs(save_path, exist_ok=True)
            with open(tmp, "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            if rotate:
                os.replace(target, target + PREVIOUS_SUFFIX)
            os.replace(tmp, target)
            _fsync_dir(save_path)
            if save_name == "latest_model.pth":
                self._latest_saved_it = state["it"]
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            raise CheckpointWriteError(target, err) from None
        except RuntimeError as err:  # torch reports some write faults as RuntimeError
            Path(tmp).unlink(missing_ok=True)
            raise CheckpointWriteError(target, OSError(str(err))) from None
        self.print_fn(f"model saved: {target}")


def _short(err: Exception, limit: int = 400) -> str:
    """An error's first line, cut (a state_dict mismatch lists every key)."""
    text = str(err).strip().splitlines()
    first = " ".join(line.strip() for line in text[:3])
    return first if len(first) <= limit else first[:limit] + " ..."


def _fsync_dir(path: str) -> None:
    """Make the renames durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _match_prefix(state: Dict[str, Any], module: nn.Module) -> Dict[str, Any]:
    """Add or strip the ``module.`` prefix so a DDP checkpoint loads on one device and back."""
    wrapped = next(iter(module.state_dict()), "").startswith("module.")
    saved = next(iter(state), "").startswith("module.")
    if wrapped and not saved:
        return {f"module.{k}": v for k, v in state.items()}
    if saved and not wrapped:
        return {k[len("module."):]: v for k, v in state.items()}
    return state


_DRIVEN: Dict[type, type] = {}


def driven(cls: Type) -> Type:
    """``cls`` with :class:`DriverMixin` in front (cached, so isinstance checks hold)."""
    if issubclass(cls, DriverMixin):
        return cls
    if cls not in _DRIVEN:
        def train_step(self, *args, **kwargs):
            return DriverMixin._driver_train_step(self, *args, **kwargs)

        # semilearn's process_batch passes exactly the keys named by train_step's signature
        train_step.__signature__ = inspect.signature(cls.train_step)
        _DRIVEN[cls] = type(cls.__name__, (DriverMixin, cls),
                            {"__module__": __name__, "train_step": train_step})
    return _DRIVEN[cls]

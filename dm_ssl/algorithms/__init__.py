"""semilearn plugins: the DM term composed into FixMatch-family hosts, and a device-aware driver.

Importing this package registers ``fixmatch_dm``, ``flexmatch_dm``, ``freematch_dm``,
``softmatch_dm``, ``selftuning`` and ``selftuning_dm`` in semilearn's algorithm registry (it
imports semilearn, unlike ``dm_ssl.losses`` and ``dm_ssl.mixers``).
"""

from .build import build_algorithm, make_args
from .dm_hosts import HOSTS, DecoupledMixupMixin, register_all, with_decoupled_mixup
from .dm_term import DecoupledMixupTerm, DMConfig, cosine_ramp, mix_threshold_mask
from .driver import (
    CheckpointError,
    CheckpointWriteError,
    CorruptCheckpointError,
    DriverMixin,
    NonFiniteLossError,
    driven,
)
from .mixing import MixingModule, MixSpec, WithMixing, build_criterion

register_all()

from .selftuning import SelfTuning, SelfTuningDM, SelfTuningNet  # noqa: E402  (registers)
from .supervised_mixup import SupervisedMixup  # noqa: E402  (registers)

__all__ = [
    "CheckpointError", "CheckpointWriteError", "CorruptCheckpointError", "DMConfig",
    "DecoupledMixupMixin", "DecoupledMixupTerm", "DriverMixin",
    "HOSTS", "MixSpec", "MixingModule", "NonFiniteLossError", "SelfTuning", "SelfTuningDM",
    "SelfTuningNet", "SupervisedMixup", "WithMixing", "build_algorithm", "build_criterion",
    "cosine_ramp", "driven", "make_args", "mix_threshold_mask", "register_all",
    "with_decoupled_mixup",
]

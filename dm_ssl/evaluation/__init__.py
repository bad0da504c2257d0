"""Evaluation beyond clean accuracy (spec §9): FGSM error, mixed-sample accuracy, occlusion."""

from .robustness import (
    eval_mode,
    fgsm_attack,
    fgsm_error_rate,
    mixed_accuracy,
    mixed_topk_accuracy,
    mixed_topk_correct,
    occlusion_accuracy,
    occlusion_box_size,
    occlusion_masks,
)

__all__ = [
    "eval_mode", "fgsm_attack", "fgsm_error_rate", "mixed_accuracy", "mixed_topk_accuracy",
    "mixed_topk_correct", "occlusion_accuracy", "occlusion_box_size", "occlusion_masks",
]

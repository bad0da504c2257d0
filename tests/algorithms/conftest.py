import numpy as np
import pytest
from torchvision import transforms

pytest.importorskip("semilearn")


def tiny_datasets(alg: str, n: int = 48, size: int = 16, num_classes: int = 4, seed: int = 0):
    """Small random-image SSL datasets in semilearn's BasicDataset form."""
    from semilearn import BasicDataset

    rng = np.random.RandomState(seed)
    data = rng.randint(0, 255, (n, size, size, 3), dtype=np.uint8)
    targets = np.arange(n) % num_classes
    weak = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    strong = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ColorJitter(0.4),
                                 transforms.ToTensor()])
    return dict(
        train_lb=BasicDataset(alg, data[:16], targets[:16], num_classes, weak),
        train_ulb=BasicDataset(alg, data, targets, num_classes, weak, True, strong),
        eval=BasicDataset(alg, data[:12], targets[:12], num_classes, transforms.ToTensor()),
    )


def tiny_config(alg: str, save_dir, **overrides):
    cfg = dict(algorithm=alg, net="wrn_28_2", num_classes=4, batch_size=4, uratio=2,
               num_train_iter=3, epoch=1, num_eval_iter=1000, num_log_iter=1000, num_workers=0,
               device="cpu", save_dir=str(save_dir), save_name=alg, seed=0, img_size=16)
    cfg.update(overrides)
    return cfg


@pytest.fixture
def build(tmp_path):
    import torch

    import dm_ssl.algorithms as A

    def _build(alg, **overrides):
        torch.manual_seed(0)
        np.random.seed(0)
        return A.build_algorithm(tiny_config(alg, tmp_path, **overrides), tiny_datasets(alg))

    return _build

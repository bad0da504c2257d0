import pytest

from .cifar_files import STYLES, write_cifar10, write_cifar100


@pytest.fixture(params=STYLES)
def cifar10(tmp_path, request):
    """A tiny CIFAR-10 in the official layout under ``tmp_path/"data"``, both pickle styles."""
    root = tmp_path / "data"
    return root, write_cifar10(root, style=request.param)


@pytest.fixture(params=STYLES)
def cifar100(tmp_path, request):
    root = tmp_path / "data"
    return root, write_cifar100(root, style=request.param)

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


# The slowest tests (subprocess training runs of a minute or more each) go first, so that under
# `pytest -n 2` (scripts/test.sh) the workers start them early instead of ending on one of them.
_SLOW_FIRST = ("test_dm_guard.py", "test_exact_resume.py", "test_distributed.py",
               "test_sweep.py::test_sweep_interrupted", "test_sweep.py::test_submitit")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        for i, key in enumerate(_SLOW_FIRST):
            if key in item.nodeid:
                return i
        return len(_SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order

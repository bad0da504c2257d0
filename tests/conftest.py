import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

# before any test module imports semilearn (pytest.importorskip("semilearn") at their tops):
# dm_ssl's lazy imports keep semilearn's NLP / audio nets (transformers) and ViTs (timm) out
# of the workers, as out of every dm-ssl process (~6 s per worker at collection)
import dm_ssl  # noqa: F401,E402
from tests.loopback import server  # noqa: F401,E402  (the loopback HTTP server fixture)


def pytest_configure(config):
    # Under pytest-xdist each worker gets its share of the cores (1 thread each for -n 2 on 2
    # cores), and so do the subprocesses it starts: torch's default of one thread per core in
    # every worker oversubscribes the CPU, and its threads then spin and wait on each other.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ.setdefault("OMP_NUM_THREADS", threads)
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def torch_threads():
    """``torch.set_num_threads`` for this test; the count it had comes back after it (a
    test that runs code in this process with a record's or a subprocess' thread count)."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def once(request, tmp_path_factory) -> Callable[[str, Callable[[Path], None]], Path]:
    """``once(name, make)``: the folder ``name`` of this test session, ``make(folder)`` called
    on it the first time any pytest-xdist worker asks (a file lock: the other waits for it,
    then reads). For work several tests share that costs interpreter starts (a torchrun
    launch, a batch of ``dm-ssl`` processes), which worksteal may spread over both workers."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # xdist: the session's folder, all workers'
        base = base.parent

    def get(name: str, make: Callable[[Path], None]) -> Path:
        root = base / name
        with FileLock(str(root) + ".lock"):
            if not (root / ".made").exists():
                shutil.rmtree(root, ignore_errors=True)  # what a failed make left
                root.mkdir(parents=True)
                make(root)
                (root / ".made").write_text("")
        return root

    return get


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


# Tests marked slow (subprocess training runs; `-m "not slow"` leaves them out) go first, the
# longest of them first of all, so that under `pytest -n 2` (scripts/test.sh) the workers start
# them early instead of ending on one of them.
_SLOW_FIRST = ("test_sweep.py::test_sweep_interrupted", "test_distributed.py", "test_dm_guard.py",
               "test_docs.py::test_the_demo_reproduces", "test_exact_resume.py",
               "test_sweep.py::test_submitit")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        for i, key in enumerate(_SLOW_FIRST):
            if key in item.nodeid:
                return i
        return len(_SLOW_FIRST) + (item.get_closest_marker("slow") is None)

    items.sort(key=rank)  # stable: the rest keep their order

"""Which tensor ops a piece of code runs, and which of them would stall an accelerator.

On CUDA, PyTorch queues kernels and returns at once, unless an op needs a value on the host
(``.item()``, ``bool(t)``, ``nonzero``, a boolean-mask index, ``bincount``'s output size) or
copies host data to the device (``torch.tensor(list, device=…)``): then the CPU waits for the
GPU to drain, and the GPU waits for the CPU's next launches. :class:`OpLog` records the ATen
ops of a block on any device, the CPU included, so that a test can show code is free of those
ops without a GPU, and a benchmark can count the kernels a batch launches (issue #12)::

    with OpLog() as log:
        augment(batch, generator)
    assert not log.host_syncs, log.host_syncs
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: ops whose result size or value is read on the host (each a device sync on CUDA), and
#: ``lift_fresh``: a tensor made from host data (a host-to-device copy when not on the CPU)
HOST_OPS = frozenset({
    "aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.bincount",
    "aten.unique", "aten._unique", "aten._unique2", "aten.unique_dim",
    "aten.unique_consecutive", "aten.repeat_interleave", "aten.lift_fresh",
    "aten.masked_scatter", "aten.histc",
})
#: indexing ops that sync when an index is a boolean mask (it is turned into ``nonzero``)
_INDEXING = frozenset({"aten.index", "aten.index_put", "aten.index_put_",
                       "aten._index_put_impl_"})


def _packet(func: Any) -> str:
    return str(func.overloadpacket) if hasattr(func, "overloadpacket") else str(func)


def _bool_index(args: Tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())


class OpLog(TorchDispatchMode):
    """Records every ATen op run inside the ``with`` block (each one kernel launch, or a
    view, on a GPU). ``ops``: their names in order; ``host_syncs``: those that read device
    data on the host or copy host data in (see :data:`HOST_OPS`)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: List[str] = []
        self.host_syncs: List[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Tuple[Any, ...] = (),
                           kwargs: Optional[Dict[str, Any]] = None) -> Any:
        name = _packet(func)
        self.ops.append(name)
        if name in HOST_OPS or (name in _INDEXING and _bool_index(args)):
            self.host_syncs.append(name)
        return func(*args, **(kwargs or {}))

    @property
    def kernels(self) -> int:
        """Ops that compute (views and shape-only ops left out): launches on a GPU."""
        return sum(1 for op in self.ops if op not in _VIEWS)


_VIEWS = frozenset({
    "aten.view", "aten._unsafe_view", "aten.reshape", "aten.expand", "aten.unsqueeze",
    "aten.squeeze", "aten.permute", "aten.slice", "aten.select", "aten.t", "aten.transpose",
    "aten.alias", "aten.detach", "aten.as_strided", "aten.unbind", "aten.split",
    "aten.split_with_sizes", "aten._reshape_alias",
})

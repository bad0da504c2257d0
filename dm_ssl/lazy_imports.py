"""Defer the parts of semilearn that dm_ssl never runs on its image path.

``import semilearn`` builds every USB net at import time, the NLP and audio ones included:
``semilearn.nets`` imports ``bert``, ``hubert`` and ``wave2vecv2``, each of which imports
``transformers`` (and through it scikit-learn), ``vit`` imports timm's model zoo (~1-2 s), and
``semilearn.core.hooks`` imports ``aim``.
That is about a third of the ~11 s that every ``dm-ssl`` process (a run, a sweep entry, a
torchrun rank, eval) spends importing semilearn on a 2-core machine, for nets and a logger
that an image run never touches.

:func:`install` puts a finder in front of the normal import system that gives those four
net packages a stand-in module: it has the package's public functions (``bert_base_cased``,
``hubert_base`` ...) as thin wrappers that import the real package the first time one is
called, and the package's real ``__path__``, so its submodules still import normally. ``aim``
becomes a :class:`importlib.util.LazyLoader` module, executed at its first attribute access
(``use_aim: true``). Nothing changes for a run that uses them: a call goes to semilearn's own
function, which imports what it needs. Must run before the first ``import semilearn``
(``dm_ssl/__init__`` calls it); ``DM_SSL_EAGER_IMPORTS=1`` turns it off.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from typing import Callable, Dict, Optional, Sequence, Tuple

#: package -> the functions its ``__init__`` exports (semilearn 0.3.2's ``semilearn/nets``)
DEFERRED_PACKAGES: Dict[str, Tuple[str, ...]] = {
    "semilearn.nets.bert": ("bert_base_cased", "bert_base_uncased"),
    "semilearn.nets.hubert": ("hubert_base",),
    "semilearn.nets.wave2vecv2": ("wave2vecv2_base",),
    # the ViTs import timm's model zoo (~2 s); dm_ssl's own timm nets import timm when built
    "semilearn.nets.vit": ("vit_base_patch16_224", "vit_small_patch16_224", "vit_small_patch2_32",
                           "vit_tiny_patch2_32", "vit_base_patch16_96"),
}
#: modules imported only for a statement like ``import aim`` (no attribute read at import)
LAZY_MODULES: Tuple[str, ...] = ("aim",)
_REAL = "__dm_ssl_real__"  # where a stand-in keeps the real package once loaded


def _deferred(package: str, name: str) -> Callable:
    def call(*args, **kwargs):
        return getattr(load_real(package), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__module__ = package
    call.__doc__ = f"semilearn's {package}.{name}, imported at its first call (dm_ssl.lazy_imports)"
    return call


def load_real(package: str) -> types.ModuleType:
    """The real ``package`` (imported now if it was not yet): semilearn's own module."""
    stand_in = sys.modules.get(package)
    real = getattr(stand_in, _REAL, None)
    if real is not None:
        return real
    parent = sys.modules[package.rpartition(".")[0]]
    spec = importlib.machinery.PathFinder.find_spec(package, parent.__path__)
    real = importlib.util.module_from_spec(spec)
    # the stand-in stays in sys.modules (and in semilearn.nets' namespace) while the real
    # package runs, so that its relative imports of submodules resolve
    spec.loader.exec_module(real)
    setattr(stand_in, _REAL, real)
    return real


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target=None):
        if fullname in DEFERRED_PACKAGES:
            real = importlib.machinery.PathFinder.find_spec(fullname, path)
            if real is None:
                return None
            spec = importlib.machinery.ModuleSpec(fullname, self, is_package=True)
            spec.submodule_search_locations = list(real.submodule_search_locations)
            return spec
        if fullname in LAZY_MODULES:
            real = importlib.machinery.PathFinder.find_spec(fullname, path)
            if real is None or real.loader is None:
                return None
            real.loader = importlib.util.LazyLoader(real.loader)
            return real
        return None

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        for name in DEFERRED_PACKAGES[module.__name__]:
            setattr(module, name, _deferred(module.__name__, name))

        def __getattr__(attr: str):  # anything else the package has: import it for real
            if attr.startswith("__"):
                raise AttributeError(attr)
            return getattr(load_real(module.__name__), attr)

        module.__getattr__ = __getattr__


_FINDER = _Finder()


def install() -> bool:
    """Put the finder first on ``sys.meta_path`` unless semilearn is imported already (then
    there is nothing left to defer) or ``DM_SSL_EAGER_IMPORTS`` is set. True when installed."""
    if os.environ.get("DM_SSL_EAGER_IMPORTS") or "semilearn.nets" in sys.modules:
        return False
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    return True


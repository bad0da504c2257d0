"""dm_ssl: Decoupled Mixup (NeurIPS 2023) for semi-supervised learning, as a USB extension.

``dm_ssl.losses`` and ``dm_ssl.mixers`` are pure torch; importing them (or this package) does
not import semilearn.
"""

__version__ = "0.1.0"

from . import lazy_imports as _lazy_imports

_lazy_imports.install()  # before anything imports semilearn: see dm_ssl/lazy_imports.py

"""Name → mixer class registry and :func:`build_mixer`."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from .base import Mixer

MIXERS: dict[str, type[Mixer]] = {}

M = TypeVar("M", bound=type[Mixer])


def register_mixer(name: str) -> Callable[[M], M]:
    """Class decorator: register a :class:`Mixer` subclass under ``name``."""
    def deco(cls: M) -> M:
        if name in MIXERS:
            raise ValueError(f"mixer {name!r} is already registered")
        cls.name = name
        MIXERS[name] = cls
        return cls
    return deco


def build_mixer(name: str, **kwargs: Any) -> Mixer:
    """Build the mixer registered as ``name`` (case-insensitive) with its hyper-parameters."""
    key = name.lower() if isinstance(name, str) else None
    if key not in MIXERS:
        raise ValueError(f"unknown mixer {name!r}; known mixers: {', '.join(sorted(MIXERS))}")
    try:
        return MIXERS[key](**kwargs)
    except (TypeError, ValueError) as err:  # an unknown keyword or a bad value: say which mixer
        raise ValueError(f"mixer {name!r}: {err}") from None

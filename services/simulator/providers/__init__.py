"""The provider stand-ins, one module each. Every module here that sets ``STAND_IN`` to a ``StandIn`` subclass is
served: adding a stand-in is adding a module, nothing else (``services/simulator/README.md``)."""

from __future__ import annotations

import functools
import importlib
import pkgutil

from ..stand_in import StandIn


@functools.cache
def stand_ins() -> tuple[type[StandIn], ...]:
    found: list[type[StandIn]] = []
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        declared = getattr(importlib.import_module(f"{__name__}.{module}"), "STAND_IN", None)
        if declared is None:
            continue  # a helper module of some stand-in
        if not (isinstance(declared, type) and issubclass(declared, StandIn)):
            raise TypeError(f"{__name__}.{module}.STAND_IN must be a StandIn subclass, not {declared!r}")
        found.append(declared)
    names = [s.name for s in found]
    if len(set(names)) < len(names):
        raise TypeError(f"two provider stand-ins share a name: {sorted(names)}")
    return tuple(found)

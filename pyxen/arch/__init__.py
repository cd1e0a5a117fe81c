"""Architecture back-ends. The core asks for one by name and never imports it directly."""

from __future__ import annotations

import importlib


def load_arch(name: str):
    """Return the architecture class for `name` ("x86")."""
    if name not in ("x86",):
        raise ValueError(f"unsupported architecture {name!r}")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.ARCH

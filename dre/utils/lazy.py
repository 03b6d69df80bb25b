"""Package attributes imported on first use (PEP 562).

``dre.model`` and ``dre.diffusion`` export names from torch-heavy modules beside torch-free config
modules. Importing a config module imports its package first, so the package must not import the heavy
modules eagerly: otherwise ``dre train --help`` would load torch to build its flags.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``exports`` maps a name to its submodule (``"arch"``)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__

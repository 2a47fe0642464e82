"""Lazy package exports: `from icg_rec.ranking import TorchRecRanker` imports torchrec only then.

A package lists its public names per submodule; `import icg_rec.ranking` itself imports nothing heavy.
The same names are imported under `TYPE_CHECKING` in the package so that type checkers see them
(tests/test_public_api.py checks that the two lists agree).
"""

import importlib
from collections.abc import Callable
from typing import Any


def attach(
    package: str, exports: dict[str, list[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Module `__getattr__`, `__dir__` and `__all__` for a package with lazily imported exports.

    Args:
        package: the package's `__name__`.
        exports: submodule name (relative to the package) -> public names it defines.

    Returns:
        `(__getattr__, __dir__, __all__)` to assign in the package's `__init__`.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__, sorted(where)

"""bootemu: an emulator of the early-boot memory code of operating-system kernels.

Plugins import what they need from here and from the public modules listed in docs/plugins.md
("Public modules"): :mod:`bootemu.models`, :mod:`bootemu.contract`, :mod:`bootemu.schema`,
:mod:`bootemu.archbase`, :mod:`bootemu.testing`, :mod:`bootemu.hookspecs` ...
"""

from bootemu.hookspecs import hookimpl
from bootemu.models import (
    PAGE_SHIFT,
    PAGE_SIZE,
    AllocRequest,
    BitmapRequest,
    Block,
    BootemuError,
    KernelBug,
    KernelPanic,
    Layout,
    Zone,
)

__version__ = "0.1.0"

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "AllocRequest",
    "BitmapRequest",
    "Block",
    "BootemuError",
    "KernelBug",
    "KernelPanic",
    "Layout",
    "Zone",
    "hookimpl",
]

"""A kernel's build artifacts and its log, turned into an arch's ``[kernel]`` keys.

``import-dmesg --kconfig .config --system-map System.map`` hands the two files, read by
:mod:`bootemu.importers.kbuild`, together with the parsed log to the *arch's* reader: only the
arch knows which Kconfig choices and which symbols change its early memory, and what its
log lines mean. Each arch registers one function in :data:`READERS` (``"module:function"``,
imported on first use, so this module imports no arch):

    def kernel_keys(inp: ArtifactInput) -> KernelKeys

It returns the keys to write (those the arch documents for the profile), the highmem model
when it can tell, and one note per decision naming the ``.config`` line, the symbol or the
log line it came from. With neither file the reader infers what the log says and leaves the
rest to the arch's defaults. A bad ``.config`` or ``System.map`` has already raised
BootemuError naming the file and line when it was read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from bootemu.importers.bootlog import BootLog
from bootemu.importers.kbuild import Kconfig, SystemMap

__all__ = ["READERS", "ArtifactInput", "KernelKeys", "kernel_keys"]

#: Arch name -> ``"module:function"`` of its reader.
READERS: dict[str, str] = {
    "x86_32": "bootemu_arches.x86_32.kbuild:kernel_keys",
    "numa64": "bootemu_arches.numa64.kbuild:kernel_keys",
}


@dataclass(frozen=True)
class ArtifactInput:
    """What an arch's reader gets: the log, the chosen profile, and the optional artifacts."""

    log: BootLog
    profile: str
    source: str
    kconfig: Kconfig | None = None
    system_map: SystemMap | None = None


@dataclass
class KernelKeys:
    """An arch reader's answer: ``[kernel]`` keys, the highmem model (x86_32) and notes.

    A key set twice keeps the later value (the build artifacts are read after the log) and
    one note, which says what the earlier source had said when it differed.
    """

    values: dict[str, int | str | bool] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    highmem: str | None = None
    notes: list[str] = field(default_factory=list)

    def set(self, key: str, value: int | str | bool, why: str) -> None:
        """Write ``key`` and say where it came from."""
        old = self.values.get(key)
        if key in self.values and old != value:
            why = f"{why}; the log alone gave {_shown(old)}"
        self.values[key] = value
        self.why[key] = why

    def get(self, key: str, default: int | str | bool | None = None) -> int | str | bool | None:
        return self.values.get(key, default)

    @property
    def keys(self) -> list[tuple[str, int | str | bool]]:
        """The keys in a stable order (sorted by name)."""
        return sorted(self.values.items())

    def all_notes(self) -> list[str]:
        """The free notes, then one per key."""
        return self.notes + [f"kernel.{k} = {_shown(v)} ({self.why[k]})" for k, v in self.keys]


def _shown(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 4096:
        return f"{value:#x}"
    return repr(value)


def kernel_keys(arch: str, inp: ArtifactInput) -> KernelKeys | None:
    """The keys ``arch``'s reader derives from ``inp``; None when the arch has no reader."""
    target = READERS.get(arch)
    if target is None:
        return None
    module, _, name = target.partition(":")
    reader: Callable[[ArtifactInput], KernelKeys] = getattr(importlib.import_module(module), name)
    return reader(inp)

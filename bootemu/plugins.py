"""Plugin discovery, the per-boot PluginManager, and the typed facades the core calls through.

Arches and allocator backends are found through the entry-point groups ``bootemu.arches`` and
``bootemu.allocators`` (the built-ins are declared the same way in bootemu's own
pyproject.toml); observer plugins that should join every boot come from ``bootemu.plugins``.
Discovery is deterministic: entry points are sorted by name, and two different entry points
with the same name are an error that names both distributions.

Each boot gets its own :class:`pluggy.PluginManager` holding fresh instances of the selected
arch, the selected backend and the observers; there is no module-level manager.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from bootemu.contract import ArchInfo
from bootemu.hookspecs import PROJECT, SPEC_CLASSES
from bootemu.models import AllocRequest, BitmapRequest, BootemuError, Layout, PageSink

if TYPE_CHECKING:  # pragma: no cover
    from bootemu.boot import Boot
    from bootemu.models import Machine
    from bootemu.pagealloc import PageAllocModel

ARCH_GROUP = "bootemu.arches"
ALLOCATOR_GROUP = "bootemu.allocators"
OBSERVER_GROUP = "bootemu.plugins"


@dataclass(frozen=True)
class PluginInfo:
    """One discovered plugin: its name, what it is, and where it comes from."""

    name: str
    group: str
    value: str  # "module:attr"
    distribution: str  # "bootemu 0.1.0"
    entry_point: Any

    def load(self) -> Any:
        """Import the plugin's factory (a class)."""
        try:
            return self.entry_point.load()
        except Exception as exc:  # an unimportable plugin is bad input, not a crash
            raise BootemuError(
                f"plugin {self.name!r} ({self.value}, from {self.distribution}) cannot be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    @property
    def description(self) -> str:
        """The first line of the factory's docstring."""
        doc = (self.load().__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def _dist_label(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "<unknown distribution>"
    return f"{dist.metadata['Name']} {dist.version}"


def discover(
    group: str, *, entry_points: Iterable[Any] | None = None, disabled: Iterable[str] = ()
) -> dict[str, PluginInfo]:
    """The plugins of entry-point ``group``, by name, in sorted order.

    ``entry_points`` replaces the installed ones (tests pass fake entry points). A name declared
    twice with different targets raises :class:`BootemuError` naming both distributions; the
    same entry point seen twice (a package visible on two paths) counts once.
    """
    eps = list(md.entry_points(group=group) if entry_points is None else entry_points)
    skip = set(disabled)
    found: dict[str, PluginInfo] = {}
    for ep in sorted(eps, key=lambda e: (e.name, e.value, _dist_label(e))):
        if ep.name in skip:
            continue
        info = PluginInfo(ep.name, group, ep.value, _dist_label(ep), ep)
        prev = found.get(ep.name)
        if prev is not None:
            if prev.value == info.value:
                continue
            raise BootemuError(
                f"duplicate {group} plugin {ep.name!r}: {prev.value} (from {prev.distribution}) "
                f"and {info.value} (from {info.distribution})"
            )
        found[ep.name] = info
    return found


def select(
    group: str, name: str, found: Mapping[str, PluginInfo], *, where: str = ""
) -> PluginInfo:
    """The plugin called ``name``, or a usage error listing the known ones; ``where`` names
    what asked for it (``"m.toml: machine.arch"``, ``"--allocator"``) at the head of the line."""
    try:
        return found[name]
    except KeyError:
        kind = {ARCH_GROUP: "arch", ALLOCATOR_GROUP: "allocator"}.get(group, "plugin")
        known = ", ".join(found) or "none installed"
        head = f"{where}: " if where else ""
        raise BootemuError(f"{head}unknown {kind} {name!r} (known: {known})") from None


def make_manager(plugins: Sequence[tuple[object, str]]) -> pluggy.PluginManager:
    """A fresh manager with every spec family and the given ``(plugin, name)`` pairs."""
    pm = pluggy.PluginManager(PROJECT)
    for spec in SPEC_CLASSES:
        pm.add_hookspecs(spec)
    for plugin, name in plugins:
        pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise BootemuError(f"plugin {exc.plugin!r}: {exc}") from exc
    return pm


def _required(value: Any, hook: str, pm: pluggy.PluginManager) -> Any:
    if value is None:
        names = ", ".join(sorted(n for n, _ in pm.list_name_plugin()))
        raise BootemuError(f"no plugin answered {hook} (registered: {names})")
    return value


class AllocatorFacade:
    """The allocator hooks as typed methods, keyword arguments only.

    Arches receive this object (it implements :class:`bootemu.contract.Allocator`); they never
    see which backend answers.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        self._hook = pm.hook
        self._boot: Boot | None = None

    def attach(self, *, boot: Boot) -> None:
        self._boot = boot
        self._hook.bootemu_alloc_attach(boot=boot)

    def register_block(self, *, node: int, start_pfn: int, end_pfn: int) -> None:
        self._hook.bootemu_alloc_register_block(node=node, start_pfn=start_pfn, end_pfn=end_pfn)

    def bitmap_requests(self) -> list[BitmapRequest]:
        return list(
            _required(self._hook.bootemu_alloc_bitmap_requests(), "bitmap_requests", self._pm)
        )

    def enable(self, *, placements: Mapping[str, int]) -> None:
        self._hook.bootemu_alloc_enable(placements=dict(placements))

    def free(self, *, addr: int, size: int, node: int | None) -> None:
        self._hook.bootemu_alloc_free(addr=addr, size=size, node=node)

    def reserve(
        self, *, addr: int, size: int, node: int | None, exclusive: bool, label: str = ""
    ) -> int:
        """Reserve ``[addr, addr + size)``; ``label`` names what the kernel reserved there.

        The label is not part of the hook (backends never need it): it goes to the report's
        ``allocations[].label`` of this reserve record, which ``bootemu map`` reads.
        """
        records = self._boot.allocations if self._boot is not None else None
        before = len(records) if records is not None else 0
        try:
            return int(
                _required(
                    self._hook.bootemu_alloc_reserve(
                        addr=addr, size=size, node=node, exclusive=exclusive
                    ),
                    "reserve",
                    self._pm,
                )
            )
        finally:
            # The core's recorder appends exactly one record per reserve, also when the
            # backend BUG()s; label that record.
            if label and records is not None and len(records) == before + 1:
                records[-1].label = label

    def alloc(self, *, request: AllocRequest) -> int | None:
        return self._hook.bootemu_alloc_alloc(request=request)

    def handoff(self, *, sink: PageSink, node: int | None) -> int:
        return int(
            _required(self._hook.bootemu_alloc_handoff(sink=sink, node=node), "handoff", self._pm)
        )

    def overhead_bytes(self) -> int:
        return int(self._hook.bootemu_alloc_overhead_bytes() or 0)

    def stats(self) -> dict[str, Any]:
        return dict(self._hook.bootemu_alloc_stats() or {})


class ArchFacade:
    """The arch hooks as typed methods, keyword arguments only (the sequencer's view)."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm
        self._hook = pm.hook

    def check_machine(self, *, machine: Machine) -> None:
        self._hook.bootemu_arch_check_machine(machine=machine)

    def info(self, *, machine: Machine) -> ArchInfo:
        """The arch's :class:`~bootemu.contract.ArchInfo` (required: no default facts)."""
        info = _required(self._hook.bootemu_arch_info(machine=machine), "arch info", self._pm)
        if not isinstance(info, ArchInfo):
            raise BootemuError(
                f"bootemu_arch_info answered {type(info).__name__}, not bootemu.contract.ArchInfo"
            )
        return info

    def firmware(self, *, boot: Boot) -> None:
        self._hook.bootemu_arch_firmware(boot=boot)

    def cmdline(self, *, boot: Boot) -> None:
        self._hook.bootemu_arch_cmdline(boot=boot)

    def layout(self, *, boot: Boot) -> Layout:
        return _required(self._hook.bootemu_arch_layout(boot=boot), "arch layout", self._pm)

    def register(self, *, boot: Boot, allocator: AllocatorFacade) -> None:
        self._hook.bootemu_arch_register(boot=boot, allocator=allocator)

    def enable(self, *, boot: Boot, allocator: AllocatorFacade) -> None:
        self._hook.bootemu_arch_enable(boot=boot, allocator=allocator)

    def reserve(self, *, boot: Boot, allocator: AllocatorFacade) -> None:
        self._hook.bootemu_arch_reserve(boot=boot, allocator=allocator)

    def allocate(self, *, boot: Boot, allocator: AllocatorFacade) -> None:
        self._hook.bootemu_arch_allocate(boot=boot, allocator=allocator)

    def handoff(
        self, *, boot: Boot, allocator: AllocatorFacade, pagealloc: PageAllocModel
    ) -> int | None:
        return self._hook.bootemu_arch_handoff(boot=boot, allocator=allocator, pagealloc=pagealloc)

    def summary(self, *, boot: Boot, pagealloc: PageAllocModel | None) -> None:
        self._hook.bootemu_arch_summary(boot=boot, pagealloc=pagealloc)


class LifecycleFacade:
    """The observer hooks (every registered plugin may answer)."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._hook = pm.hook

    def before_phase(self, *, boot: Boot, phase: str) -> None:
        self._hook.bootemu_before_phase(boot=boot, phase=phase)

    def after_phase(self, *, boot: Boot, phase: str) -> None:
        self._hook.bootemu_after_phase(boot=boot, phase=phase)

    def on_phase_error(self, *, boot: Boot, phase: str, error: BaseException) -> None:
        self._hook.bootemu_on_phase_error(boot=boot, phase=phase, error=error)

    def after_boot(self, *, boot: Boot, report: dict[str, Any]) -> None:
        self._hook.bootemu_after_boot(boot=boot, report=report)

"""The x86_32 arch plugin: i386 Linux early memory setup, one profile per kernel generation.

- ``"2.6.25"`` (default, :mod:`bootemu_arches.x86_32.v2_6_25`): the 2008 kernel of the seed: e820 as
  BIOS-provided and user-defined maps, ``find_max_low_pfn()``, classic bootmem over lowmem
  with the bitmap after the boot page tables, one active range from pfn 0, the highmem
  handover in ``mem_init()``.
- ``"2.6.26-rc1"`` (:mod:`bootemu_arches.x86_32.v2_6_26rc1`): the bootmem2 RFC kernel (v2.6.26-rc1 +
  the RFC v1 mails), 2.6.25 plus the EBDA reservation to 1 MiB, the RFC's page-sized
  ``bootmap_size``, the ACPI wakeup size and head_32.S's boot page-table extent.
- ``"6.1"`` (:mod:`bootemu_arches.x86_32.v6_1`): the Debian 6.1 i386 kernels of ``real-boots/``:
  modern e820 messages, MAXMEM from VMALLOC_END, memblock ranges without page 0 and holes.

The plugin class only dispatches each phase hook to the profile object of the boot; the
profile classes are the data sheets (constants, defaults) plus the kernel's routines. The
``[kernel]`` keys the arch reads are documented in :mod:`bootemu_arches.x86_32.config`.
"""

from __future__ import annotations

from bootemu_arches.x86_32.config import read_config
from bootemu_arches.x86_32.schema import machine_schema
from bootemu_arches.x86_32.v2_6_25 import Linux2625
from bootemu_arches.x86_32.v2_6_26rc1 import Linux2626rc1
from bootemu_arches.x86_32.v6_1 import Linux61

from bootemu.archbase import ProfileArch
from bootemu.models import BootemuError, Machine, OwnedRange

#: Profile name -> profile class.
PROFILES: dict[str, type[Linux2625]] = {
    "2.6.25": Linux2625,
    "2.6.26-rc1": Linux2626rc1,
    "6.1": Linux61,
}


def make_profile(machine: Machine) -> Linux2625:
    """Validate ``machine`` for x86_32 and build the profile object for one boot."""
    cls = PROFILES.get(machine.kernel.profile)
    if cls is None:
        raise BootemuError(f"{machine.source}: kernel.profile: x86_32 has no profile "
                           f"{machine.kernel.profile!r} (known: {', '.join(PROFILES)})")
    highmem = machine.kernel.highmem or "64G"
    cfg = read_config(machine, cls.defaults(highmem))
    return cls(machine, cfg)


class X86_32(ProfileArch):  # noqa: N801 - the arch's name
    """i386 Linux early memory: e820, lowmem/highmem, bootmem over lowmem, highmem handover.

    Each phase runs in the boot's profile object, a :class:`bootemu.archbase.BootSteps`
    (:class:`bootemu.archbase.ProfileArch`): firmware (the sanitized BIOS map), cmdline
    (``mem=``, ``memmap=``, ``highmem=``, ``vmalloc=``), layout (max_pfn, max_low_pfn,
    highmem, zones), allocate (mem_map, usemaps, page tables, per-cpu areas, pid/dentry/inode
    hashes) and summary (``Memory:``). The bookkeeping steps it does its kernel's way
    (:class:`~bootemu_arches.x86_32.v2_6_25_mm.Bootmem2625`): ``register_blocks``
    (init_bootmem(): one span on node 0, pfns [0, max_low_pfn), holes included),
    ``place_bitmaps`` (at min_low_pfn, after the boot page tables, not searched for),
    ``free_ram`` (register_bootmem_low_pages(): e820 order, no node), ``reserve_kept``
    (setup_bootmem_allocator()'s reservations in order: kernel image to the bitmap, page 0,
    EBDA, trampoline, MP table, initrd, crashkernel) and ``handoff_nodes`` (mem_init():
    free_all_bootmem() on node 0, then the highmem pages).
    """

    #: The machine-file tables this arch reads (:mod:`bootemu_arches.x86_32.schema`).
    MACHINE_SCHEMA = machine_schema(tuple(PROFILES))

    def make_profile(self, machine: Machine) -> Linux2625:
        return make_profile(machine)

    def owned(self, profile: Linux2625) -> tuple[OwnedRange, ...]:
        """The kernel image, ``_text`` to ``_end`` (``kernel.image_start`` / ``image_end``)."""
        cfg = profile.cfg
        return (OwnedRange(cfg.image_start, cfg.image_end, "kernel image"),)


__all__ = ["PROFILES", "X86_32", "make_profile"]

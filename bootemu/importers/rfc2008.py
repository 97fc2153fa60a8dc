"""Which profile and backend a log of the bootmem2 RFC kernel needs (for ``import-dmesg``).

The RFC kernel (v2.6.26-rc1 + "[rfc][patch 1/3..3/3] bootmem2", 2008-05-05) prints, from
``bootmem_setup()`` of the posted ``mm/bootmem2.c``::

    bootmem: %lu pages on %d block(s) - map @ pfn %lx

which no other kernel prints (classic bootmem prints nothing there; bootmem2 III and the
merged 2.6.27 rewrite print other texts). That line means profile ``2.6.26-rc1`` and backend
``bootmem2-rfc1`` (the posted code, whose pages the kernel really handed out); a
``Linux version 2.6.26-rc1`` without it is the plain tree on classic bootmem.

:func:`infer_rfc` is a separate, small decision so that the importer calls it first and falls
back to its own version rules when it returns None.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bootemu.importers.bootlog import strip_dmesg_prefix

__all__ = ["RFC_ALLOCATOR", "RFC_PROFILE", "RfcChoice", "infer_rfc"]

RFC_PROFILE = "2.6.26-rc1"
RFC_ALLOCATOR = "bootmem2-rfc1"

_SETUP = re.compile(r"^bootmem: \d+ pages on \d+ block\(s\) - map @ pfn [0-9a-f]+$")
_VERSION = re.compile(r"^Linux version (\S+)")


@dataclass(frozen=True)
class RfcChoice:
    """The decision and its evidence: ``profile``, ``allocator`` and a note quoting the line."""

    profile: str
    allocator: str
    note: str


def infer_rfc(lines: Iterable[str]) -> RfcChoice | None:
    """Profile and backend for a v2.6.26-rc1 log, or None for any other kernel.

    Reads the first boot of the capture (up to a second ``Linux version`` line). With the
    RFC's ``bootmem: ... map @ pfn`` line: ``2.6.26-rc1`` on ``bootmem2-rfc1``; a
    ``Linux version 2.6.26-rc1`` without it: ``2.6.26-rc1`` on classic ``bootmem``.
    """
    release: str | None = None
    for raw in lines:
        line = strip_dmesg_prefix(raw).rstrip()
        if m := _VERSION.match(line):
            if release is not None:
                break  # a second boot in the same capture
            release = m.group(1)
            continue
        if _SETUP.match(line):
            return RfcChoice(
                RFC_PROFILE,
                RFC_ALLOCATOR,
                f"profile {RFC_PROFILE} on {RFC_ALLOCATOR}: '{line}' is printed by "
                "bootmem_setup() of the bootmem2 RFC v1 (2008-05-05)",
            )
    if release is not None and release.startswith(RFC_PROFILE):
        return RfcChoice(
            RFC_PROFILE,
            "bootmem",
            f"profile {RFC_PROFILE} on bootmem ('Linux version {release}' without the "
            "bootmem2 RFC's 'bootmem: ... map @ pfn' line)",
        )
    return None

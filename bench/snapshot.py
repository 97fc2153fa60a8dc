"""Snapshot every boot bootemu can run from the repository, to prove a refactor changed nothing.

For every built-in preset, every machine file under ``tests/data`` and every real boot log
under ``tests/data`` (6.1 and 2008, imported with ``import_dmesg``), on every installed
backend, write the JSON trace (every event, the ``dmesg`` lines included) and the JSON report
to ``OUT/<machine>@<backend>.trace.jsonl`` / ``.report.json``. A machine that cannot be loaded
or booted gets an ``.error`` file holding the one-line error, so an error that changes is seen
too.

    python bench/snapshot.py take /tmp/before
    ... refactor ...
    python bench/snapshot.py take /tmp/after
    python bench/snapshot.py compare /tmp/before /tmp/after

Each preset of a modest size is booted again under :data:`VARIANTS` (``--set`` overrides:
other profiles, command lines, initrd, crashkernel, the numa64 switches), so that paths the
presets themselves do not take (a ``mem=`` cut, highmem off, a relocated initrd, generic frees,
``numa=off`` ...) are in the snapshot too; a variant a machine rejects leaves its ``.error``.

``compare`` lists every file that differs or exists on one side only and exits 1 if any does.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


#: ``(name, overrides)`` booted on every preset not in :data:`NO_VARIANTS`.
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("p2625", ("kernel.profile=2.6.25",)),
    ("p2626rc1", ("kernel.profile=2.6.26-rc1",)),
    ("p61", ("kernel.profile=6.1",)),
    ("mem300m", ("kernel.cmdline=mem=300M",)),
    ("mem3g", ("kernel.cmdline=mem=3G",)),
    ("highmem0", ("kernel.cmdline=highmem=0",)),
    ("memmap", ("kernel.cmdline=memmap=16M$64M",)),
    ("crash", ("kernel.cmdline=crashkernel=64M@16M",)),
    ("initrd", ("kernel.initrd_start=0x1800000", "kernel.initrd_size=0x400000")),
    ("numaoff", ("kernel.cmdline=numa=off",)),
    ("generic", ("kernel.free_ram=generic",)),
    ("hulls", ("kernel.srat_check=hulls",)),
)
#: Presets too large to boot a dozen more times in a snapshot.
NO_VARIANTS = ("numa-4t", "sgi-sparse", "pae-64g")


def machines() -> Iterator[tuple[str, object]]:
    """``(name, machine-or-error)`` for every preset, data machine file and real boot log."""
    from bootemu.importers import import_dmesg
    from bootemu.machine import list_presets, load_machine
    from bootemu.models import BootemuError

    refs: list[tuple[str, str]] = [(f"preset-{n}", n) for n, _ in list_presets()]
    refs += [
        (f"file-{p.relative_to(DATA).as_posix().replace('/', '-')}", str(p))
        for p in sorted(DATA.rglob("*.toml"))
    ]
    refs_overrides: list[tuple[str, str, tuple[str, ...]]] = [(n, r, ()) for n, r in refs]
    refs_overrides += [
        (f"preset-{n}+{v}", n, sets)
        for n, _ in list_presets()
        if n not in NO_VARIANTS
        for v, sets in VARIANTS
    ]
    for name, ref, sets in refs_overrides:
        try:
            yield name, load_machine(ref, overrides=sets)
        except BootemuError as exc:
            yield name, str(exc)
    logs = sorted(
        p
        for p in [*(DATA / "real-boots").glob("*.log"), *(DATA / "real-boots-2008").rglob("*.log")]
        if "zoneinfo" not in p.name
    )
    kernels = _kernels_of_2008_cases()
    for p in logs:
        rel = p.relative_to(DATA).as_posix()
        name = "log-" + rel.replace("/", "-")
        try:
            machine, _ = import_dmesg(
                p.read_text(), source=rel, arch=None, profile=None, overrides=()
            )
            yield name, machine
        except BootemuError as exc:
            yield name, str(exc)
        kernel = kernels.get(p.stem)
        if kernel is None:
            continue
        # The 2008 boots again, imported with their kernel's .config and System.map.
        try:
            machine, _ = import_dmesg(
                p.read_text(),
                source=rel,
                arch=None,
                profile=None,
                overrides=(),
                **_kbuild(kernel),
            )
            yield name + "-kbuild", machine
        except (BootemuError, TypeError) as exc:
            yield name + "-kbuild", str(exc)


def _kernels_of_2008_cases() -> dict[str, Path]:
    """case -> its kernel's folder (``cases.txt``: ``case kernel -m ...|cmdline``)."""
    cases = DATA / "real-boots-2008" / "cases.txt"
    out: dict[str, Path] = {}
    for line in cases.read_text().splitlines() if cases.exists() else ():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = DATA / "real-boots-2008" / "kernels" / parts[1]
    return out


def _kbuild(kernel: Path) -> dict[str, object]:
    """``kconfig`` / ``system_map`` arguments of import_dmesg() for a kernel folder."""
    from bootemu.importers.kbuild import read_kconfig, read_system_map

    return {
        "kconfig": read_kconfig(kernel / "config"),
        "system_map": read_system_map(kernel / "System.map"),
    }


def take(out: Path) -> int:
    """Boot everything on every backend into ``out``; returns the number of boots."""
    from bootemu import tracing
    from bootemu.models import BootemuError
    from bootemu.plugins import ALLOCATOR_GROUP, discover
    from bootemu.report import dumps
    from bootemu.sequencer import boot_machine

    out.mkdir(parents=True, exist_ok=True)
    backends = list(discover(ALLOCATOR_GROUP))
    count = 0
    for name, machine in machines():
        if isinstance(machine, str):
            (out / f"{name}.error").write_text(machine + "\n")
            continue
        for backend in backends:
            stem = out / f"{name}@{backend}"
            stream = io.StringIO()
            tracing.configure("json", stream)
            try:
                result = boot_machine(machine, allocator=backend)
            except BootemuError as exc:
                (stem.with_suffix(".error")).write_text(str(exc) + "\n")
                continue
            finally:
                tracing.configure(None)
            Path(f"{stem}.trace.jsonl").write_text(stream.getvalue())
            Path(f"{stem}.report.json").write_text(dumps(result.report))
            count += 1
    return count


def compare(a: Path, b: Path) -> int:
    """Print the files that differ between two snapshots; 1 if any does."""
    names = sorted({p.name for p in a.iterdir()} | {p.name for p in b.iterdir()})
    bad = 0
    for n in names:
        pa, pb = a / n, b / n
        if not pa.exists() or not pb.exists():
            print(f"only in {a if pa.exists() else b}: {n}")
            bad += 1
        elif pa.read_bytes() != pb.read_bytes():
            print(f"differs: {n}")
            bad += 1
    print(f"{len(names)} files compared, {bad} differ")
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "take":
        print(f"{take(Path(argv[1]))} boots written to {argv[1]}")
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The ``bootemu`` command line (argparse). ``main([...])`` runs in-process for tests.

Exit codes: 0 the boot completed with no violation; 1 the emulated kernel panicked or a check
found a violation; 2 bad input or usage (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from bootemu import tracing
from bootemu.models import BootemuError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def _add_set(p: argparse.ArgumentParser, text: str | None = None) -> None:
    """``--set KEY=VALUE`` (repeatable): overrides of machine-file keys; ``text`` its help."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=text
    )


def _add_machine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("machine", help="machine file (TOML) or built-in preset name")
    _add_set(p, "override a machine-file key, e.g. --set kernel.cmdline=mem=512M")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bootemu", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("boot", help="boot a machine once and trace it")
    _add_machine_args(p)
    p.add_argument("--allocator", help="allocator backend (overrides the machine file)")
    p.add_argument("--arch", help="arch plugin (overrides the machine file)")
    p.add_argument(
        "--log-format",
        choices=tracing.LOG_FORMATS,
        help="trace format on stdout (default: console on a terminal, json otherwise)",
    )
    p.add_argument("--report", type=Path, help="write the boot report (JSON) to this file")
    p.add_argument("--disable", action="append", default=[], help="leave out an observer plugin")

    p = sub.add_parser("compare", help="boot one machine on several backends, side by side")
    _add_machine_args(p)
    p.add_argument(
        "--allocators", default="bootmem,bootmem2", help="comma-separated backends to compare"
    )
    p.add_argument("--arch", help="arch plugin (overrides the machine file)")
    p.add_argument("--report", type=Path, help="write all boots' reports (JSON) to this file")
    p.add_argument(
        "--replay", type=Path, metavar="LOG", help="replay a traced real log's calls on each"
    )

    p = sub.add_parser("replay", help="replay a traced real boot's allocator calls on a backend")
    p.add_argument("log", type=Path, help="boot log with bootmem_trace: or memblock=debug lines")
    p.add_argument("--allocator", required=True, help="allocator backend to replay on")
    p.add_argument("--machine", help="machine file or preset (default: imported from the log)")
    p.add_argument("--kconfig", type=Path, help="the kernel's .config (for the import)")
    p.add_argument("--system-map", type=Path, help="the kernel's System.map (for the import)")
    _add_set(p)

    p = sub.add_parser("explain", help="where every page of a real boot's Memory: line went")
    p.add_argument(
        "log", type=Path, help="kernel boot log (or a machine file / preset: its emulated boot)"
    )
    p.add_argument("--kconfig", type=Path, help="the kernel's .config")
    p.add_argument("--system-map", type=Path, help="the kernel's System.map")
    p.add_argument("--allocator", help="backend to boot on (default: the kernel's own)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format")

    sub.add_parser("plugins", help="list arches and allocator backends, and where each comes from")
    sub.add_parser("machines", help="list the built-in machine presets")

    p = sub.add_parser("import-dmesg", help="write a machine file that reproduces a boot log")
    p.add_argument("log", type=Path, help="kernel boot log (dmesg or serial capture)")
    p.add_argument("-o", "--output", type=Path, help="machine file to write (default: stdout)")
    p.add_argument("--arch", help="arch, when the log does not say")
    p.add_argument("--profile", help="kernel profile, when the log does not say")
    p.add_argument(
        "--kconfig",
        type=Path,
        metavar="FILE",
        help="the kernel's .config: Kconfig choices the log does not show",
    )
    p.add_argument(
        "--system-map",
        type=Path,
        metavar="FILE",
        help="the kernel's System.map: the exact image layout",
    )
    _add_set(p)

    p = sub.add_parser("import-memmap", help="write a machine file from /sys/firmware/memmap")
    p.add_argument("dir", nargs="?", type=Path, default=Path("/sys/firmware/memmap"))
    p.add_argument("-o", "--output", type=Path, help="machine file to write (default: stdout)")
    p.add_argument("--arch", default="x86_32", help="arch of the machine file (default x86_32)")
    _add_set(p)

    p = sub.add_parser(
        "map",
        help="draw physical memory after the boot, one band per backend (SVG or HTML)",
        description="Boot MACHINE (a machine file, a preset, or a boot log: .log/.txt or any "
        "non-.toml file, imported as import-dmesg does) once per backend and draw physical "
        "memory side by side: e820 types, node blocks, reservations, allocations coloured by "
        "owner, the pages handed to the buddy allocator, violations in red. The address axis "
        "is broken: holes collapse, every other piece is as tall as the log of its size, "
        "ticks are physical addresses. Same input, same bytes. Exit 1 when a boot panicked or "
        "a check found a violation (the picture is still written).",
    )
    p.add_argument("machine", help="machine file (TOML), built-in preset, or boot log (.log, .txt)")
    _add_set(p, "override a machine-file key (of the imported machine, for a log)")
    p.add_argument(
        "--allocators",
        help="comma-separated backends, one band each (default: every installed backend, "
        "the machine's own first)",
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="picture to write: .svg or .html"
    )
    p.add_argument("--arch", help="for a boot log: the arch, when the log does not say")
    p.add_argument(
        "--profile", help="for a boot log: the kernel profile, when the log does not say"
    )

    p = sub.add_parser("bench", help="time boots of the largest presets, or sweep RAM sizes")
    p.add_argument("machines", nargs="*", help="presets or files (default: the large presets)")
    p.add_argument(
        "--allocators",
        help="comma-separated backends (default: bootmem,bootmem2; with --sweep: all four)",
    )
    p.add_argument("--repeat", type=int, default=3, help="boots per measurement (best is kept)")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="boot generated 8-node machines of each --sizes TiB, each in a child process, "
        "and print time and peak RSS per size",
    )
    p.add_argument("--sizes", default="1,4,16,64", help="--sweep: sizes in TiB (1..64)")
    p.add_argument("--profiles", default="2.6.25,6.1", help="--sweep: kernel profiles")
    return parser


def _write(path: Path | None, text: str) -> None:
    if path is None:
        sys.stdout.write(text)
        return
    try:
        path.write_text(text)
    except OSError as exc:
        raise BootemuError(f"{path}: cannot write: {exc.strerror}") from exc


def _cmd_boot(args: argparse.Namespace) -> int:
    from bootemu.machine import load_machine
    from bootemu.report import dumps
    from bootemu.sequencer import boot_machine

    machine = load_machine(args.machine, overrides=args.overrides)
    log_format = args.log_format or ("console" if sys.stdout.isatty() else "json")
    tracing.configure(log_format, sys.stdout)
    try:
        result = boot_machine(
            machine, allocator=args.allocator, arch=args.arch, disabled=args.disable
        )
    finally:
        tracing.configure(None)
    if args.report is not None:
        _write(args.report, dumps(result.report))
    if result.exit_code:
        print(f"bootemu: {one_line(outcome_line(result.report))}", file=sys.stderr)
    return result.exit_code


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped: whatever a file path
    or a value holds, the CLI's message stays one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def outcome_line(report: dict) -> str:
    """One line saying why a boot did not end clean (panic and/or violations by kind)."""
    parts = []
    if report["outcome"] != "ok":
        parts.append(f"panic: {report['panic_message']}")
    kinds: dict[str, int] = {}
    for v in report["violations"]:
        kinds[v["kind"]] = kinds.get(v["kind"], 0) + v["end_pfn"] - v["start_pfn"]
    if kinds:
        parts.append("violations: " + ", ".join(f"{k} {n} pages" for k, n in kinds.items()))
    return f"{report['machine']} on {report['allocator']}: " + "; ".join(parts)


def _cmd_compare(args: argparse.Namespace) -> int:
    from bootemu.compare import compare_machine, render_table
    from bootemu.machine import load_machine
    from bootemu.report import dumps

    machine = load_machine(args.machine, overrides=args.overrides)
    names = [n.strip() for n in args.allocators.split(",") if n.strip()]
    if not names:
        raise BootemuError("--allocators: no backend named")
    tracing.configure(None)
    if args.replay is not None:
        from bootemu.replay import replay_log

        text = _read_log(args.replay)
        replays = [
            replay_log(text, source=str(args.replay), allocator=n, machine=machine) for n in names
        ]
        results = [r.result for r in replays]
        sys.stdout.write(render_table(results, replays=replays))
    else:
        results = compare_machine(machine, names, arch=args.arch)
        sys.stdout.write(render_table(results))
    if args.report is not None:
        _write(args.report, dumps({"machine": machine.name, "boots": [r.report for r in results]}))
    failed = [outcome_line(r.report) for r in results if r.exit_code]
    if failed:  # one line for all the boots that did not end clean, as boot prints one
        print(f"bootemu: {one_line(' | '.join(failed))}", file=sys.stderr)
    return max(r.exit_code for r in results)


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise BootemuError(f"{path}: cannot read: {exc.strerror}") from exc


def _cmd_replay(args: argparse.Namespace) -> int:
    from bootemu.machine import load_machine
    from bootemu.replay import render_replay, replay_log

    text = _read_log(args.log)
    from bootemu.importers.kbuild import read_kconfig, read_system_map

    machine = None
    if args.machine is not None:
        machine = load_machine(args.machine, overrides=args.overrides)
    tracing.configure(None)
    res = replay_log(
        text,
        source=str(args.log),
        allocator=args.allocator,
        machine=machine,
        overrides=args.overrides,
        kconfig=None if args.kconfig is None else read_kconfig(args.kconfig),
        system_map=None if args.system_map is None else read_system_map(args.system_map),
    )
    sys.stdout.write(render_replay(res))
    if res.exit_code:
        print(f"bootemu: {outcome_line(res.result.report)}", file=sys.stderr)
    return res.exit_code


def _cmd_explain(args: argparse.Namespace) -> int:
    from bootemu.explain import explain_log, render_json, render_text

    tracing.configure(None)
    system_map = None if args.system_map is None else str(args.system_map)
    if args.log.suffix == ".toml" or (not args.log.exists() and args.log.parent == Path(".")):
        # A machine file or preset: its emulated boot, explained the same way.
        from bootemu.explain import explain_machine
        from bootemu.machine import load_machine

        machine = load_machine(str(args.log), overrides=[])
        expl = explain_machine(machine, allocator=args.allocator, system_map=system_map)
    else:
        expl = explain_log(
            _read_log(args.log),
            source=str(args.log),
            allocator=args.allocator,
            kconfig=None if args.kconfig is None else str(args.kconfig),
            system_map=system_map,
        )
    sys.stdout.write(render_json(expl) if args.format == "json" else render_text(expl))
    return expl.exit_code


def _cmd_plugins(_args: argparse.Namespace) -> int:
    from bootemu.plugins import ALLOCATOR_GROUP, ARCH_GROUP, OBSERVER_GROUP, discover

    for title, group in (
        ("arches", ARCH_GROUP),
        ("allocators", ALLOCATOR_GROUP),
        ("observers", OBSERVER_GROUP),
    ):
        found = discover(group)
        print(f"{title} ({group}):")
        if not found:
            print("  (none)")
        for info in found.values():
            print(f"  {info.name:<18} {info.value:<36} {info.distribution}")
            if info.description:
                print(f"  {'':<18} {info.description}")
    return 0


def _cmd_machines(_args: argparse.Namespace) -> int:
    from bootemu.machine import list_presets

    for name, description in list_presets():
        print(f"{name:<22} {description}")
    return 0


def _cmd_import_dmesg(args: argparse.Namespace) -> int:
    from bootemu.importers import import_dmesg
    from bootemu.importers.kbuild import read_kconfig, read_system_map
    from bootemu.machine import dump_machine

    try:
        text = args.log.read_text(errors="replace")
    except OSError as exc:
        raise BootemuError(f"{args.log}: cannot read: {exc.strerror}") from exc
    kconfig = read_kconfig(args.kconfig) if args.kconfig else None
    system_map = read_system_map(args.system_map) if args.system_map else None
    machine, notes = import_dmesg(
        text,
        source=str(args.log),
        arch=args.arch,
        profile=args.profile,
        overrides=args.overrides,
        kconfig=kconfig,
        system_map=system_map,
    )
    for note in notes:
        print(f"bootemu: {note}", file=sys.stderr)
    _write(args.output, dump_machine(machine))
    return 0


def _cmd_import_memmap(args: argparse.Namespace) -> int:
    from bootemu.importers import import_memmap
    from bootemu.machine import dump_machine

    machine = import_memmap(args.dir, arch=args.arch, overrides=args.overrides)
    _write(args.output, dump_machine(machine))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from bootemu.bench import run_bench

    if args.sweep:
        return _cmd_sweep(args)
    names = [n.strip() for n in (args.allocators or "bootmem,bootmem2").split(",") if n.strip()]
    tracing.configure(None)
    sys.stdout.write(run_bench(args.machines, names, repeat=args.repeat))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from bootemu import sweep

    if args.machines:
        raise BootemuError("bench --sweep: takes no MACHINE (it generates its machines)")
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        raise BootemuError(f"--sizes: {args.sizes!r} is not a list of whole TiB") from None
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    for p in profiles:
        if p not in sweep.PROFILES:
            raise BootemuError(f"--profiles: unknown profile {p!r} (known: 2.6.25, 6.1)")
    allocs = args.allocators or ",".join(sweep.ALLOCATORS)
    names = [n.strip() for n in allocs.split(",") if n.strip()]
    sys.stdout.write(sweep.run_sweep(sizes, profiles, names))
    return 0


def _cmd_map(args: argparse.Namespace) -> int:
    from bootemu.mapview import map_machine

    names = None
    if args.allocators is not None:
        names = [n.strip() for n in args.allocators.split(",") if n.strip()]
    tracing.configure(None)
    text, results = map_machine(
        args.machine, names, args.overrides, args.output, arch=args.arch, profile=args.profile
    )
    _write(args.output, text)
    failed = [outcome_line(r.report) for r in results if r.exit_code]
    if failed:  # one line for every band that did not end clean, as compare prints
        print(f"bootemu: {one_line(' | '.join(failed))}", file=sys.stderr)
    return max(r.exit_code for r in results)


COMMANDS = {
    "boot": _cmd_boot,
    "compare": _cmd_compare,
    "replay": _cmd_replay,
    "explain": _cmd_explain,
    "plugins": _cmd_plugins,
    "machines": _cmd_machines,
    "import-dmesg": _cmd_import_dmesg,
    "import-memmap": _cmd_import_memmap,
    "bench": _cmd_bench,
    "map": _cmd_map,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one line (or --help)
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args)
    except BootemuError as exc:
        print(f"bootemu: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bootemu boot ... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

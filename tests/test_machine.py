"""bootemu.machine: presets, validation messages, --set overrides and the dump/load round trip.

Preset maps are checked against the real boots they were copied from
(tests/data/e820/real-boots-e820.json, from tests/data/real-boots/summary.json).
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
from bootemu_arches.numa64 import Numa64
from bootemu_arches.x86_32 import X86_32
from bootemu_arches.x86_32.config import HIGHMEM_CHOICES as HIGHMEM_MODELS
from hypothesis import given, settings
from hypothesis import strategies as st

from bootemu.e820 import MAX_TYPE, TYPE_BY_NAME
from bootemu.machine import (
    dump_machine,
    list_presets,
    load_machine,
    machine_from_toml,
)
from bootemu.models import (
    ALLOC_WRAPPERS,
    BootemuError,
    E820Entry,
    KernelSpec,
    Machine,
    NumaMemory,
    WorkloadOp,
)
from bootemu.schema import Bool, Custom, Enum, Size

REAL = json.loads(
    (Path(__file__).parent / "data" / "e820" / "real-boots-e820.json").read_text()
)["cases"]
TYPES = {"usable": 1, "reserved": 2}
G = 1 << 30

GOOD = """\
[machine]
arch = "x86_32"

[[firmware.e820]]
start = 0
end = 0x9fc00
type = "usable"

[[firmware.e820]]
start = "1M"
size = "511M"
type = 1
"""


def write(tmp_path: Path, text: str, name: str = "m.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def error_of(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    path = write(tmp_path, text)
    with pytest.raises(BootemuError) as err:
        load_machine(path, overrides=overrides)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ")
    return msg[len(path) + 2 :]


# --------------------------------------------------------------------------------------------
# Presets

PRESET_CASES = {
    "qemu-pc-512m-i386": "pae_512M",
    "qemu-pc-1g-i386": "pae_1G",
    "qemu-pc-2g-i386": "pae_2G",
    "qemu-pc-4g-i386": "pae_4G",
}


@pytest.mark.parametrize(("preset", "case"), sorted(PRESET_CASES.items()))
def test_qemu_presets_carry_the_real_seabios_maps(preset, case):
    m = load_machine(preset)
    assert (m.name, m.arch, m.allocator) == (preset, "x86_32", "bootmem2")
    assert (m.kernel.profile, m.kernel.highmem) == ("2.6.25", "64G")
    # summary.json ends are inclusive.
    assert m.e820 == tuple(E820Entry(s, e + 1, TYPES[t]) for s, e, t in REAL[case]["e820_bios"])


def test_pae_64g_preset():
    m = load_machine("pae-64g")
    assert (m.arch, m.allocator, m.kernel.profile, m.kernel.highmem) == (
        "x86_32", "bootmem2", "2.6.25", "64G",
    )
    low_top = 3 * G - (128 << 10)  # SeaBIOS reserves the last 128K below the top of low RAM
    assert m.e820 == (
        E820Entry(0, 0x9FC00, 1),
        E820Entry(0x9FC00, 0xA0000, 2),
        E820Entry(0xF0000, 0x100000, 2),
        E820Entry(1 << 20, low_top, 1),
        E820Entry(low_top, 3 * G, 2),
        E820Entry(0xFFFC0000, 4 * G, 2),
        E820Entry(4 * G, 4 * G + 61 * G, 1),
    )


def test_list_presets_has_descriptions():
    presets = dict(list_presets())
    for name in [*PRESET_CASES, "pae-64g"]:
        assert presets[name], name
    assert list(presets) == sorted(presets)


def test_every_preset_loads_and_round_trips():
    for name, _ in list_presets():
        m = load_machine(name)
        again = machine_from_toml(dump_machine(m), source=m.source)
        assert again == m


# --------------------------------------------------------------------------------------------
# Loading


def test_good_file_defaults_and_sizes(tmp_path):
    path = write(tmp_path, GOOD, "my-box.toml")
    m = load_machine(path)
    assert m == Machine(
        name="my-box",  # the file stem
        arch="x86_32",
        allocator="bootmem2",
        kernel=KernelSpec(profile="2.6.25", cmdline="", highmem=None, config=()),
        e820=(E820Entry(0, 0x9FC00, 1), E820Entry(1 << 20, 512 << 20, 1)),
        source=path,
    )


def test_kernel_config_keys(tmp_path):
    # The keys and their kinds are x86_32's schema (arches/x86_32/schema.py): sizes parse,
    # booleans stay booleans.
    path = write(tmp_path, GOOD + textwrap.dedent("""
        [kernel]
        profile = "6.1"
        cmdline = "mem=512M nokaslr"
        highmem = "4G"
        vmalloc_reserve = "256M"
        image_start = "0x100000"
        initrd_size = 4096
        smp = true
        """))
    k = load_machine(path).kernel
    assert (k.profile, k.cmdline, k.highmem) == ("6.1", "mem=512M nokaslr", "4G")
    assert k.config == (
        ("image_start", 0x100000),
        ("initrd_size", 4096),
        ("smp", True),
        ("vmalloc_reserve", 256 << 20),
    )
    assert k.get("image_start") == 0x100000


def test_a_string_stays_a_string_unless_the_arch_says_size(tmp_path):
    # numa64 declares cpu_nodes as text: "1" is a node list, not the size 1 (the core used to
    # turn every size-looking string into an integer).
    text = GOOD.replace("x86_32", "numa64") + '\n[kernel]\ncpu_nodes = "1"\n'
    assert load_machine(write(tmp_path, text)).kernel.get("cpu_nodes") == "1"


@pytest.mark.parametrize("preset", [name for name, _ in list_presets()])
def test_a_typo_in_an_arch_key_is_exit_2_naming_it(preset):
    with pytest.raises(BootemuError, match=r": kernel\.typo_key: unknown key \(known: "):
        load_machine(preset, overrides=["kernel.typo_key=yes"])


def test_the_core_leaves_the_tables_of_an_arch_it_does_not_know(tmp_path):
    # No arch "dtx" is installed: [dt] waits, unvalidated, for the plugin that boots it.
    text = '[machine]\narch = "dtx"\n\n[[dt.memory]]\nreg = "2G"\n'
    m = load_machine(write(tmp_path, text))
    assert m.raw == {"dt": {"memory": [{"reg": "2G"}]}} and m.validated_for is None
    assert m.e820 == () and m.tables == {}


def test_workload_and_numa(tmp_path):
    path = write(tmp_path, GOOD.replace("x86_32", "numa64") + textwrap.dedent("""
        [[numa.memory]]
        node = 1
        start = "1G"
        end = "2G"

        [[workload]]
        op = "alloc"
        size = "64K"
        align = 4096
        node = 1
        wrapper = "__alloc_bootmem_node"
        label = "hash"

        [[workload]]
        op = "reserve"
        addr = "16M"
        size = "1M"
        exclusive = true

        [[workload]]
        op = "free"
        addr = 0x2000000
        size = 4096
        """))
    m = load_machine(path)
    assert m.numa == (NumaMemory(1, G, 2 * G),)
    assert m.workload == (
        WorkloadOp("alloc", 64 << 10, 4096, 0, 1, None, "__alloc_bootmem_node", False, "hash"),
        WorkloadOp("reserve", 1 << 20, addr=16 << 20, exclusive=True),
        WorkloadOp("free", 4096, addr=0x2000000),
    )


def test_overrides(tmp_path):
    path = write(tmp_path, GOOD)
    m = load_machine(
        path,
        overrides=[
            "kernel.highmem=64G",
            "kernel.cmdline=mem=512M",  # only the first '=' separates key and value
            "machine.allocator=bootmem",
            "kernel.profile=6.1",  # a TOML float, kept as the text typed
            "kernel.initrd_size=0x1000",
            "firmware.e820.1.type=reserved",
            "machine.name=\"quoted\"",
        ],
    )
    assert (m.kernel.highmem, m.kernel.cmdline, m.allocator, m.kernel.profile, m.name) == (
        "64G", "mem=512M", "bootmem", "6.1", "quoted",
    )
    assert m.kernel.config == (("initrd_size", 0x1000),)
    assert m.e820[1].type == 2


def test_preset_with_override():
    m = load_machine("qemu-pc-1g-i386", overrides=["kernel.highmem=off"])
    assert m.kernel.highmem == "off"
    assert m.source.endswith("presets/qemu-pc-1g-i386.toml")


# --------------------------------------------------------------------------------------------
# Errors: one line, naming the file and the key or line


def test_malformed_toml_names_the_line(tmp_path):
    msg = error_of(tmp_path, '[machine]\narch = "x86_32"\nname = = 3\n')
    assert msg.startswith("line 3: ")
    assert "(at line" not in msg
    msg = error_of(tmp_path, '[machine]\narch = [1,\n')
    assert msg.startswith("line 2: ")


def test_unknown_e820_type(tmp_path):
    text = GOOD + '\n[[firmware.e820]]\nstart = "2G"\nsize = "1M"\ntype = "foo"\n'
    msg = error_of(tmp_path, text)
    assert msg.startswith("firmware.e820[2].type: unknown e820 type 'foo' (known: usable, ")
    for name in TYPE_BY_NAME:
        assert name in msg
    msg = error_of(tmp_path, text.replace('"foo"', "0"))
    assert msg.startswith("firmware.e820[2].type: e820 type 0 out of range")


@pytest.mark.parametrize(
    ("snippet", "key", "what"),
    [
        ("start = 0\nsize = -4096", "firmware.e820[2].size", "negative size -4096"),
        ("start = -1\nend = 4096", "firmware.e820[2].start", "negative size -1"),
        ("start = 0x2000\nend = 0x1000", "firmware.e820[2].end", "end 0x1000 <= start 0x2000"),
        ("start = 0x2000\nend = 0x2000", "firmware.e820[2].end", "end 0x2000 <= start 0x2000"),
        ("start = 0\nsize = 0", "firmware.e820[2].size", "zero size"),
        ("start = 0\nend = 1\nsize = 1", "firmware.e820[2]", "give end or size, not both"),
        ("end = 4096", "firmware.e820[2].start", "missing"),
        ("start = 0", "firmware.e820[2].end", "missing"),
        ("start = 0\nend = \"12Q\"", "firmware.e820[2].end", "not a size"),
        ("start = 0\nend = 4096\nkind = 1", "firmware.e820[2].kind", "unknown key"),
    ],
)
def test_bad_e820_entries(tmp_path, snippet, key, what):
    text = GOOD + f"\n[[firmware.e820]]\n{snippet}\n"
    if "type" not in snippet:
        text += 'type = "reserved"\n'
    msg = error_of(tmp_path, text)
    assert msg.startswith(f"{key}: ")
    assert what in msg


def test_missing_type_and_missing_map(tmp_path):
    msg = error_of(tmp_path, GOOD + "\n[[firmware.e820]]\nstart = 0\nend = 1\n")
    assert msg == "firmware.e820[2].type: missing"
    msg = error_of(tmp_path, '[machine]\narch = "x86_32"\n')
    assert msg.startswith("firmware.e820: missing")


@pytest.mark.parametrize(
    ("extra", "key", "what"),
    [
        ("[machin]\nx = 1", "machin", "unknown table"),
        ("[firmware.e280]", "firmware.e280", "unknown key"),
        ("[[numa.memory]]\nnode = 0\nstart = 0\nend = 1\nnod = 1", "numa.memory[0].nod",
         "unknown key"),
        ("[[numa.memory]]\nstart = 0\nend = 1", "numa.memory[0].node", "missing"),
        ("[[numa.memory]]\nnode = -1\nstart = 0\nend = 1", "numa.memory[0].node", "node number"),
        ("[[workload]]\nop = \"alloc\"\nsize = 1\nalgin = 4096", "workload[0].algin",
         "unknown key"),
        ("[[workload]]\nop = \"grab\"\nsize = 1", "workload[0].op", "unknown op 'grab'"),
        ("[[workload]]\nop = \"reserve\"\nsize = 1", "workload[0].addr", "missing"),
        ("[[workload]]\nop = \"alloc\"\nsize = 1\naddr = 0", "workload[0].addr", "only reserve"),
        ("[[workload]]\nop = \"alloc\"", "workload[0].size", "missing"),
        ("[[workload]]\nop = \"alloc\"\nsize = 1\nwrapper = \"kmalloc\"", "workload[0].wrapper",
         "unknown wrapper"),
        ("[[workload]]\nop = \"alloc\"\nsize = 1\nwrapper = \"__alloc_bootmem_node\"",
         "workload[0].node", "needs a node"),
        ("[kernel]\nhighmem = \"8G\"", "kernel.highmem", "must be off, 4G, 64G"),
        ("[kernel]\nprofile = \"2.6.24\"", "kernel.profile",
         "unknown profile '2.6.24' (must be 2.6.25, 2.6.26-rc1, 6.1)"),
        ("[[numa.memory]]\nnode = 0\nstart = 0\nend = 1", "numa", "unknown table"),
        ("[kernel]\nprofile = 6.1", "kernel.profile", "expected a string"),
        ("[kernel]\nimage_start = \"xyz\"", "kernel.image_start", "not a size"),
        ("[kernel]\nratio = 1.5", "kernel.ratio", "unknown key (known: profile, cmdline, "),
        ("[kernel]\nsmp = \"yes\"", "kernel.smp", "expected true or false"),
    ],
)
def test_bad_tables_and_keys(tmp_path, extra, key, what):
    # [[numa.memory]] is numa64's (x86_32 has no SRAT: the table is unknown there).
    base = GOOD.replace("x86_32", "numa64") if "numa" in extra and key != "numa" else GOOD
    msg = error_of(tmp_path, base + "\n" + extra + "\n")
    assert msg.startswith(f"{key}: ")
    assert what in msg


@pytest.mark.parametrize(
    ("text", "key", "what"),
    [
        ("[[firmware.e820]]\nstart = 0\nend = 1\ntype = 1\n", "machine", "missing"),
        ("[machine]\nname = \"x\"\n", "machine.arch", "missing"),
        ("[machine]\narch = \"x86_32\"\nallocater = \"bootmem\"\n", "machine.allocater",
         "unknown key (known: allocator, arch, description, name)"),
        ("[machine]\narch = 32\n", "machine.arch", "expected a string"),
    ],
)
def test_bad_machine_table(tmp_path, text, key, what):
    msg = error_of(tmp_path, text)
    assert msg.startswith(f"{key}: ")
    assert what in msg


def test_bad_overrides(tmp_path):
    msg = error_of(tmp_path, GOOD, ("kernel.highmem",))
    assert msg == "--set kernel.highmem: expected KEY=VALUE"
    msg = error_of(tmp_path, GOOD, ("firmware.e820.7.type=reserved",))
    assert msg.startswith("--set firmware.e820.7.type: firmware.e820 has 2 entries")
    msg = error_of(tmp_path, GOOD, ("machine.arch.x=1",))
    assert msg.startswith("--set machine.arch.x: machine.arch is not a table")
    # An override is validated like the file itself.
    msg = error_of(tmp_path, GOOD, ("kernel.highmem=8G",))
    assert msg.startswith("kernel.highmem: unknown highmem model '8G'")


def test_not_found_lists_presets(tmp_path):
    with pytest.raises(BootemuError) as err:
        load_machine("no-such-box")
    msg = str(err.value)
    assert msg.startswith("no-such-box: no such machine file or preset (presets: ")
    assert "qemu-pc-1g-i386" in msg and "pae-64g" in msg
    with pytest.raises(BootemuError) as err:
        load_machine(str(tmp_path))
    assert str(err.value).startswith(f"{tmp_path}: ")


# --------------------------------------------------------------------------------------------
# dump / load round trip


sizes = st.integers(0, (1 << 64) - 1)
#: The [kernel] keys each arch declares (profile, cmdline and highmem are KernelSpec fields).
KERNEL_FIELDS = {
    "x86_32": X86_32.MACHINE_SCHEMA["kernel"].fields,
    "numa64": Numa64.MACHINE_SCHEMA["kernel"].fields,
}


def _accepts(field, value) -> bool:
    try:
        field.parse(value, "x.toml", "kernel.k")
    except BootemuError:
        return False
    return True


def config_value(draw, field):
    """A value of the kind the arch's schema declares for the key."""
    if isinstance(field, Bool):
        return draw(st.booleans())
    if isinstance(field, Enum):
        return draw(st.sampled_from(field.choices))
    if isinstance(field, Custom):  # cpu_nodes, SMBIOS text or false, a number or false
        values = st.one_of(st.text(max_size=10), st.just(False), sizes)
        # the value as loaded (cpu_nodes = 0 loads as the text "0")
        return field.parse(draw(values.filter(lambda v: _accepts(field, v))), "x.toml", "k")
    assert isinstance(field, Size)
    return draw(sizes)


@st.composite
def e820_entry(draw):
    # An entry may reach 2**64 (the kernel's wrap case) when given by its size; its size,
    # a u64, cannot be 2**64 itself.
    start = draw(st.integers(0, (1 << 64) - 1))
    end = draw(st.integers(start + 1, (1 << 64) if start else (1 << 64) - 1))
    return E820Entry(start, end, draw(st.integers(1, MAX_TYPE)))


@st.composite
def numa_entry(draw):
    start = draw(st.integers(0, 1 << 50))
    return NumaMemory(draw(st.integers(0, 63)), start, draw(st.integers(start + 1, 1 << 51)))


@st.composite
def workload_op(draw):
    op = draw(st.sampled_from(["alloc", "reserve", "free"]))
    label = draw(st.text(max_size=8))
    if op == "alloc":
        wrapper = draw(st.sampled_from([None, *ALLOC_WRAPPERS]))
        if wrapper is None:
            node = draw(st.none() | st.integers(0, 7))
        else:
            node = draw(st.integers(0, 7)) if wrapper.endswith("_node") else None
        return WorkloadOp(op, draw(sizes), draw(sizes), draw(sizes), node, None, wrapper,
                          False, label)
    exclusive = draw(st.booleans()) if op == "reserve" else False
    return WorkloadOp(op, draw(sizes), node=draw(st.none() | st.integers(0, 7)),
                      addr=draw(sizes), exclusive=exclusive, label=label)


@st.composite
def machines(draw):
    arch = draw(st.sampled_from(sorted(KERNEL_FIELDS)))
    fields = KERNEL_FIELDS[arch]
    keys = [k for k in fields if k not in ("profile", "cmdline", "highmem")]
    chosen = draw(st.lists(st.sampled_from(keys), unique=True, max_size=4))
    config = {k: config_value(draw, fields[k]) for k in chosen}
    return Machine(
        name=draw(st.text(max_size=12)),
        arch=arch,
        allocator=draw(st.sampled_from(["bootmem", "bootmem2", "memblock", "x\"y\\z\n"])),
        kernel=KernelSpec(
            profile=draw(st.sampled_from(fields["profile"].choices)),
            cmdline=draw(st.text(max_size=30)),
            highmem=draw(st.sampled_from([None, *HIGHMEM_MODELS])) if arch == "x86_32" else None,
            config=tuple(sorted(config.items())),
        ),
        e820=tuple(draw(st.lists(e820_entry(), min_size=1, max_size=5))),
        numa=tuple(draw(st.lists(numa_entry(), max_size=3))) if arch == "numa64" else (),
        workload=tuple(draw(st.lists(workload_op(), max_size=3))),
        source="dumped.toml",
    )


@settings(max_examples=150, deadline=None)
@given(machines())
def test_dump_load_round_trip(m):
    assert machine_from_toml(dump_machine(m), source="dumped.toml") == m


def test_dump_writes_hex_and_type_names():
    m = load_machine("qemu-pc-1g-i386")
    text = dump_machine(m)
    assert 'end = 0x3ffe0000\ntype = "usable"' in text
    assert "start = 0xfffc0000" in text
    assert dataclasses.replace(
        machine_from_toml(text, source="x.toml"), source=m.source
    ) == m

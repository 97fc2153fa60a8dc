"""Plugin discovery, the per-boot manager, the facades, and the hook meta-tests."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import pluggy
import pytest

from bootemu import hookspecs
from bootemu.hookspecs import SPEC_CLASSES, hookimpl
from bootemu.models import BootemuError
from bootemu.plugins import ALLOCATOR_GROUP, ARCH_GROUP, discover, make_manager, select

ROOT = Path(__file__).resolve().parent.parent


def _ep(name: str, value: str, group: str = ALLOCATOR_GROUP) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=group)


def test_discovery_is_sorted_and_loads_fake_entry_points():
    eps = [
        _ep("zeta", "bootemu_plugins.bootmem2:Bootmem2"),
        _ep("alpha", "bootemu_plugins.bootmem2:Bootmem2"),
    ]
    found = discover(ALLOCATOR_GROUP, entry_points=eps)
    assert list(found) == ["alpha", "zeta"]
    assert found["alpha"].load().__name__ == "Bootmem2"


def test_duplicate_names_are_an_error_naming_both():
    eps = [_ep("bootmem", "a.one:X"), _ep("bootmem", "b.two:Y")]
    with pytest.raises(BootemuError, match=r"duplicate .*'bootmem'.*a\.one:X.*b\.two:Y"):
        discover(ALLOCATOR_GROUP, entry_points=eps)


def test_same_entry_point_seen_twice_counts_once():
    eps = [_ep("bootmem", "a.one:X"), _ep("bootmem", "a.one:X")]
    assert list(discover(ALLOCATOR_GROUP, entry_points=eps)) == ["bootmem"]


def test_disabled_plugins_are_left_out():
    eps = [_ep("one", "a:X"), _ep("two", "b:Y")]
    assert list(discover(ALLOCATOR_GROUP, entry_points=eps, disabled=["one"])) == ["two"]


def test_unknown_name_lists_the_known_ones():
    found = discover(ALLOCATOR_GROUP, entry_points=[_ep("bootmem2", "x:Y")])
    with pytest.raises(BootemuError, match=r"unknown allocator 'slab' \(known: bootmem2\)"):
        select(ALLOCATOR_GROUP, "slab", found)


def test_unloadable_plugin_is_a_clear_error():
    info = discover(ARCH_GROUP, entry_points=[_ep("ghost", "no_such_module:X", ARCH_GROUP)])[
        "ghost"
    ]
    with pytest.raises(BootemuError, match="ghost.*cannot be loaded.*ModuleNotFoundError"):
        info.load()


def test_builtins_are_declared_as_entry_points():
    assert {"x86_32", "numa64"} <= set(discover(ARCH_GROUP))
    assert {"bootmem", "bootmem2", "bootmem2-perblock"} <= set(discover(ALLOCATOR_GROUP))


def test_misspelt_hook_fails_loudly():
    class Typo:
        @hookimpl
        def bootemu_alloc_allocc(self, request):  # noqa: ARG002 - deliberately misspelt
            return None

    with pytest.raises(BootemuError, match="bootemu_alloc_allocc"):
        make_manager([(Typo(), "typo")])


def test_each_manager_is_fresh():
    a = make_manager([])
    b = make_manager([])
    assert a is not b and not a.get_plugins() and not b.get_plugins()


# ---------------------------------------------------------------------------------------------
# Meta-tests (datasette style): every hook has a test and is documented.


def _hook_names() -> list[str]:
    names = []
    for spec in SPEC_CLASSES:
        names += [
            n for n, _ in inspect.getmembers(spec, inspect.isfunction) if n.startswith("bootemu_")
        ]
    return sorted(names)


def test_every_hook_is_prefixed_typed_and_has_a_docstring():
    for spec in SPEC_CLASSES:
        for name, fn in inspect.getmembers(spec, inspect.isfunction):
            assert name.startswith("bootemu_"), name
            assert fn.__doc__ and fn.__doc__.strip(), f"{name} has no docstring"
            sig = inspect.signature(fn)
            assert sig.return_annotation is not inspect.Signature.empty, name
            for p in list(sig.parameters.values())[1:]:
                assert p.annotation is not inspect.Parameter.empty, f"{name}({p.name})"
                assert p.default is inspect.Parameter.empty, f"{name}({p.name}) has a default"


@pytest.mark.parametrize("hook", _hook_names())
def test_every_hook_is_documented(hook):
    doc = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"`{hook}\(", doc), f"{hook} is not documented in docs/plugins.md"


@pytest.mark.parametrize("hook", _hook_names())
def test_every_hook_has_a_test(hook):
    tests = "".join(
        p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != "test_plugins.py"
    )
    assert hook in tests, f"no test mentions {hook}"


def test_hookspec_module_is_the_one_contract():
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    for spec in SPEC_CLASSES:
        pm.add_hookspecs(spec)
    assert sorted(n for n in dir(pm.hook) if n.startswith("bootemu_")) == _hook_names()

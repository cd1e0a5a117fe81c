"""Xen-style command line parsing and run-time assignments (pyxen/hypervisor/params.py)."""

from __future__ import annotations

import pytest

from pyxen.hypervisor.hypervisor import Hypervisor
from pyxen.hypervisor.params import (
    PARAMS,
    Param,
    ParamError,
    parse_bool,
    parse_cmdline,
    parse_runtime_assignments,
    parse_size,
)


@pytest.fixture
def bool_param(monkeypatch):
    """A boolean parameter (pyxen declares none yet); per-process, so xdist-safe."""
    p = Param("xtest_flag", parse_bool, False, True, "test-only boolean")
    monkeypatch.setitem(PARAMS, p.name, p)
    return p


def test_name_value_words():
    values, warnings = parse_cmdline("loglvl=all  guest_loglvl=info/warning mem=2G "
                                     "vcpu_mmu=software gnttab_max_frames=0x20")
    assert values == {"loglvl": "all", "guest_loglvl": "info/warning", "mem": 2 << 30,
                      "vcpu_mmu": "software", "gnttab_max_frames": 32}
    assert warnings == []


def test_empty_command_line():
    assert parse_cmdline("") == ({}, [])
    assert parse_cmdline("   ") == ({}, [])


def test_a_later_word_wins():
    values, _ = parse_cmdline("loglvl=error loglvl=info")
    assert values == {"loglvl": "info"}


def test_unknown_parameters_are_reported_and_ignored():
    values, warnings = parse_cmdline("bogus=1 loglvl=all frobnicate no-such")
    assert values == {"loglvl": "all"}
    assert warnings == ['parameter "bogus" unknown!', 'parameter "frobnicate" unknown!',
                        'parameter "no-such" unknown!']


def test_bad_values_are_reported_and_the_default_kept():
    values, warnings = parse_cmdline("mem=lots vcpu_mmu=magic loglvl=loud sched=credit2")
    assert values == {"sched": "credit2"}
    assert len(warnings) == 3
    assert warnings[0].startswith('parameter "mem" has invalid value "lots"')
    assert warnings[1].startswith('parameter "vcpu_mmu" has invalid value "magic"')
    assert warnings[2].startswith('parameter "loglvl" has invalid value "loud"')


def test_value_containing_equals_signs_is_kept_whole():
    values, warnings = parse_cmdline("conswitch=x=y")
    assert values == {"conswitch": "x=y"} and warnings == []


def test_bare_and_no_prefixed_booleans(bool_param):
    assert parse_cmdline("xtest_flag") == ({"xtest_flag": True}, [])
    assert parse_cmdline("no-xtest_flag") == ({"xtest_flag": False}, [])
    assert parse_cmdline("xtest_flag=no") == ({"xtest_flag": False}, [])
    assert parse_cmdline("xtest_flag=on") == ({"xtest_flag": True}, [])
    values, warnings = parse_cmdline("xtest_flag=maybe")
    assert values == {} and warnings[0].startswith('parameter "xtest_flag" has invalid value')


@pytest.mark.parametrize("cmdline", ["mem", "mem=0", "mem=5000"])
def test_an_unusable_mem_value_does_not_stop_the_host_booting(cmdline):
    # Xen reports a bad command-line value and carries on; it never fails to boot.
    hv = Hypervisor(cmdline)
    try:
        assert hv.machine.size > 0 and hv.machine.size % 4096 == 0
    finally:
        hv.shutdown_host()


@pytest.mark.parametrize("text, value", [
    ("1", True), ("yes", True), ("true", True), ("on", True), ("enable", True),
    ("0", False), ("no", False), ("false", False), ("off", False), ("disable", False),
])
def test_parse_bool(text, value):
    assert parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "2", "y", "enabled", "nope"])
def test_parse_bool_rejects(text):
    with pytest.raises(ParamError):
        parse_bool(text)


@pytest.mark.parametrize("text, value", [
    ("4096", 4096), ("12b", 12), ("4k", 4096), ("4K", 4096), ("512M", 512 << 20),
    ("2G", 2 << 30), ("1T", 1 << 40), ("0x1000", 0x1000), ("0x10M", 16 << 20),
])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "G", "1.5G", "2GB", "-1", "12q", "0x"])
def test_parse_size_rejects(text):
    with pytest.raises(ParamError):
        parse_size(text)


def test_every_declared_default_parses_its_own_type():
    # A default that the parser would reject means the boot path and run-time path
    # disagree about what a valid value is.
    for p in PARAMS.values():
        if isinstance(p.default, str) and p.default and p.parse is not str:
            assert p.parse(p.default) == p.default, p.name


# -- run-time assignments (XEN_SYSCTL_set_parameter) ------------------------------------------

def test_runtime_assignments_parse_each_value():
    out = parse_runtime_assignments("loglvl=all guest_loglvl=info/warning "
                                    "console_timestamps=boot gnttab_max_frames=16 conswitch=x")
    assert [(p.name, v) for p, v in out] == [
        ("loglvl", "all"), ("guest_loglvl", "info/warning"), ("console_timestamps", "boot"),
        ("gnttab_max_frames", 16), ("conswitch", "x")]
    assert parse_runtime_assignments("") == []


def test_runtime_params_are_the_xen_410_set():
    runtime = {p.name for p in PARAMS.values() if p.runtime}
    assert runtime == {"loglvl", "guest_loglvl", "console_timestamps", "conswitch",
                       "gnttab_max_frames", "gnttab_max_maptrack_frames"}


@pytest.mark.parametrize("text, fragment", [
    ("sched=credit2", 'parameter "sched" cannot be changed at run time'),
    ("conring_size=1M", 'parameter "conring_size" cannot be changed at run time'),
    ("bogus=1", 'parameter "bogus" unknown'),
    ("loglvl", 'parameter "loglvl" needs a value'),
    ("loglvl=loud", 'parameter "loglvl": unknown log level'),
    ("gnttab_max_frames=-1", 'parameter "gnttab_max_frames": must not be negative'),
    ("gnttab_max_frames=ten", 'parameter "gnttab_max_frames": invalid number'),
    ("console_timestamps=iso", 'parameter "console_timestamps": expected one of'),
])
def test_runtime_assignment_errors(text, fragment):
    with pytest.raises(ParamError) as exc:
        parse_runtime_assignments(text)
    assert fragment in str(exc.value)


def test_one_bad_word_rejects_the_whole_line():
    with pytest.raises(ParamError, match='"sched"'):
        parse_runtime_assignments("loglvl=all sched=credit guest_loglvl=all")


def test_runtime_booleans_need_an_explicit_value(bool_param):
    assert [(p.name, v) for p, v in parse_runtime_assignments("xtest_flag=off")] == [
        ("xtest_flag", False)]
    with pytest.raises(ParamError, match="needs a value"):
        parse_runtime_assignments("xtest_flag")

"""xl.cfg: the XlConfig API, command-line overrides, and xl 4.10's meaning of the core keys."""

import pytest

from pyxen.toolstack.xlcfg import (
    SHUTDOWN_ACTIONS,
    XlConfigError,
    build_domain_config,
    load_config,
    parse_config,
    parse_cpu_spec,
)

PV_BASE = 'name = "g"\nkernel = "/boot/vmlinuz"\n'


def domain(text: str, filename: str = "g.cfg"):
    return build_domain_config(parse_config(text, filename))


def error_of(text: str, filename: str = "g.cfg") -> str:
    with pytest.raises(XlConfigError) as caught:
        domain(text, filename)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- XlConfig ---------------------------------------------------------------------------------

def test_keys_items_and_settings_keep_file_order():
    cfg = parse_config("b = 1\na = [2, [3]]\nb = 'x'\nc += 'y'\n")
    assert cfg.keys() == ["b", "a", "c"]
    assert cfg.items() == [("b", "x"), ("a", ["2", ["3"]]), ("c", "y")]
    assert [(s.name, s.line, s.op) for s in cfg.settings] == [
        ("b", 1, "="), ("a", 2, "="), ("b", 3, "="), ("c", 4, "+=")]
    assert "a" in cfg and "z" not in cfg and len(cfg) == 3
    assert cfg.line_of("b") == 3 and cfg.line_of("z") is None


def test_values_returned_are_copies():
    cfg = parse_config("a = [1, [2]]\n")
    cfg.get_list("a").append("9")
    cfg.items()[0][1][1].append("9")
    assert cfg.get_list("a") == ["1", ["2"]]


def test_plus_equals_concatenates_strings_and_lists():
    cfg = parse_config('s = "ab"\ns += "cd"\ns += 12\nl = [1]\nl += [2, [3]]\n')
    assert cfg.get_string("s") == "abcd12"
    assert cfg.get_list("l") == ["1", "2", ["3"]]
    with pytest.raises(XlConfigError, match=r"^<config>:2: config parsing error near `\]': "
                                            r"can't add \[list\] to \"string\" or vice versa$"):
        parse_config('s = "x"\ns += [1]\n')


def test_numbers_follow_strtol_base_zero():
    cfg = parse_config('d = 42\nh = 0x1f\no = 017\nq = " -7"\nbig = 0x7fffffffffffffff\n'
                       'e = 08\nz = 0\nu = "0X1F"\n')
    assert [cfg.get_long(k) for k in ("d", "h", "o", "q", "big", "z", "u")] == [
        42, 31, 15, -7, (1 << 63) - 1, 0, 31]
    assert cfg.get_string("h") == "0x1f"  # numbers keep their text
    with pytest.raises(XlConfigError, match=r"^<config>:6: parameter `e' is not a valid number$"):
        cfg.get_long("e")
    # Unquoted, a number is [0-9][0-9a-fx]*: capitals and a minus sign are not part of it.
    with pytest.raises(XlConfigError, match=r"^<config>:1: config parsing error near `F': lexical"):
        parse_config("h = 0x1F\n")
    with pytest.raises(XlConfigError, match=r"near `-1': lexical error"):
        parse_config("n = -1\n")


def test_getter_errors_name_file_line_and_key():
    cfg = parse_config("l = [1]\ns = 'x'\np += 5\nbig = 99999999999999999999\n", "vm.cfg")
    cases = [
        (cfg.get_string, "l", "vm.cfg:1: parameter `l' is a list but should be a single value"),
        (cfg.get_long, "l", "vm.cfg:1: parameter `l' is a list but should be a single value"),
        (cfg.get_list, "s", "vm.cfg:2: parameter `s' is a single value but should be a list"),
        (cfg.get_long, "s", "vm.cfg:2: parameter `s' is not a valid number"),
        (cfg.get_long, "p", "vm.cfg:3: can't use += with numbers for parameter `p'"),
        (cfg.get_long, "big", "vm.cfg:4: parameter `big' could not be parsed as a number:"
                              " Numerical result out of range"),
    ]
    for getter, key, expected in cases:
        with pytest.raises(XlConfigError) as caught:
            getter(key)
        assert str(caught.value) == expected


def test_numbers_of_any_length():
    digits = "9" * 5000
    cfg = parse_config(f'big = {digits}\nzeros = "{"0" * 5000}12"\nneg = "-{digits}"\n')
    assert cfg.get_long("zeros") == 0o12
    for key in ("big", "neg"):
        with pytest.raises(XlConfigError, match="Numerical result out of range"):
            cfg.get_long(key)
    with pytest.raises(XlConfigError, match="Invalid pcpu range"):
        parse_cpu_spec("0-" + digits)


def test_getter_defaults_and_bool_and_bounds():
    cfg = parse_config("on = 1\noff = 0\nyes = 'yes'\nn = 70\n")
    assert cfg.get_string("missing", "dflt") == "dflt"
    assert cfg.get_long("missing") is None
    assert cfg.get_list("missing", []) == []
    assert cfg.get_bool("on") is True and cfg.get_bool("off") is False
    assert cfg.get_bool("missing", True) is True
    with pytest.raises(XlConfigError, match="not a valid number"):
        cfg.get_bool("yes")
    assert cfg.get_bounded_long("n", 0, 100) == 70
    with pytest.raises(XlConfigError, match=r"value `70' is greater than maximum bound '64'"):
        cfg.get_bounded_long("n", 0, 64)
    with pytest.raises(XlConfigError, match=r"value `70' is smaller than minimum bound '80'"):
        cfg.get_bounded_long("n", 80, 100)


def test_parse_error_is_one_line_with_file_and_line():
    with pytest.raises(XlConfigError) as caught:
        parse_config('name = "ok"\nmemory = = 3\n', "hello.cfg")
    err = caught.value
    assert str(err) == ("hello.cfg:2: config parsing error near `=': syntax error, unexpected"
                        " '=', expecting STRING or NUMBER or '['")
    assert (err.filename, err.line) == ("hello.cfg", 2)
    assert not err.likely_python


def test_python_config_sets_the_hint():
    with pytest.raises(XlConfigError) as caught:
        parse_config("kernel = '/boot/' + arch\n")
    assert caught.value.likely_python


def test_overrides_are_appended_like_xl_create():
    text = 'name = "g"\nmemory = 128\n# comment without newline'
    cfg = parse_config(text, "g.cfg", overrides=["memory=256", "extra='x'"])
    assert cfg.source == text + "\nmemory=256\nextra='x'\n\n"
    assert cfg.get_long("memory") == 256
    assert cfg.line_of("memory") == 4
    assert cfg.overrides == ("memory=256", "extra='x'")


def test_set_override_reparses_and_later_wins():
    cfg = parse_config('name = "g"\ndisk = ["a"]\n', "g.cfg")
    cfg.set_override("disk += ['b']")
    cfg.set_override("name='h'")
    cfg.set_override("name += '2'")
    assert cfg.get_list("disk") == ["a", "b"]
    assert cfg.get_string("name") == "h2"


def test_bad_override_reports_its_line_and_leaves_config_unchanged():
    cfg = parse_config('name = "g"\n', "g.cfg")
    with pytest.raises(XlConfigError, match=r"^g\.cfg:3: config parsing error near `M': lexical"):
        cfg.set_override("memory=512M")
    assert cfg.overrides == () and cfg.keys() == ["name"]
    with pytest.raises(XlConfigError, match="not of the form KEY=VALUE"):
        cfg.set_override("memory")


def test_load_config_reads_bytes_and_reports_missing_files(tmp_path):
    path = tmp_path / "guest.cfg"
    path.write_bytes(b'name = "caf\xc3\xa9"\nbytes = "\xff"\n')
    cfg = load_config(path, overrides=["memory=64"])
    assert cfg.get_string("name") == "caf\u00e9"
    assert cfg.get_long("memory") == 64
    assert cfg.filename == str(path)
    with pytest.raises(XlConfigError, match=r"missing\.cfg: Failed to read config file"):
        load_config(tmp_path / "missing.cfg")


def test_error_text_escapes_control_characters_and_bad_bytes(tmp_path):
    with pytest.raises(XlConfigError) as caught:
        parse_config("a = 1\r\n", "c.cfg")
    assert str(caught.value) == "c.cfg:1: config parsing error near `\\r': lexical error"
    path = tmp_path / "b.cfg"
    path.write_bytes(b"a = \xff\n")
    with pytest.raises(XlConfigError, match=r"near `\\xff': lexical error"):
        load_config(path)


def test_unknown_keys():
    cfg = parse_config('name = "g"\nweight = 256\nmemory = 1\nfrobnicate = 1\na.b = 2\n')
    assert cfg.unknown_keys() == ["weight", "frobnicate", "a.b"]


# --- guest type -------------------------------------------------------------------------------

def test_type_defaults_to_pv():
    assert domain(PV_BASE).type == "pv"


@pytest.mark.parametrize("value, expected", [
    ("pv", "pv"), ("pvh", "pvh"), ("hvm", "hvm"),
    # xl compares with strncmp(value, word, strlen(value)): prefixes count.
    ("p", "pv"), ("h", "hvm"), ("", "hvm"),
])
def test_type_values(value, expected):
    assert domain(PV_BASE + f'type = "{value}"\n').type == expected


def test_invalid_type():
    assert error_of(PV_BASE + 'type = "kvm"\n') == "g.cfg:3: Invalid domain type kvm."
    assert error_of(PV_BASE + 'type = "PVH"\n') == "g.cfg:3: Invalid domain type PVH."


@pytest.mark.parametrize("builder, expected", [("generic", "pv"), ("hvm", "hvm")])
def test_builder_is_accepted_with_a_deprecation_warning(builder, expected):
    dom = domain(PV_BASE + f'builder = "{builder}"\n')
    assert dom.type == expected
    assert dom.warnings == [f'g.cfg:3: warning: "builder" is deprecated since Xen 4.10;'
                            f' use type="{expected}" instead']


def test_builder_and_type_must_agree():
    assert domain(PV_BASE + 'type = "hvm"\nbuilder = "hvm"\n').type == "hvm"
    assert error_of(PV_BASE + 'type = "pvh"\nbuilder = "generic"\n') == (
        'g.cfg:4: Contradicting "builder" and "type" options specified.')
    assert error_of(PV_BASE + 'builder = "linux"\n') == "g.cfg:3: Invalid domain type linux."


def test_pvh_1_is_refused_and_points_to_type():
    message = error_of(PV_BASE + "pvh = 1\n")
    assert message.startswith("g.cfg:3: ")
    assert 'type="pvh"' in message


def test_pvh_0_is_ignored_with_a_warning():
    dom = domain(PV_BASE + "pvh = 0\n")
    assert dom.type == "pv"
    assert any('"pvh"' in w for w in dom.warnings)
    assert "pvh" not in dom.extra_keys


# --- identity, memory, vCPUs ----------------------------------------------------------------

def test_name_is_mandatory():
    assert error_of('kernel = "/k"\n') == "g.cfg: Domain name must be specified."
    # A list is not a name: libxlutil warns, then xl finds no name.
    with pytest.raises(XlConfigError, match="Domain name must be specified"):
        domain('name = ["a"]\nkernel = "/k"\n')


def test_uuid_is_validated():
    good = "3b1e2c4d-5a6f-4e7d-8c9b-0A1B2C3D4E5F"
    assert domain(PV_BASE + f'uuid = "{good}"\n').uuid == good
    assert domain(PV_BASE).uuid is None
    for bad in ("3b1e2c4d5a6f4e7d8c9b0a1b2c3d4e5f", "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5",
                "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5fa", "zb1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f"):
        assert error_of(PV_BASE + f'uuid = "{bad}"\n') == f"g.cfg:3: Failed to parse UUID: {bad}"


def test_memory_defaults():
    dom = domain(PV_BASE)
    assert (dom.memory, dom.maxmem) == (32, 32)  # libxl's default
    dom = domain(PV_BASE + "memory = 512\n")
    assert (dom.memory, dom.maxmem) == (512, 512)  # maxmem follows memory
    dom = domain(PV_BASE + "memory = 512\nmaxmem = 2048\n")
    assert (dom.memory, dom.maxmem) == (512, 2048)


def test_memory_values_are_kept_as_given():
    assert domain(PV_BASE + "memory = 0\n").memory == 0
    assert domain(PV_BASE + 'memory = "-5"\n').memory == -5
    assert domain(PV_BASE + "memory = 0x100\n").memory == 256


def test_bad_number_is_a_warning_and_the_default_is_used():
    # xl prints libxlutil's warning and goes on as if the key were absent.
    dom = domain(PV_BASE + 'memory = "lots"\ncpu_weight = [1]\n')
    assert dom.memory == 32 and dom.cpu_weight is None
    # (in xl's order: cpu_weight is read before memory)
    assert dom.warnings == [
        "g.cfg:4: warning: parameter `cpu_weight' is a list but should be a single value",
        "g.cfg:3: warning: parameter `memory' is not a valid number",
    ]


def test_vcpus_and_maxvcpus():
    dom = domain(PV_BASE)
    assert (dom.vcpus, dom.maxvcpus) == (1, 1)
    dom = domain(PV_BASE + "vcpus = 3\n")
    assert (dom.vcpus, dom.maxvcpus) == (3, 3)
    dom = domain(PV_BASE + "vcpus = 2\nmaxvcpus = 8\n")
    assert (dom.vcpus, dom.maxvcpus) == (2, 8)
    dom = domain(PV_BASE + "maxvcpus = 4\n")
    assert (dom.vcpus, dom.maxvcpus) == (1, 4)
    dom = domain(PV_BASE + "vcpus = 2\nmaxvcpus = 0\n")  # 0 means "not given"
    assert (dom.vcpus, dom.maxvcpus) == (2, 2)
    assert error_of(PV_BASE + "vcpus = 4\nmaxvcpus = 2\n") == "g.cfg:4: maxvcpus < vcpus"


# --- kernel and command line -----------------------------------------------------------------

def test_cmdline_from_root_and_extra():
    base = 'name = "g"\nkernel = "/k"\n'
    assert domain(base).cmdline is None
    assert domain(base + 'root = "/dev/xvda1"\n').cmdline == "root=/dev/xvda1"
    assert domain(base + 'extra = "quiet"\n').cmdline == "quiet"
    assert domain(base + 'root = "/dev/xvda1 ro"\nextra = "console=hvc0"\n').cmdline == (
        "root=/dev/xvda1 ro console=hvc0")


def test_cmdline_wins_over_root_and_extra_with_a_warning():
    dom = domain(PV_BASE + 'cmdline = "a b"\nroot = "/dev/x"\nextra = "c"\n')
    assert dom.cmdline == "a b"
    assert (dom.root, dom.extra) == ("/dev/x", "c")
    assert dom.warnings == ["Warning: ignoring root= and extra= in favour of cmdline="]


def test_kernel_ramdisk_bootloader():
    dom = domain('name = "g"\nkernel = "/k"\nramdisk = "/r"\n')
    assert (dom.kernel, dom.ramdisk) == ("/k", "/r")
    dom = domain('name = "g"\nbootloader = "pygrub"\nbootloader_args = ["-q", "--x=1"]\n')
    assert (dom.kernel, dom.bootloader, dom.bootloader_args) == (None, "pygrub", ["-q", "--x=1"])
    dom = domain('name = "g"\nbootloader = "pygrub"\nbootloader_args = " -q  --x=1\t"\n')
    assert dom.bootloader_args == ["-q", "--x=1"]
    assert "deprecated" in dom.warnings[0]


def test_pv_and_pvh_need_a_kernel_or_bootloader():
    missing = "g.cfg: Neither kernel nor bootloader specified"
    assert error_of('name = "g"\n') == missing
    assert error_of('name = "g"\ntype = "pvh"\n') == missing
    assert domain('name = "g"\ntype = "hvm"\n').kernel is None


def test_pvgrub_firmware():
    dom = domain('name = "g"\nfirmware = "pvgrub64"\n')
    assert dom.kernel == "/usr/lib/xen/boot/pvgrub64.bin"
    assert error_of('name = "g"\nfirmware = "seabios"\n') == (
        "g.cfg:2: only pvgrub{32|64} supported as firmware options")
    assert error_of(PV_BASE + 'firmware = "pvgrub32"\n') == (
        "g.cfg:3: both kernel and firmware specified")


# --- shutdown actions -------------------------------------------------------------------------

def test_action_defaults():
    dom = domain(PV_BASE)
    assert (dom.on_poweroff, dom.on_reboot, dom.on_watchdog, dom.on_crash, dom.on_soft_reset) == (
        "destroy", "restart", "destroy", "destroy", "soft-reset")


@pytest.mark.parametrize("action", SHUTDOWN_ACTIONS)
@pytest.mark.parametrize("key", ["on_poweroff", "on_reboot", "on_watchdog", "on_crash",
                                 "on_soft_reset"])
def test_every_action_is_accepted_for_every_event(key, action):
    assert getattr(domain(PV_BASE + f"{key} = '{action}'\n"), key) == action


def test_unknown_action():
    assert error_of(PV_BASE + "on_crash = 'reboot'\n") == (
        'g.cfg:3: Unknown on_crash action "reboot" specified')


# --- scheduling and limits -------------------------------------------------------------------

def test_weight_cap_pool():
    dom = domain(PV_BASE + "cpu_weight = 512\ncap = 50\npool = 'fast'\n")
    assert (dom.cpu_weight, dom.cap, dom.pool) == (512, 50, "fast")
    # xl 4.10 only reads cpu_weight; a bare `weight` is an unknown key.
    dom = domain(PV_BASE + "weight = 512\n")
    assert dom.cpu_weight is None
    assert dom.extra_keys == {"weight": "512"} and dom.unknown_keys() == ["weight"]


def test_affinity_string_and_list():
    dom = domain(PV_BASE + 'vcpus = 3\ncpus = "0-3,^1,,6"\ncpus_soft = ["0", "1-2", "5", "7"]\n')
    assert dom.cpus == "0-3,^1,,6"
    assert dom.cpus_sets == [frozenset({0, 2, 3, 6})]
    assert dom.cpus_soft == ["0", "1-2", "5", "7"]
    # one set per vCPU; the item for a vCPU that does not exist is ignored
    assert dom.cpus_soft_sets == [frozenset({0}), frozenset({1, 2}), frozenset({5})]


def test_affinity_needing_the_host_is_kept_unparsed():
    dom = domain(PV_BASE + 'cpus = "all"\ncpus_soft = "nodes:0-1,^3"\n')
    assert (dom.cpus, dom.cpus_sets) == ("all", None)
    assert (dom.cpus_soft, dom.cpus_soft_sets) == ("nodes:0-1,^3", None)


def test_affinity_errors():
    assert error_of(PV_BASE + 'cpus = "3-1"\n') == "g.cfg:3: Invalid pcpu range: 3-1."
    assert error_of(PV_BASE + 'cpus = ["0", "x"]\nmaxvcpus = 2\n') == (
        "g.cfg:3: Invalid pcpu range: x.")
    assert error_of(PV_BASE + 'cpus = "^all"\n') == 'g.cfg:3: Can\'t combine "^" and "all".'


def test_parse_cpu_spec():
    assert parse_cpu_spec("0,2-4,^3") == frozenset({0, 2, 4})
    assert parse_cpu_spec("+1, 2") == frozenset({1, 2})  # strtoul skips blanks and a sign
    assert parse_cpu_spec("node:1") is None
    for bad in ("", "-1", "1-", "a", "1-2x", "2-1"):
        if bad == "":
            assert parse_cpu_spec(bad) == frozenset()
            continue
        with pytest.raises(XlConfigError, match="Invalid pcpu range"):
            parse_cpu_spec(bad)


def test_grant_and_event_channel_limits():
    dom = domain(PV_BASE)
    assert (dom.max_grant_frames, dom.max_maptrack_frames, dom.max_event_channels) == (
        None, None, None)
    dom = domain(PV_BASE + "max_grant_frames = 64\nmax_maptrack_frames = 0\n"
                           "max_event_channels = 4095\n")
    assert (dom.max_grant_frames, dom.max_maptrack_frames, dom.max_event_channels) == (
        64, 0, 4095)
    assert error_of(PV_BASE + "max_grant_frames = '-1'\n") == (
        "g.cfg:3: value `-1' is smaller than minimum bound '0'")
    assert error_of(PV_BASE + "max_maptrack_frames = 0x80000000\n") == (
        "g.cfg:3: value `2147483648' is greater than maximum bound '2147483647'")
    assert error_of(PV_BASE + "max_grant_frames = 'many'\n") == (
        "g.cfg:3: parameter `max_grant_frames' is not a valid number")


# --- everything else --------------------------------------------------------------------------

def test_other_keys_are_kept():
    dom = domain(PV_BASE + "disk = ['phy:/dev/a,xvda,w']\nvif = []\nfoo = 'bar'\nvnc = 1\n")
    assert dom.extra_keys == {"disk": ["phy:/dev/a,xvda,w"], "vif": [], "foo": "bar",
                              "vnc": "1"}
    assert dom.unknown_keys() == ["foo"]
    assert "kernel" not in dom.extra_keys and "name" not in dom.extra_keys


def test_hvmloader_as_kernel_is_dropped_for_hvm():
    dom = domain('name = "g"\ntype = "hvm"\nkernel = "/usr/lib/xen/boot/hvmloader"\n')
    assert dom.kernel is None
    assert "firmware_override" in dom.warnings[0]


# --- scheduler parameters are validated as libxl validates them -------------------------------

@pytest.mark.parametrize("weight", [1, 256, 65535])
def test_weight_in_range(weight):
    assert domain(PV_BASE + f"cpu_weight = {weight}\n").cpu_weight == weight


@pytest.mark.parametrize("weight", ["0", "65536", "'-1'", "0x10000"])
def test_weight_out_of_range(weight):
    assert error_of(PV_BASE + f"cpu_weight = {weight}\n") == (
        "g.cfg:3: Cpu weight out of range, valid values are within range from 1 to 65535")


def test_cap_range_depends_on_maxvcpus():
    assert domain(PV_BASE + "cap = 0\n").cap == 0
    assert domain(PV_BASE + "cap = 100\n").cap == 100
    assert domain(PV_BASE + "vcpus = 2\nmaxvcpus = 4\ncap = 400\n").cap == 400
    assert error_of(PV_BASE + "cap = 101\n") == (
        "g.cfg:3: Cpu cap out of range, valid range is from 0 to 100 for specified number"
        " of vcpus")
    assert error_of(PV_BASE + "vcpus = 2\ncap = '-1'\n") == (
        "g.cfg:4: Cpu cap out of range, valid range is from 0 to 200 for specified number"
        " of vcpus")


def test_weight_from_an_override_is_checked_too():
    cfg = parse_config(PV_BASE, "g.cfg", overrides=["cpu_weight=70000"])
    with pytest.raises(XlConfigError, match=r"^g\.cfg:4: Cpu weight out of range"):
        build_domain_config(cfg)


def test_affinity_list_of_lists_stops_like_xl():
    # xl reads list items while they are strings; a nested list ends the list.
    dom = domain(PV_BASE + "vcpus = 3\ncpus = ['1', ['2'], '3']\n")
    assert dom.cpus_sets == [frozenset({1})]


# --- the libxl-shaped JSON (xl create -n) --------------------------------------------------------

def test_libxl_json_minimal():
    data = domain(PV_BASE).libxl_json()
    assert data == {
        "c_info": {"type": "pv", "name": "g"},
        "b_info": {"max_vcpus": 1, "avail_vcpus": [0], "max_memkb": 32768,
                   "target_memkb": 32768, "kernel": "/boot/vmlinuz", "type.pv": {}},
        "on_poweroff": "destroy", "on_reboot": "restart", "on_watchdog": "destroy",
        "on_crash": "destroy", "on_soft_reset": "soft_reset",
    }
    assert list(data) == ["c_info", "b_info", "on_poweroff", "on_reboot", "on_watchdog",
                          "on_crash", "on_soft_reset"]


def test_libxl_json_full():
    dom = domain(
        'name = "web"\ntype = "pvh"\nkernel = "/k"\nramdisk = "/r"\nroot = "/dev/xvda1"\n'
        'extra = "console=hvc0"\nuuid = "3B1E2C4D-5A6F-4E7D-8C9B-0A1B2C3D4E5F"\n'
        "memory = 256\nmaxmem = 512\nvcpus = 2\nmaxvcpus = 3\ncpus = '0-1,^0,3'\n"
        "cpus_soft = ['0', '1-2']\ncpu_weight = 512\ncap = 150\npool = 'fast'\n"
        "on_crash = 'rename-restart'\non_reboot = 'coredump-destroy'\n"
        "max_event_channels = 1023\n")
    data = dom.libxl_json()
    assert data["c_info"] == {"type": "pvh", "name": "web",
                              "uuid": "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f",
                              "pool_name": "fast"}
    b = data["b_info"]
    assert (b["max_vcpus"], b["avail_vcpus"]) == (3, [0, 1])
    assert b["vcpu_hard_affinity"] == [[1, 3], [1, 3], [1, 3]]  # a string: every vCPU
    assert b["vcpu_soft_affinity"] == [[0], [1, 2]]              # a list: item i, vCPU i
    assert (b["max_memkb"], b["target_memkb"]) == (524288, 262144)
    assert b["sched_params"] == {"weight": 512, "cap": 150}
    assert b["event_channels"] == 1023
    assert (b["kernel"], b["ramdisk"], b["cmdline"]) == (
        "/k", "/r", "root=/dev/xvda1 console=hvc0")
    assert b["type.pvh"] == {}
    assert (data["on_crash"], data["on_reboot"]) == ("restart_rename", "coredump_destroy")


def test_libxl_json_leaves_out_what_needs_the_host():
    dom = domain(PV_BASE + "cpus = 'all'\nbootloader = 'pygrub'\n"
                           "bootloader_args = ['-q']\n")
    b = dom.libxl_json()["b_info"]
    assert "vcpu_hard_affinity" not in b
    assert b["type.pv"] == {"bootloader": "pygrub", "bootloader_args": ["-q"]}

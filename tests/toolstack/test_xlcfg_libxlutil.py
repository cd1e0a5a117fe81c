"""Cross-check pyxen's xl.cfg parser against Xen's own (libxlutil 4.17 from libxen-dev).

A small C program (xlcfg_libxlutil_dump.c) feeds each config to xlu_cfg_readdata and prints
what libxlutil makes of it: whether it is rejected and the message, every assignment with its
line, and what the typed getters return for every key.  Ours must agree on all of it.
"""

import json
import random
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest

from pyxen.toolstack.xlcfg import (
    LIBXL_ACTION_NAMES,
    SHUTDOWN_ACTIONS,
    XlConfigError,
    build_domain_config,
    parse_config,
)

HERE = Path(__file__).parent
CORPUS = HERE / "xlcfg_corpus"
DISPLAY_NAME = "guest.cfg"


@pytest.fixture(scope="module")
def libxlutil(tmp_path_factory):
    """A function that runs libxlutil on a batch of configs and returns its findings."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build the libxlutil cross-check tool")
    if not Path("/usr/include/libxlutil.h").exists():
        pytest.fail("libxen-dev (libxlutil.h) is required for the libxlutil cross-check")
    work = tmp_path_factory.mktemp("xlcfg_libxlutil")
    binary = work / "dump"
    subprocess.run(["gcc", "-O1", "-Wall", "-o", str(binary),
                    str(HERE / "xlcfg_libxlutil_dump.c"), "-lxlutil"],
                   check=True, capture_output=True, text=True)
    counter = iter(range(1 << 30))

    def run(configs: list[bytes], with_values: bool = True) -> list[dict]:
        paths = []
        for data in configs:
            path = work / f"case{next(counter)}.cfg"
            path.write_bytes(data)
            paths.append(str(path))
        argv = [str(binary)] + ([] if with_values else ["--no-values"]) + [DISPLAY_NAME]
        out = subprocess.run(argv + paths, check=True, capture_output=True).stdout
        lines = out.splitlines()
        assert len(lines) == len(configs)
        return [json.loads(line) for line in lines]

    return run


# --- turning both sides into the same shape -------------------------------------------------

def _text(hex_text: str) -> str:
    return bytes.fromhex(hex_text).decode("utf-8", "surrogateescape")


def _value(dumped: dict):
    return _text(dumped["s"]) if "s" in dumped else [_value(item) for item in dumped["l"]]


def _readable(line: str) -> str:
    """Our messages show control characters and non-UTF-8 bytes escaped (so that an error is
    always one visible line); apply the same to what libxlutil printed."""
    line = line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in line)


def _theirs(dumped: dict) -> dict:
    report = _text(dumped["report"])
    result = {"rejected": dumped["rc"] != 0}
    if result["rejected"]:
        result["error"] = _readable(report.split("\n", 1)[0])
        result["python_hint"] = "looks like it contains Python code" in report
        return result
    assert report == "", report
    settings = [(_text(s["name"]), s["line"], "+=" if s["op"] else "=") for s in dumped["settings"]]
    result["settings"] = settings
    newest = {}
    for s in dumped["settings"]:
        newest[_text(s["name"])] = _value(s["value"])
    result["values"] = newest
    result["getters"] = {
        _text(name): {
            "string": (k["string"][0], _text(k["string"][1])),
            "long": (k["long"][0], int(k["long"][1])),
            "list": tuple(k["list"]),
            "report": _text(k["report"]).splitlines(),
        }
        for name, k in dumped["keys"].items()
    }
    return result


def _attempt(getter, name: str, failure, report: list[str]):
    """Call a getter the way the C tool calls libxlutil's: (errno, value), warning logged."""
    try:
        return 0, getter(name)
    except XlConfigError as err:
        report.append(f"{err.filename}:{err.line}: warning: {err.message}")
        return (34 if "out of range" in err.message else 22), failure


def _ours(data: bytes) -> dict:
    try:
        cfg = parse_config(data.decode("utf-8", "surrogateescape"), DISPLAY_NAME)
    except XlConfigError as err:
        return {"rejected": True, "error": str(err), "python_hint": err.likely_python}
    result = {"rejected": False,
              "settings": [(s.name, s.line, s.op) for s in cfg.settings],
              "values": dict(cfg.items()), "getters": {}}
    for name in cfg.keys():
        report: list[str] = []
        string = _attempt(cfg.get_string, name, "", report)
        number = _attempt(cfg.get_long, name, 0, report)
        listed = _attempt(cfg.get_list, name, None, report)
        result["getters"][name] = {
            "string": string, "long": number,
            "list": (listed[0], len(listed[1]) if listed[0] == 0 else 0),
            "report": report,
        }
    return result


def _check(cases: list[tuple[str, bytes]], libxlutil) -> None:
    found = libxlutil([data for _, data in cases])
    mismatches = []
    for (label, data), dumped in zip(cases, found, strict=True):
        theirs, ours = _theirs(dumped), _ours(data)
        if theirs != ours:
            mismatches.append(f"{label}: {data!r}\n  libxlutil: {theirs}\n  pyxen:     {ours}")
    assert not mismatches, "\n".join(mismatches)


# --- the corpus -------------------------------------------------------------------------------

# Small configs, each aimed at one rule of the language.  Several are rejected on purpose.
CASES: list[tuple[str, bytes]] = [
    ("empty file", b""),
    ("only blanks", b"   \t \n\n"),
    ("only a comment line", b"# nothing here\n"),
    ("comment without final newline", b"name = \"a\"\n# trailing comment"),
    ("lone # at end", b"x = 1\n#"),
    ("simple assignments", b'name = "guest"\nmemory = 512\nvcpus = 2\n'),
    ("no final newline", b'name = "guest"'),
    ("semicolons", b'a = 1; b = "two"; c = [3];\n'),
    ("semicolon runs and empty statements", b";;\n ; \na=1;;;\n;b=2"),
    ("single quotes", b"k = 'single \"quoted\"'\n"),
    ("double quotes", b"k = \"double 'quoted'\"\n"),
    ("empty strings", b"a = ''\nb = \"\"\n"),
    ("simple escapes", b'k = "a\\nb\\tc\\\\d\\"e\\\'f\\ag\\bh\\fi\\rj\\vk"\n'),
    ("escaped quote in single quotes", b"k = 'it\\'s'\n"),
    ("hex escape is always rejected", b'k = "\\x41"\n'),
    ("octal escape swallows digits", b'k = "a\\101b"\n'),
    ("octal escape, too few digits", b'k = "\\1z"\n'),
    ("octal escape, space and sign", b'a = "\\0 5z"\nb = "\\1+5a"\nc = "\\7-9"\n'),
    ("octal escape at the end", b'k = "\\12"\n'),
    ("unknown escape", b'k = "\\q"\n'),
    ("digit 8 escape", b'k = "\\8"\n'),
    ("backslash before newline", b'k = "abc\\\nd"\n'),
    ("unterminated double quote", b'k = "open\nnext = 1\n'),
    ("unterminated single quote at eof", b"k = 'open"),
    ("string with hash", b'k = "a # not a comment"\n'),
    ("utf-8 in a string", "name = \"g\u00e9st \u2603\"\n".encode()),
    ("latin-1 byte in a string", b'name = "g\xe9st"\n'),
    ("decimal numbers", b"a = 0\nb = 42\nc = 9223372036854775807\nd = 9223372036854775808\n"),
    ("hex numbers", b"a = 0x10\nb = 0xdeadbeef\nc = 0x\nd = 0x1x\ne = 0xffffffffffffffffff\n"),
    ("octal numbers", b"a = 010\nb = 0777\nc = 08\nd = 00\n"),
    ("odd number tokens", b"a = 1e5\nb = 12abc\nc = 1x2\nd = 0xfff\n"),
    ("number followed by identifier", b"a = 12g\n"),
    ("number with unit", b"memory = 512M\n"),
    ("quoted numbers", b'a = "  12"\nb = "12 "\nc = "-5"\nd = "+0x10"\ne = "0X1F"\nf = "\\t7"\n'
                       b'g = "-9223372036854775808"\nh = "-9223372036854775809"\ni = "- 5"\n'),
    ("negative number unquoted", b"a = -1\n"),
    ("float", b"a = 1.5\n"),
    ("python-ish expression", b"memory = 256 * 2\n"),
    ("python call", b"kernel = os.path.join('/boot', 'vmlinuz')\n"),
    ("python dict", b"a = {'x': 1}\n"),
    ("lists", b'a = []\nb = [1]\nc = [1, "two", \'three\']\n'),
    ("trailing commas", b'a = [1,]\nb = [ "x" , ]\nc = [\n 1,\n 2,\n]\n'),
    ("double comma", b"a = [1,,2]\n"),
    ("leading comma", b"a = [,1]\n"),
    ("only a comma", b"a = [,]\n"),
    ("missing comma", b"a = [1 2]\n"),
    ("nested lists", b'a = [[1], [2, [3, "x"]], []]\nb = [[]]\nc = [[],[1,],]\n'),
    ("unclosed list", b"a = [1, 2\nb = 3\n"),
    ("unclosed list at eof", b"a = [1,"),
    ("extra close bracket", b"a = [1]]\n"),
    ("two values", b"a = 1 2\n"),
    ("two lists", b"a = [1] [2]\n"),
    ("multi-line list with comments",
     b"disk = [ # first\n  'phy:/dev/a,xvda,w', # disk a\n\n  # spare\n"
     b"  'file:/b,xvdb,r'\n] # end\n"),
    ("newline after '['", b"a = [\n]\n"),
    ("newline before '='", b"a\n= 1\n"),
    ("newline after '='", b"a =\n1\n"),
    ("comment after '='", b"a =   # c  \n1\n"),
    ("missing value at eof", b"a ="),
    ("missing '=' at eof", b"a"),
    ("missing '='", b"a 1\n"),
    ("statement starting with '='", b"= 1\n"),
    ("statement starting with a string", b'"a" = 1\n'),
    ("statement starting with ']'", b"a = 1\n]\n"),
    ("semicolon in a list", b"a = [1; 2]\n"),
    ("+= strings", b'a = "x"\na += "y"\na += 3\n'),
    ("+= lists", b"a = [1]\na += [2, [3]]\na += []\n"),
    ("+= without earlier value", b'a += "x"\nb += [1]\nc += 5\n'),
    ("+= list to string", b'a = "x"\na += [1]\n'),
    ("+= string to list", b'a = [1]\na += "x"\n'),
    ("+= across a multi-line list", b'a = "x"\na += [\n1,\n2\n]\n'),
    ("+ = with a space", b"a + = 1\n"),
    ("+= at statement start", b"a = 1\n+= 2\n"),
    ("duplicate keys", b'a = 1\nb = 2\na = "three"\nb = [4]\na = 5\n'),
    ("uppercase key", b"Name = 'x'\n"),
    ("uppercase inside key", b"x_Y = 1\n"),
    ("underscore first", b"_x = 1\n"),
    ("digits and underscores", b"a_1_b2 = 1\nc__ = 2\n"),
    ("dash in key", b"on-crash = 'destroy'\n"),
    ("dot in key", b"a.b = 1\n"),
    ("odd characters", b"a = @\nb = $\n"),
    ("odd character then blank", b"a = 1 @ 2\n"),
    ("odd character at eof", b"a = [1 @"),
    ("dot at eof", b"a = 1."),
    ("dot at eof inside list", b"a = [1."),
    ("CRLF line ends", b"a = 1\r\nb = 2\r\n"),
    ("vertical tab", b"a\x0b= 1\n"),
    ("form feed", b"a = 1\n\x0c\nb = 2\n"),
    ("NUL outside strings", b"a = \x001\n"),
    ("non-UTF-8 byte outside strings", b"a = \xff\n"),
    ("error line numbers", b"a = 1\n\n\n# c\n\nb = 2 3\n"),
    ("lexical error then syntax error", b"a = 1.5 ]\n"),
    ("syntax error then python", b"a = = 1\nb = 2.5\n"),
    ("python later in the file", b"a = [\nb = (1)\n"),
    ("very long string", b"cmdline = '" + b"x" * 70000 + b"'\n"),
    ("very long list", b"a = [" + b",".join(b'"%d"' % i for i in range(3000)) + b"]\n"),
    ("very long key", b"k" * 5000 + b" = 1\n"),
    ("very long numbers", b"a = " + b"9" * 5000 + b"\nb = " + b"0" * 5000 + b"12\n"
                          b"c = '-" + b"0" * 5000 + b"x1f'\n"),
    ("very long bad token", b"a = " + b"Z" * 5000 + b"\n"),
]


def _corpus_files() -> list[tuple[str, bytes]]:
    return [(path.name, path.read_bytes()) for path in sorted(CORPUS.glob("*.cfg"))]


def test_corpus_is_substantial():
    assert len(CASES) + len(_corpus_files()) >= 40
    rejected = [label for label, data in CASES if _ours(data)["rejected"]]
    assert 20 <= len(rejected) < len(CASES)


def test_cases_agree_with_libxlutil(libxlutil):
    _check(CASES, libxlutil)


def test_corpus_files_agree_with_libxlutil(libxlutil):
    files = _corpus_files()
    assert len(files) >= 8
    _check(files, libxlutil)


def test_command_line_overrides_agree_with_libxlutil(libxlutil):
    """xl create appends "\\n" + each "KEY=VALUE\\n" + "\\n" to the file before parsing."""
    base = b'name = "g"\nmemory = 128\ndisk = ["a"]\n# no newline after this comment'
    overrides = [["memory=256"], ["disk+=['b']", "vcpus=2"], ["name='h'", "name+='x'"],
                 ["bad=value=="], ["memory=512M"]]
    cases = []
    for lines in overrides:
        text = base + b"\n" + b"".join(line.encode() + b"\n" for line in lines) + b"\n"
        cases.append((repr(lines), text))
    _check(cases, libxlutil)
    # parse_config(overrides=...) builds exactly that text.
    for lines, (_, text) in zip(overrides, cases, strict=True):
        try:
            cfg = parse_config(base.decode(), DISPLAY_NAME, overrides=lines)
        except XlConfigError:
            continue
        assert cfg.source == text.decode()


# Pieces for random configs: tokens, near-tokens and troublemakers.  NUL is left out: inside
# quotes it makes libxlutil abort.
PIECES = [
    "name", "memory", "x", "a_b", "k9", "X", "_k", "Ab", "=", "+=", "+", "=", " ", " ", "\t",
    "\n", "\n", "\n", ";", ",", ",", "[", "[", "]", "]", "1", "42", "0x1f", "077", "08", "0x",
    "1e5", "12ab", '"str"', "'s'", '"a b"', '"\\n"', '"\\x41"', '"\\101"', '"\\1"', '"\\q"',
    '"unterminated', "'", '"', "#c\n", "# comment", "#", ".", "-", "(", ")", ":", "@", "\r",
    "\x0b", "\\", '"\\"', "\u00e9", "\udcff",
]


def _random_config(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        # Mostly well-formed: assignments with small values, then a little damage.
        lines = []
        for _ in range(rng.randint(0, 6)):
            value = rng.choice(['"s"', "12", "0x10", "[1, 2]", "[]", "['a',\n'b',]",
                                "[[1], 'x']", "'q'"])
            lines.append(f"{rng.choice(['a', 'b', 'name', 'memory'])} "
                         f"{rng.choice(['=', '=', '+='])} {value}")
        text = rng.choice(["\n", ";", " ; ", "\n\n"]).join(lines)
        for _ in range(rng.randint(0, 2)):
            at = rng.randint(0, len(text))
            text = text[:at] + rng.choice(PIECES) + text[at:]
    else:
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 25)))
    return text.encode("utf-8", "surrogateescape")


def test_random_configs_agree_with_libxlutil(libxlutil):
    rng = random.Random(4100)
    cases = [(f"random #{i}", _random_config(rng)) for i in range(1500)]
    _check(cases, libxlutil)


def test_list_nesting_limit_agrees_with_libxlutil(libxlutil):
    """Bison's parser stack holds 10000 entries; deeper lists fail with "memory exhausted".
    Compared around the limit for several shapes (values are not dumped: too deep for JSON)."""
    shapes = {
        "plain": lambda n: "a = " + "[" * n + "]" * n + "\n",
        "after an item": lambda n: "a = [1, " + "[" * n + "]" * n + "]\n",
        "every level has an item": lambda n: "a = " + "[1," * n + "]" * n + "\n",
        "newlines": lambda n: "a = " + "[\n" * n + "]" * n + "\n",
        "string inside": lambda n: "a = " + "[" * n + '"s"' + "]" * n + "\n",
        "string and newline inside": lambda n: "a = " + "[" * n + "'s'\n" + "]" * n + "\n",
    }
    limits = {"plain": 4996, "after an item": 4994, "every level has an item": 1999,
              "newlines": 4996, "string inside": 4996, "string and newline inside": 4996}
    # Shapes where one entry more or less on bison's stack changes the outcome at some depth
    # (the first two are always wrong, but which error comes first depends on the depth).
    edges = {
        "comma inside": lambda n: "a = [1, " + "[" * n + ",]" + "]" * n + "\n",
        "semicolon inside": lambda n: "a = " + "[" * n + ";" + "]" * n + "\n",
        "trailing comma inside": lambda n: "a = " + "[" * n + "1," + "]" * n + "\n",
        "trailing comma, newline inside": lambda n: "a = " + "[" * n + "1,\n" + "]" * n + "\n",
        "item, then trailing comma inside":
            lambda n: "a = [1, " + "[" * n + "1," + "]" * n + "]\n",
    }
    cases = []
    for label, shape in shapes.items():
        for depth in range(limits[label] - 1, limits[label] + 3):
            cases.append((f"{label} depth {depth}", shape(depth).encode()))
    for label, shape in edges.items():
        for depth in range(4990, 5000):
            cases.append((f"{label} depth {depth}", shape(depth).encode()))
    found = libxlutil([data for _, data in cases], with_values=False)
    mismatches = []
    for (label, data), dumped in zip(cases, found, strict=True):
        theirs = _theirs(dumped)
        ours = _ours(data)
        if ours["rejected"] != theirs["rejected"] or ours.get("error") != theirs.get("error"):
            mismatches.append(f"{label}: libxlutil {theirs.get('error')!r},"
                              f" pyxen {ours.get('error')!r}")
    assert not mismatches, "\n".join(mismatches)
    # The limits above are where libxlutil starts refusing.
    for label, shape in shapes.items():
        assert not _ours(shape(limits[label]).encode())["rejected"]
        assert "memory exhausted" in _ours(shape(limits[label] + 1).encode())["error"]


def test_any_input_gives_a_config_or_one_line_error():
    rng = random.Random(17)
    alphabet = [chr(i) for i in range(128)] + ["\u00e9", "\udc80", "\u2028"] + PIECES * 3
    for i in range(3000):
        if i % 3 == 0:
            text = bytes(rng.randrange(256) for _ in range(rng.randint(0, 60))).decode(
                "utf-8", "surrogateescape")
        else:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        try:
            cfg = parse_config(text, "fuzz.cfg")
        except XlConfigError as err:
            message = str(err)
            assert message.startswith("fuzz.cfg:")
            assert len(message.splitlines()) == 1, repr(message)
            assert all(unicodedata.category(ch) != "Cc" for ch in message), repr(message)
            continue
        for name in cfg.keys():
            for getter in (cfg.get_string, cfg.get_long, cfg.get_bool, cfg.get_list):
                try:
                    getter(name)
                except XlConfigError as err:
                    assert len(str(err).splitlines()) == 1


# --- values the real libxl decides: UUIDs, and how its JSON spells enums ------------------------

LIBXL_CHECK_C = r"""
#include <stdio.h>
#include <string.h>
#include <libxl.h>
#include <libxl_uuid.h>

/* xl's action names (xl_parse.c), in the order of libxl's enum. */
static const struct { const char *xl; libxl_action_on_shutdown action; } actions[] = {
    { "destroy", LIBXL_ACTION_ON_SHUTDOWN_DESTROY },
    { "restart", LIBXL_ACTION_ON_SHUTDOWN_RESTART },
    { "rename-restart", LIBXL_ACTION_ON_SHUTDOWN_RESTART_RENAME },
    { "preserve", LIBXL_ACTION_ON_SHUTDOWN_PRESERVE },
    { "coredump-destroy", LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_DESTROY },
    { "coredump-restart", LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_RESTART },
    { "soft-reset", LIBXL_ACTION_ON_SHUTDOWN_SOFT_RESET },
};

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "uuid")) {
        for (int i = 2; i < argc; i++) {
            libxl_uuid u;
            printf("%d\n", libxl_uuid_from_string(&u, argv[i]) == 0);
        }
    } else if (argc > 1 && !strcmp(argv[1], "enums")) {
        for (unsigned i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
            printf("action %s %s\n", actions[i].xl,
                   libxl_action_on_shutdown_to_string(actions[i].action));
        printf("type pv %s\n", libxl_domain_type_to_string(LIBXL_DOMAIN_TYPE_PV));
        printf("type pvh %s\n", libxl_domain_type_to_string(LIBXL_DOMAIN_TYPE_PVH));
        printf("type hvm %s\n", libxl_domain_type_to_string(LIBXL_DOMAIN_TYPE_HVM));
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def libxl_check(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to build the libxl cross-check tool")
    work = tmp_path_factory.mktemp("libxl_check")
    (work / "check.c").write_text(LIBXL_CHECK_C)
    subprocess.run(["gcc", "-O1", "-Wall", "-o", str(work / "check"), str(work / "check.c"),
                    "-lxenlight"], check=True, capture_output=True, text=True)

    def run(*args: str) -> list[str]:
        return subprocess.run([str(work / "check"), *args], check=True, capture_output=True,
                              text=True).stdout.splitlines()
    return run


UUIDS = [
    "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f", "3B1E2C4D-5A6F-4E7D-8C9B-0A1B2C3D4E5F",
    "00000000-0000-0000-0000-000000000000", "3b1e2c4d5a6f4e7d8c9b0a1b2c3d4e5f",
    "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5", "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5fa",
    "zb1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f", " 3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5",
    "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f ", "{3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f}",
    "3b1e2c4d_5a6f_4e7d_8c9b_0a1b2c3d4e5f", "3b1e2c4d-5a6f-4e7d-8c9b0-a1b2c3d4e5f",
    "+b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f", "0x1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5f",
    "3b1e2c4d-5a6f-4e7d-8c9b-0a1b2c3d4e5\u00e9", "",
]


def test_uuid_acceptance_agrees_with_libxl(libxl_check):
    theirs = [line == "1" for line in libxl_check("uuid", *UUIDS)]
    ours = []
    for uuid in UUIDS:
        try:
            build_domain_config(parse_config(f'name = "g"\nkernel = "/k"\nuuid = "{uuid}"\n'))
            ours.append(True)
        except XlConfigError as err:
            assert str(err) == f"<config>:3: Failed to parse UUID: {uuid}"
            ours.append(False)
    assert ours == theirs
    assert theirs.count(True) == 3


def test_libxl_json_enum_spellings_agree_with_libxl(libxl_check):
    lines = [line.split() for line in libxl_check("enums")]
    actions = {xl: json for kind, xl, json in lines if kind == "action"}
    assert actions == LIBXL_ACTION_NAMES
    assert set(actions) == set(SHUTDOWN_ACTIONS)
    types = {xl: json for kind, xl, json in lines if kind == "type"}
    assert types == {"pv": "pv", "pvh": "pvh", "hvm": "hvm"}
    # and those are the spellings our JSON uses
    dom = build_domain_config(parse_config(
        'name = "g"\ntype = "pvh"\nkernel = "/k"\non_crash = "rename-restart"\n'))
    assert dom.libxl_json()["on_crash"] == actions["rename-restart"]
    assert dom.libxl_json()["c_info"]["type"] == types["pvh"]

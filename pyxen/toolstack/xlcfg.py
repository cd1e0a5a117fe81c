"""The xl.cfg language, read the way Xen's libxlutil reads it, and the Xen 4.10 xl meaning of
the keys pyxen's toolstack needs.

Two layers:

* `parse_config` / `load_config` turn text into an `XlConfig`: the ordered assignments of the
  file plus typed getters that behave like libxlutil's `xlu_cfg_get_*`.  Acceptance, values,
  error texts and error line numbers follow libxlutil 4.17 (the version the tests cross-check
  against), including its oddities; each oddity is marked "libxlutil:" where it is mirrored.
* `build_domain_config` applies xl 4.10's `parse_config_data` rules for the core keys and
  returns a `DomainConfig`.

Errors are `XlConfigError`, whose str() is one line, `<file>:<line>: <message>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

XlValue = str | list["XlValue"]

__all__ = [
    "DEFAULT_MEMORY_MIB",
    "DEFAULT_VCPUS",
    "DomainConfig",
    "LIBXL_ACTION_NAMES",
    "PYTHON_HINT",
    "SHUTDOWN_ACTIONS",
    "XEN_FIRMWARE_DIR",
    "XL_410_KEYS",
    "XlConfig",
    "XlConfigError",
    "XlSetting",
    "XlValue",
    "build_domain_config",
    "load_config",
    "parse_config",
    "parse_cpu_spec",
]


class XlConfigError(Exception):
    """A config that xl would refuse.  str() is one line: `<file>:<line>: <message>`, or
    `<file>: <message>` when no line applies."""

    def __init__(self, message: str, filename: str | None = None, line: int | None = None,
                 likely_python: bool = False) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        # libxlutil follows a parse error in a file using Python syntax with a hint that
        # arbitrary Python is no longer supported; the CLI can print `PYTHON_HINT`.
        self.likely_python = likely_python
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.filename is None:
            return self.message
        if self.line is None:
            return f"{self.filename}: {self.message}"
        return f"{self.filename}:{self.line}: {self.message}"


PYTHON_HINT = ("warning: Config file looks like it contains Python code.\n"
               "warning:  Arbitrary Python is no longer supported.\n"
               "warning:  See https://wiki.xen.org/wiki/PythonInXlConfig")


@dataclass(frozen=True)
class XlSetting:
    """One `KEY = VALUE` or `KEY += VALUE` assignment.  For `+=` the value is already the
    concatenation with the key's previous value, as libxlutil stores it."""

    name: str
    value: XlValue
    op: str  # "=" or "+="
    line: int


# ---------------------------------------------------------------------------------------------
# Lexer: libxlutil's flex scanner, rule by rule.

_EOF, _IDENT, _STRING, _NUMBER, _NEWLINE, _OP_ADD = "$end", "IDENT", "STRING", "NUMBER", \
    "NEWLINE", "+="
# How bison names each token in "unexpected X, expecting Y" messages.
_TOKEN_NAMES = {
    _EOF: "$end", _IDENT: "IDENT", _STRING: "STRING", _NUMBER: "NUMBER", _NEWLINE: "NEWLINE",
    _OP_ADD: "+=", "=": "'='", ";": "';'", "[": "'['", "]": "']'", ",": "','",
}
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset("0123456789")
# libxlutil 4.17 lets a key continue with dots (older scanners did not); we follow 4.17.
_IDENT_CHARS = _LOWER | _DIGITS | {"_", "."}
_NUMBER_CHARS = _DIGITS | frozenset("abcdefx")
# libxlutil: a lexical error that starts with one of these marks the file as "likely Python".
_PYTHON_CHARS = frozenset("+-.():")
_C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale, as strtol/strtoul skip it
# A whole quoted string.  A NUL inside quotes makes libxlutil abort (an assertion in its
# unquoting); we treat such a string as unterminated instead.
_QUOTED = {quote: re.compile(quote + r"(?:[^" + quote + r"\\\n\x00]++|\\[^\n\x00])*+" + quote)
           for quote in "'\""}
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   '"': '"', "'": "'", "\\": "\\"}


class _Token:
    __slots__ = ("kind", "text", "line", "value")

    def __init__(self, kind: str, text: str, line: int, value: str | None = None) -> None:
        self.kind = kind
        self.text = text    # what flex matched (yytext), used to say where an error is
        self.line = line    # what the scanner put in yylloc.first_line
        self.value = value  # the string or number, for STRING / NUMBER / IDENT


class _Located:
    """An error message and the line libxlutil gives it."""

    __slots__ = ("line", "message")

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


class _Recover(Exception):
    """A syntax error bison recovers from: it skips to the next newline.  Carries the token
    that caused it."""

    def __init__(self, token: _Token) -> None:
        super().__init__()
        self.token = token


class _Abort(Exception):
    """An error after which bison gives up: nothing more is scanned."""


def _printable(text: str) -> str:
    """Text for an error message: bytes that were not UTF-8 (kept as surrogates) become \\xNN
    and control characters are escaped, so a message is always one visible line.  libxlutil
    prints them raw; this is the only way our messages differ from its."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def _locate_error(line: int, text: str, message: str) -> _Located:
    """Format an error the way libxlutil's yyerror does from a line and the scanner text."""
    marker = ""
    if text.endswith("\n"):
        # libxlutil: the text ends with the newline, so it steps back one line.  For a NEWLINE
        # token, whose line is already the newline's own, that gives the line before it
        # (line 0 for an error at the end of line 1); mirrored.
        text = text[:-1]
        line -= 1
        if not text:
            marker = "<newline>"
    text = text.rstrip(" \t")
    # printf("%.*s") stops at a NUL byte, but the quotes are printed whenever yyleng > 0.
    near = f"`{_printable(text.split(chr(0), 1)[0])}'" if text else ""
    return _Located(line, f"config parsing error near {near}{marker}: {message}")


def _c_integer(digits: str, base: int, limit: int) -> int:
    """int(digits, base), capped at `limit` + 1 so that digit strings of any length (Python
    refuses to convert more than 4300 digits) just count as too big."""
    digits = digits.lstrip("0")
    if len(digits) > 64:
        return limit + 1
    return min(int(digits or "0", base), limit + 1)


def _strtoul_prefix(text: str) -> int:
    """How many characters strtoul(text, &end, 10) consumes (0 when nothing converts)."""
    i = 0
    while i < len(text) and text[i] in _C_SPACE:
        i += 1
    if i < len(text) and text[i] in "+-":
        i += 1
    start = i
    while i < len(text) and text[i] in _DIGITS:
        i += 1
    return i if i > start else 0


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1           # yylineno
        self.token_line = 1     # yylloc.first_line of the last token handed out
        self.likely_python = False
        self.pending = ""       # start of a lexical error cut off by the end of input
        self.last: _Token | None = None
        # libxlutil prints every error and carries on; the first one is what we report.
        self.first_error: _Located | None = None

    def report(self, error: _Located) -> None:
        if self.first_error is None:
            self.first_error = error

    def lexical_error(self, text: str, message: str) -> None:
        # libxlutil's lexical errors are located at the scanner's current line.
        self.report(_locate_error(self.line, text, message))

    def next(self) -> _Token:
        token = self._scan()
        if token.kind != _EOF:
            self.token_line = token.line
        self.last = token
        return token

    def _make(self, kind: str, start: int, end: int, value: str | None = None) -> _Token:
        self.pos = end
        return _Token(kind, self.text[start:end], self.line, value)

    def _scan(self) -> _Token:
        text, n = self.text, len(self.text)
        while True:
            p = self.pos
            if p >= n:
                # flex leaves yytext as whatever yymore() had pending plus the NUL that marks
                # the end of the buffer, and does not touch yylloc.
                return _Token(_EOF, self.pending + "\0", self.token_line)
            c = text[p]
            if c in " \t":
                self.pos += 1
                continue
            if c in _LOWER:
                end = p + 1
                while end < n and text[end] in _IDENT_CHARS:
                    end += 1
                return self._make(_IDENT, p, end, text[p:end])
            if c in _DIGITS:
                # libxlutil: a NUMBER is a digit then any of [0-9a-fx]; the text is kept and
                # only interpreted by the getters.
                end = p + 1
                while end < n and text[end] in _NUMBER_CHARS:
                    end += 1
                return self._make(_NUMBER, p, end, text[p:end])
            if c == "\n":
                token = self._make(_NEWLINE, p, p + 1)
                self.line += 1
                return token
            if c == "#":
                end = text.find("\n", p)
                if end >= 0:
                    token = self._make(_NEWLINE, p, end + 1)
                    self.line += 1
                    return token
                # libxlutil: a comment must end with a newline; one that runs into the end of
                # the file is a lexical error (silently dropped only if it is just "#").
            elif c in ",[]=;":
                return self._make(c, p, p + 1)
            elif c == "+" and text.startswith("=", p + 1):
                return self._make(_OP_ADD, p, p + 2)
            elif c in "'\"":
                end = self._string_end(p)
                if end is not None:
                    raw = text[p:end]
                    token = self._make(_STRING, p, end)
                    token.value = self._dequote(raw)
                    return token
            if c in _PYTHON_CHARS:
                self.likely_python = True
            newline_token = self._lexical_error_run(p)
            if newline_token is not None:
                return newline_token

    def _string_end(self, p: int) -> int | None:
        """End of a complete quoted string starting at p, or None (then the quote is a lexical
        error).  A backslash escapes any character except a newline."""
        found = _QUOTED[self.text[p]].match(self.text, p)
        return None if found is None else found.end()

    def _lexical_error_run(self, p: int) -> _Token | None:
        """A character no rule accepts: flex swallows it and the non-blank characters after it
        and reports one "lexical error".  Returns the NEWLINE token when a newline ends it."""
        text, n = self.text, len(self.text)
        q = end = p + 1
        # flex works on bytes: a character of several UTF-8 bytes is one byte the rules
        # reject followed by non-blank bytes, so it always takes the last branch.
        if len(text[p].encode("utf-8", "surrogateescape")) == 1:
            if q >= n:
                # libxlutil: at the end of input the error is never reported; the character
                # only shows up in the text of a later "unexpected $end" error.
                self.pending = text[p]
                self.pos = q
                return None
            if text[q] == "\n":
                self.pos = q + 1
                self.line += 1
                self.lexical_error(text[p:q + 1], "lexical error")
                return _Token(_NEWLINE, text[p:q + 1], self.line)
            if text[q] in " \t":
                end = q + 1
        if end == q:
            while end < n and text[end] not in " \t\n":
                end += 1
        self.pos = end
        self.lexical_error(text[p:end], "lexical error")
        return None

    def _dequote(self, raw: str) -> str:
        """The value of a quoted string, with libxlutil's escape handling."""
        body, out, i = raw[1:-1], [], 0
        if "\\" not in body:
            return body
        while i < len(body):
            c = body[i]
            i += 1
            if c != "\\":
                out.append(c)
                continue
            nc = body[i]
            i += 1
            if nc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[nc])
            elif nc == "x":
                # libxlutil: the hexadecimal escape can never succeed (it demands more digits
                # than it reads), so every \x is an error.
                self.lexical_error(raw, "invalid digit after backslash hexnumerical character"
                                        " escape in quoted string")
                break
            elif "0" <= nc <= "7":
                # libxlutil: after \<digit> it reads up to three more characters as a
                # *decimal* number (the quote included in what it may look at), needs at least
                # two of them consumed, and then emits nothing at all.
                consumed = _strtoul_prefix(raw[1 + i:1 + i + 3])
                if consumed <= 1:
                    self.lexical_error(raw, "invalid digit after backslash octalnumerical"
                                            " character escape in quoted string")
                    break
                i += consumed
            else:
                # (sic: "backlash")
                self.lexical_error(raw, "invalid character after backlash in quoted string")
                break
        return "".join(out)


# ---------------------------------------------------------------------------------------------
# Parser: libxlutil's grammar, run the way its bison LALR parser runs.
#
#   file       := { [assignment] (NEWLINE | ';') } [assignment]
#   assignment := IDENT ('=' | '+=') value
#   value      := STRING | NUMBER | '[' nl* [ value nl* { ',' nl* value nl* } [',' nl*] ] ']'
#
# Bison's default reductions decide what an error message expects: inside a list every
# unexpected token is reported as "expecting ']'", and after a complete top-level value as
# "expecting $end".  Bison's stack (at most 10000 entries) limits how deeply lists nest; the
# parser counts entries exactly as bison pushes them so that "memory exhausted" comes at the
# same place.

_STACK_LIMIT = 10000
# Stack entries under a top-level value: initial state, stmts, IDENT, '=' or '+='.
_VALUE_BASE_DEPTH = 4


class _Parser:
    def __init__(self, lexer: _Lexer) -> None:
        self.lexer = lexer
        self.settings: list[XlSetting] = []
        self.latest: dict[str, XlSetting] = {}

    def syntax_error(self, token: _Token, expected: list[str]) -> _Recover:
        message = f"syntax error, unexpected {_TOKEN_NAMES[token.kind]}"
        if expected:
            message += ", expecting " + " or ".join(expected)
        self.lexer.report(_locate_error(token.line, token.text, message))
        return _Recover(token)

    def push(self, entries: int) -> None:
        if entries >= _STACK_LIMIT:
            last = self.lexer.last
            assert last is not None
            self.lexer.report(_locate_error(last.line, last.text, "memory exhausted"))
            raise _Abort()

    def run(self) -> None:
        """Parse to the end, or until bison would give up (_Abort)."""
        lexer = self.lexer
        token = lexer.next()
        while token.kind != _EOF:
            try:
                token = self.statement(token)
            except _Recover as recover:
                # Bison's error rule: drop tokens up to a newline (which then ends an empty
                # statement, as the rule's own NEWLINE would).
                token = recover.token
                while token.kind not in (_NEWLINE, _EOF):
                    token = lexer.next()

    def statement(self, token: _Token) -> _Token:
        """Parse one statement starting at `token`; returns the token after it."""
        lexer = self.lexer
        if token.kind in (_NEWLINE, ";"):
            return lexer.next()
        if token.kind != _IDENT:
            raise self.syntax_error(token, ["$end", "IDENT", "NEWLINE", "';'"])
        name = token
        token = lexer.next()
        if token.kind not in (_OP_ADD, "="):
            raise self.syntax_error(token, ["+=", "'='"])
        op = token.kind
        token = lexer.next()
        value_line = token.line
        value = self.value(token)
        # The assignment is stored before the next token is read, so a bad `+=` is
        # reported against the last token of the value.
        self.store(name.text, op, value, value_line)
        token = lexer.next()
        if token.kind in (_NEWLINE, ";"):
            return lexer.next()
        if token.kind != _EOF:
            # Bison has already reduced everything to a complete file here (its default
            # reduction), so it finds nothing to recover with and gives up.
            self.syntax_error(token, ["$end"])
            raise _Abort()
        return token

    def value(self, token: _Token) -> XlValue:
        """Parse one value whose first token is `token`; consumes nothing after it."""
        if token.kind in (_STRING, _NUMBER):
            self.push(_VALUE_BASE_DEPTH + 1)
            assert token.value is not None
            return token.value
        if token.kind != "[":
            raise self.syntax_error(token, ["STRING", "NUMBER", "'['"])
        return self.list_value(_VALUE_BASE_DEPTH)

    def list_value(self, depth: int) -> list[XlValue]:
        """Parse a list whose '[' is the current token, with `depth` stack entries below it.
        Iterative, so nesting is bounded by bison's limit and not by Python's recursion."""
        lexer = self.lexer
        # Enclosing lists, innermost last: (items so far, entries below its '[', slot).
        frames: list[tuple[list[XlValue], int, int]] = []
        items: list[XlValue] = []
        base = depth
        self.push(base + 1)  # '['
        self.push(base + 2)  # the (empty) run of newlines after it
        slot = base + 2      # entries below the next item
        token = lexer.next()
        expecting_item = True
        while True:
            if expecting_item:
                while token.kind == _NEWLINE:
                    self.push(slot + 1)
                    token = lexer.next()
                if token.kind == "[":
                    frames.append((items, base, slot))
                    items, base = [], slot
                    self.push(base + 1)
                    self.push(base + 2)
                    slot = base + 2
                    token = lexer.next()
                    continue
                if token.kind in (_STRING, _NUMBER):
                    assert token.value is not None
                    self.push(slot + 1)
                    items.append(token.value)
                    self.push(slot + 2)  # newlines after the item
                    token = lexer.next()
                    expecting_item = False
                    continue
                if slot == base + 2:
                    self.push(base + 3)  # bison reduces the empty item list first
                if token.kind != "]":
                    raise self.syntax_error(token, ["']'"])
            else:
                while token.kind == _NEWLINE:
                    self.push(slot + 3)
                    token = lexer.next()
                if token.kind == ",":
                    self.push(base + 4)
                    self.push(base + 5)
                    slot = base + 5
                    token = lexer.next()
                    expecting_item = True
                    continue
                if token.kind != "]":
                    raise self.syntax_error(token, ["']'"])
            # The token is the ']' that closes the innermost list.
            self.push(base + 4)
            finished = items
            if not frames:
                return finished
            items, base, slot = frames.pop()
            items.append(finished)
            self.push(slot + 2)  # newlines after the nested list
            token = lexer.next()
            expecting_item = False

    def store(self, name: str, op: str, value: XlValue, line: int) -> None:
        previous = self.latest.get(name)
        if op == _OP_ADD and previous is not None:
            if isinstance(previous.value, str) != isinstance(value, str):
                last = self.lexer.last
                assert last is not None
                self.lexer.report(_locate_error(self.lexer.line, last.text,
                                                "can't add [list] to \"string\" or vice versa"))
                return
            if isinstance(value, str):
                assert isinstance(previous.value, str)
                value = previous.value + value
            else:
                assert isinstance(previous.value, list)
                value = previous.value + value
        setting = XlSetting(name, value, op, line)
        self.settings.append(setting)
        self.latest[name] = setting


# ---------------------------------------------------------------------------------------------
# The parsed file.

def _copy(value: XlValue) -> XlValue:
    """A deep copy; iterative because lists may nest thousands deep."""
    if isinstance(value, str):
        return value
    root: list[XlValue] = []
    pending = [(value, root)]
    while pending:
        source, target = pending.pop()
        for item in source:
            if isinstance(item, str):
                target.append(item)
            else:
                copied: list[XlValue] = []
                target.append(copied)
                pending.append((item, copied))
    return root


def _strtol(text: str) -> tuple[int | None, bool]:
    """C's strtol(text, &end, 0) on LP64: (value or None if nothing converted or if text has
    trailing characters, overflowed)."""
    i, n = 0, len(text)
    while i < n and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    if text[i:i + 2] in ("0x", "0X") and i + 2 < n and text[i + 2] in "0123456789abcdefABCDEF":
        digits, base, i = "0123456789abcdefABCDEF", 16, i + 2
    elif text[i:i + 1] == "0":
        digits, base = "01234567", 8
    else:
        digits, base = "0123456789", 10
    start = i
    while i < n and text[i] in digits:
        i += 1
    if i == start:
        return None, False
    magnitude = _c_integer(text[start:i], base, 1 << 63)
    result = -magnitude if negative else magnitude
    if not -(1 << 63) <= result < (1 << 63):
        return None, True
    return (result if i == n else None), False


def _check_override(line: str) -> None:
    # xl create takes any argument with a '=' in it as a config line.
    if "=" not in line:
        raise XlConfigError(f"override `{line}' is not of the form KEY=VALUE")


class XlConfig:
    """A parsed xl config file: its assignments in file order and libxlutil-style getters.
    A key set more than once has the value of its last assignment."""

    def __init__(self, text: str, filename: str = "<config>",
                 overrides: list[str] | tuple[str, ...] = ()) -> None:
        self.filename = filename
        self.text = text
        for line in overrides:
            _check_override(line)
        self._overrides = list(overrides)
        self._parse()

    # -- parsing ------------------------------------------------------------------------------

    @property
    def source(self) -> str:
        """The exact text parsed: xl appends command-line overrides to the file as
        "\\n" + "KEY=VALUE\\n" per override + "\\n" before parsing it."""
        if not self._overrides:
            return self.text
        return self.text + "\n" + "".join(line + "\n" for line in self._overrides) + "\n"

    @property
    def overrides(self) -> tuple[str, ...]:
        return tuple(self._overrides)

    def _parse(self) -> None:
        lexer = _Lexer(self.source)
        parser = _Parser(lexer)
        try:
            parser.run()
        except _Abort:
            pass
        error = lexer.first_error
        if error is not None:
            # Scanning went on after the error as far as libxlutil's does, because the
            # "likely Python" hint depends on everything it scanned.
            raise XlConfigError(error.message, self.filename, error.line,
                                likely_python=lexer.likely_python)
        self.settings: tuple[XlSetting, ...] = tuple(parser.settings)
        self._latest = parser.latest
        self._order = list(dict.fromkeys(s.name for s in parser.settings))

    def set_override(self, line: str) -> None:
        """Apply an `xl create cfg KEY=VALUE` override.  Like xl, the line is appended to the
        config text and the whole text is parsed again, so it may use `+=` and later
        overrides win.  On error the config is left unchanged."""
        _check_override(line)
        previous = (self._overrides, self.settings, self._latest, self._order)
        self._overrides = self._overrides + [line]
        try:
            self._parse()
        except XlConfigError:
            self._overrides, self.settings, self._latest, self._order = previous
            raise

    # -- access -------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Every key once, in the order of its first assignment."""
        return list(self._order)

    def items(self) -> list[tuple[str, XlValue]]:
        """(key, value) in the order of `keys()`, with each key's final value."""
        return [(name, _copy(self._latest[name].value)) for name in self._order]

    def __contains__(self, key: object) -> bool:
        return key in self._latest

    def __len__(self) -> int:
        return len(self._order)

    def setting(self, key: str) -> XlSetting | None:
        """The assignment that gives `key` its value (the last one), or None."""
        return self._latest.get(key)

    def line_of(self, key: str) -> int | None:
        found = self._latest.get(key)
        return None if found is None else found.line

    def unknown_keys(self) -> list[str]:
        """Keys xl 4.10 does not read.  xl ignores them silently; the CLI may warn."""
        return [name for name in self._order if name not in XL_410_KEYS]

    def _error(self, setting: XlSetting, message: str) -> XlConfigError:
        return XlConfigError(message, self.filename, setting.line)

    def _atom(self, key: str) -> XlSetting | None:
        found = self._latest.get(key)
        if found is not None and not isinstance(found.value, str):
            raise self._error(found, f"parameter `{key}' is a list but should be a single value")
        return found

    def get_string(self, key: str, default: str | None = None) -> str | None:
        """The key's string (numbers are kept as their text), `default` if the key is absent;
        XlConfigError if it is a list."""
        found = self._atom(key)
        if found is None:
            return default
        assert isinstance(found.value, str)
        return found.value

    def get_long(self, key: str, default: int | None = None) -> int | None:
        """The key as a C long, converted like strtol(s, &end, 0): optional blanks and sign,
        then decimal, 0x hexadecimal or 0 octal, and nothing after.  Quoted numbers work too."""
        return self.get_bounded_long(key, -(1 << 63), (1 << 63) - 1, default)

    def get_bounded_long(self, key: str, minimum: int, maximum: int,
                         default: int | None = None) -> int | None:
        found = self._atom(key)
        if found is None:
            return default
        if found.op == _OP_ADD:
            raise self._error(found, f"can't use += with numbers for parameter `{key}'")
        assert isinstance(found.value, str)
        number, overflow = _strtol(found.value)
        if overflow:
            raise self._error(found, f"parameter `{key}' could not be parsed as a number:"
                                     " Numerical result out of range")
        if number is None:
            raise self._error(found, f"parameter `{key}' is not a valid number")
        if number < minimum:
            raise self._error(found, f"value `{number}' is smaller than minimum bound"
                                     f" '{minimum}'")
        if number > maximum:
            raise self._error(found, f"value `{number}' is greater than maximum bound"
                                     f" '{maximum}'")
        return number

    def get_bool(self, key: str, default: bool | None = None) -> bool | None:
        """A number, true unless 0 (libxlutil's defbool getter)."""
        number = self.get_long(key)
        return default if number is None else number != 0

    def get_list(self, key: str, default: list[XlValue] | None = None) -> list[XlValue] | None:
        """The key's list (items are strings or nested lists), `default` if the key is absent;
        XlConfigError if it is a single value."""
        found = self._latest.get(key)
        if found is None:
            return default
        if isinstance(found.value, str):
            raise self._error(found, f"parameter `{key}' is a single value but should be a list")
        return [_copy(item) for item in found.value]

    def __repr__(self) -> str:
        return f"XlConfig({self.filename!r}, keys={getattr(self, '_order', [])!r})"


def parse_config(text: str, filename: str = "<config>",
                 overrides: list[str] | tuple[str, ...] = ()) -> XlConfig:
    """Parse xl.cfg text.  `filename` is only used in messages; `overrides` are
    `KEY=VALUE` lines from the command line, applied as xl applies them."""
    return XlConfig(text, filename, overrides)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> XlConfig:
    """Read and parse a config file.  Bytes that are not UTF-8 are kept (as surrogates)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise XlConfigError(f"Failed to read config file: {err.strerror}", str(path)) from None
    return XlConfig(data.decode("utf-8", "surrogateescape"), str(path), overrides)


# ---------------------------------------------------------------------------------------------
# Xen 4.10 xl semantics.

SHUTDOWN_ACTIONS = ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy",
                    "coredump-restart", "soft-reset")

# How libxl's JSON spells each action (libxl_action_on_shutdown_to_string).
LIBXL_ACTION_NAMES = {"destroy": "destroy", "restart": "restart",
                      "rename-restart": "restart_rename", "preserve": "preserve",
                      "coredump-destroy": "coredump_destroy",
                      "coredump-restart": "coredump_restart", "soft-reset": "soft_reset"}

# Where xl 4.10 looks for `firmware="pvgrub64"` and friends (XENFIRMWAREDIR).
XEN_FIRMWARE_DIR = "/usr/lib/xen/boot"

# libxl's defaults when the config says nothing (libxl__domain_build_info_setdefault).
DEFAULT_MEMORY_MIB = 32
DEFAULT_VCPUS = 1

_INT_MAX = (1 << 31) - 1

# The top-level keys xl 4.10 reads, for unknown_keys(): reconstructed from xl_parse.c and
# xl.cfg(5); the pvshim keys came with the 4.10.1 PV-shim backport.
XL_410_KEYS = frozenset("""
    name uuid type builder pool hap oos seclabel init_seclabel driver_domain
    vcpus maxvcpus cpus cpus_soft cpu_weight cap period slice latency extratime vnuma
    memory maxmem shadow_memory
    on_poweroff on_reboot on_watchdog on_crash on_soft_reset
    kernel ramdisk cmdline root extra bootloader bootloader_args firmware device_tree
    max_grant_frames max_maptrack_frames max_event_channels
    nomigrate e820_host localtime rtc_timeoffset tsc_mode vncviewer videoram
    disk vif vtpm p9 vfb channel pci pci_msitranslate pci_power_mgmt pci_permissive
    pci_seize rdm rdm_mem_boundary dtdev ioports irqs iomem usbctrl usbdev vdispl
    vuart gic_version
    acpi acpi_s3 acpi_s4 apic pae nx hpet vpt_align viridian timer_mode nestedhvm altp2m
    altp2mhvm mmio_hole mca_caps firmware_override bios bios_path_override smbios_firmware
    acpi_firmware ms_vm_genid
    device_model_override device_model_version device_model_stubdomain_override
    device_model_stubdomain_seclabel device_model_args device_model_args_pv
    device_model_args_hvm device_model_user dm_restrict
    stdvga vga vnc vnclisten vncdisplay vncunused vncpasswd keymap sdl opengl display
    xauthority nographic spice spicehost spiceport spicetls_port spicedisable_ticketing
    spicepasswd spiceagent_mouse spicevdagent spice_clipboard_sharing spiceusbredirection
    spice_image_compression spice_streaming_video gfx_passthru serial boot soundhw usb
    usbversion usbdevice vendor_device xen_platform_pci cpuid hdtype
    pvshim pvshim_path pvshim_cmdline pvshim_extra
""".split())

# Keys build_domain_config interprets; everything else goes to DomainConfig.extra_keys.
_INTERPRETED_KEYS = frozenset("""
    name uuid type builder pvh pool vcpus maxvcpus cpus cpus_soft cpu_weight cap memory maxmem
    on_poweroff on_reboot on_watchdog on_crash on_soft_reset kernel ramdisk cmdline root extra
    bootloader bootloader_args firmware max_grant_frames max_maptrack_frames
    max_event_channels
""".split())

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}\Z")


@dataclass
class DomainConfig:
    """What xl 4.10 takes from a config for the keys pyxen implements.  Sizes are MiB.
    Values are kept as given (memory=0 stays 0); refusing them is the caller's business."""

    name: str
    filename: str = "<config>"
    uuid: str | None = None
    type: str = "pv"
    memory: int = DEFAULT_MEMORY_MIB
    maxmem: int = DEFAULT_MEMORY_MIB
    vcpus: int = DEFAULT_VCPUS
    maxvcpus: int = DEFAULT_VCPUS
    kernel: str | None = None
    ramdisk: str | None = None
    # The command line the guest gets: cmdline=, or else built from root= and extra=.
    cmdline: str | None = None
    root: str | None = None
    extra: str | None = None
    bootloader: str | None = None
    bootloader_args: list[str] | None = None
    firmware: str | None = None
    # Hard / soft affinity as written: a string for every vCPU, or item i for vCPU i ...
    cpus: str | list[XlValue] | None = None
    cpus_soft: str | list[XlValue] | None = None
    # ... and parsed into pCPU sets (one for a string, one per vCPU for a list) when every
    # spec is plain numbers and ranges; None when a spec needs the host ("all", "node:").
    cpus_sets: list[frozenset[int]] | None = None
    cpus_soft_sets: list[frozenset[int]] | None = None
    cpu_weight: int | None = None
    cap: int | None = None
    pool: str | None = None
    # None: not in the config, so xl uses its global (xl.conf) setting.
    max_grant_frames: int | None = None
    max_maptrack_frames: int | None = None
    max_event_channels: int | None = None
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_watchdog: str = "destroy"
    on_crash: str = "destroy"
    on_soft_reset: str = "soft-reset"
    # Every key not interpreted above, with its value.
    extra_keys: dict[str, XlValue] = field(default_factory=dict)
    # What xl (and pyxen) would print while reading the config, in order.
    warnings: list[str] = field(default_factory=list)

    def unknown_keys(self) -> list[str]:
        """Keys of extra_keys that xl 4.10 does not know; xl ignores them silently."""
        return [name for name in self.extra_keys if name not in XL_410_KEYS]

    def libxl_json(self) -> dict:
        """The config in the shape of libxl's `libxl_domain_config` JSON, as `xl create -n`
        prints it (libxl_domain_config_to_json): only the fields this config sets, enum values
        as libxl spells them ("restart_rename"), bitmaps as lists of set bits, sizes in KiB.
        Devices (disk=, vif=, ...) are not rendered: pyxen does not build them yet."""
        c_info: dict = {"type": self.type, "name": self.name}
        if self.uuid is not None:
            c_info["uuid"] = self.uuid.lower()
        if self.pool is not None:
            c_info["pool_name"] = self.pool
        b_info: dict = {"max_vcpus": self.maxvcpus,
                        "avail_vcpus": list(range(max(self.vcpus, 0)))}
        for key, raw, sets in (("vcpu_hard_affinity", self.cpus, self.cpus_sets),
                               ("vcpu_soft_affinity", self.cpus_soft, self.cpus_soft_sets)):
            if sets is None:
                continue
            # A string applies to every vCPU (xl copies it for each); a list gives item i
            # to vCPU i.
            per_vcpu = sets * self.maxvcpus if isinstance(raw, str) else sets
            b_info[key] = [sorted(cpus) for cpus in per_vcpu]
        b_info["max_memkb"] = self.maxmem * 1024
        b_info["target_memkb"] = self.memory * 1024
        sched: dict = {}
        if self.cpu_weight is not None:
            sched["weight"] = self.cpu_weight
        if self.cap is not None:
            sched["cap"] = self.cap
        if sched:
            b_info["sched_params"] = sched
        if self.max_event_channels is not None:
            b_info["event_channels"] = self.max_event_channels
        if self.max_grant_frames is not None:
            b_info["max_grant_frames"] = self.max_grant_frames
        if self.max_maptrack_frames is not None:
            b_info["max_maptrack_frames"] = self.max_maptrack_frames
        for key in ("kernel", "cmdline", "ramdisk"):
            if getattr(self, key) is not None:
                b_info[key] = getattr(self, key)
        specific: dict = {}
        if self.type == "pv":
            if self.bootloader is not None:
                specific["bootloader"] = self.bootloader
            if self.bootloader_args is not None:
                specific["bootloader_args"] = list(self.bootloader_args)
        elif self.type == "hvm" and self.firmware is not None:
            specific["firmware"] = self.firmware
        b_info[f"type.{self.type}"] = specific
        result: dict = {"c_info": c_info, "b_info": b_info}
        for key in ("on_poweroff", "on_reboot", "on_watchdog", "on_crash", "on_soft_reset"):
            result[key] = LIBXL_ACTION_NAMES[getattr(self, key)]
        return result


def _prefix_of(value: str, word: str) -> bool:
    # xl 4.10 compares with strncmp(value, word, strlen(value)): any prefix matches,
    # including the empty string.
    return word.startswith(value)


def _strtoul10(text: str) -> tuple[int | None, str]:
    """strtoul(text, &end, 10): (value, rest) or (None, text) when nothing converts."""
    consumed = _strtoul_prefix(text)
    if not consumed:
        return None, text
    number_text = text[:consumed].lstrip(_C_SPACE)
    magnitude = _c_integer(number_text.lstrip("+-"), 10, (1 << 64) - 1)
    if magnitude >= 1 << 64:
        value = (1 << 64) - 1  # ULONG_MAX on overflow
    else:
        value = (-magnitude) % (1 << 64) if number_text.startswith("-") else magnitude
    return value, text[consumed:]


def _parse_cpu_range(text: str) -> tuple[int, int] | None:
    first, rest = _strtoul10(text)
    if first is None or first == (1 << 64) - 1:
        return None
    last = first
    if rest.startswith("-"):
        last, rest = _strtoul10(rest[1:])
        if last is None or last == (1 << 64) - 1 or last < first:
            return None
    return (first, last) if rest == "" else None


def parse_cpu_spec(spec: str) -> frozenset[int] | None:
    """A `cpus=` string such as "0-3,^2,5" as a set of pCPUs, items applied left to right.
    Returns None when the spec needs the host ("all", "node:N", or a range of more than
    65536 pCPUs); raises XlConfigError (without location) for a spec xl 4.10 rejects."""
    cpus: set[int] = set()
    simple = True
    for item in (part for part in spec.split(",") if part):  # strtok skips empty fields
        remove = item.startswith("^")
        body = item[1:] if remove else item
        nodes = False
        for prefix in ("node:", "nodes:"):
            if body.startswith(prefix):
                body, nodes = body[len(prefix):], True
                break
        if body == "all":
            if remove:
                raise XlConfigError("Can't combine \"^\" and \"all\".")
            simple = False
            continue
        bounds = _parse_cpu_range(body)
        if bounds is None:
            raise XlConfigError(f"Invalid pcpu range: {body}.")
        if nodes:
            simple = False
            continue
        span = range(bounds[0], bounds[1] + 1)
        if len(span) > 1 << 16:
            # A real host has far fewer pCPUs; do not build a giant set.
            simple = False
            continue
        if remove:
            cpus.difference_update(span)
        else:
            cpus.update(span)
    return frozenset(cpus) if simple else None


def resolve_cpu_spec(spec: str, nr_cpus: int) -> frozenset[int]:
    """A cpu list as xl reads it (`cpus=`, vcpu-pin, cpupool-cpu-add): comma-separated items,
    applied left to right, each a pCPU or range ("2", "0-3"), "all", or "node:N" /
    "nodes:N-M" (every pCPU of those NUMA nodes), any of them prefixed by "^" to remove
    them.  This host has one NUMA node, 0, holding every pCPU.  Raises XlConfigError with
    xl's words for a malformed item, and for a pCPU or node the host does not have."""
    cpus: set[int] = set()
    for item in (part for part in spec.split(",") if part):  # strtok skips empty fields
        remove = item.startswith("^")
        body = item[1:] if remove else item
        nodes = False
        for prefix in ("node:", "nodes:"):
            if body.startswith(prefix):
                body, nodes = body[len(prefix):], True
                break
        if body == "all":
            if remove:
                raise XlConfigError("Can't combine \"^\" and \"all\".")
            span: range = range(nr_cpus)
        else:
            bounds = _parse_cpu_range(body)
            if bounds is None:
                raise XlConfigError(f"Invalid pcpu range: {body}.")
            if nodes:
                if bounds[1] > 0:
                    raise XlConfigError(f"Invalid node: {bounds[1]} (this host has one NUMA"
                                        " node, node 0)")
                span = range(nr_cpus)
            else:
                if bounds[1] >= nr_cpus and not remove:
                    raise XlConfigError(f"Invalid pcpu range: {body} (this host has pCPUs"
                                        f" 0-{nr_cpus - 1})")
                span = range(bounds[0], min(bounds[1], nr_cpus - 1) + 1)
        if remove:
            cpus.difference_update(span)
        else:
            cpus.update(span)
    return frozenset(cpus)


class _Reader:
    """Reads keys the way xl_parse.c does: a getter error is printed as a warning and the key
    is then treated as absent, unless the caller makes it fatal."""

    def __init__(self, cfg: XlConfig, warnings: list[str]) -> None:
        self.cfg = cfg
        self.warnings = warnings

    def warn_from(self, err: XlConfigError) -> None:
        self.warnings.append(f"{err.filename}:{err.line}: warning: {err.message}")

    def string(self, key: str) -> str | None:
        try:
            return self.cfg.get_string(key)
        except XlConfigError as err:
            self.warn_from(err)
            return None

    def long(self, key: str) -> int | None:
        try:
            return self.cfg.get_long(key)
        except XlConfigError as err:
            self.warn_from(err)
            return None

    def error(self, key: str | None, message: str) -> XlConfigError:
        line = None if key is None else self.cfg.line_of(key)
        return XlConfigError(message, self.cfg.filename, line)


def _domain_type(read: _Reader) -> str:
    domain_type = None
    text = read.string("type")
    if text is not None:
        for candidate in ("hvm", "pv", "pvh"):
            if _prefix_of(text, candidate):
                domain_type = candidate
                break
        else:
            raise read.error("type", f"Invalid domain type {text}.")
    builder = read.string("builder")
    if builder is not None:
        if _prefix_of(builder, "hvm"):
            builder_type = "hvm"
        elif _prefix_of(builder, "generic"):
            builder_type = "pv"
        else:
            raise read.error("builder", f"Invalid domain type {builder}.")
        # xl 4.10 deprecates builder= without saying so; pyxen says so.
        line = read.cfg.line_of("builder")
        read.warnings.append(f"{read.cfg.filename}:{line}: warning: \"builder\" is deprecated"
                             f" since Xen 4.10; use type=\"{builder_type}\" instead")
        if domain_type is not None and domain_type != builder_type:
            raise read.error("builder", "Contradicting \"builder\" and \"type\" options"
                                        " specified.")
        domain_type = builder_type
    if "pvh" in read.cfg:
        # PVHv1 is gone in 4.10 and xl simply ignores the key; pyxen refuses pvh=1 rather than
        # silently booting the guest as PV.
        try:
            enabled = read.cfg.get_bool("pvh")
        except XlConfigError as err:
            read.warn_from(err)
            enabled = False
        if enabled:
            raise read.error("pvh", "the \"pvh\" option (PVHv1) was removed in Xen 4.10;"
                                    " use type=\"pvh\" instead")
        line = read.cfg.line_of("pvh")
        read.warnings.append(f"{read.cfg.filename}:{line}: warning: ignoring obsolete option"
                             f" \"pvh\"; use type=\"pvh\" for a PVH guest")
    return domain_type or "pv"


def _affinity(read: _Reader, key: str, maxvcpus: int
              ) -> tuple[str | list[XlValue] | None, list[frozenset[int]] | None]:
    """cpus= / cpus_soft=: a string applies to every vCPU, a list gives vCPU i its item i.
    Returns the value as written and the parsed sets (one set for a string, one per used
    item for a list), or None for the sets when a spec needs the host topology."""
    cfg = read.cfg
    found = cfg.setting(key)
    if found is None:
        return None, None
    raw: str | list[XlValue]
    if isinstance(found.value, list):
        raw = _copy(found.value)
        specs: list[str] = []
        for item in found.value:  # xl stops at the first item that is not a string
            if not isinstance(item, str):
                break
            specs.append(item)
        del specs[max(maxvcpus, 0):]  # items for vCPUs that do not exist are ignored
    else:
        raw = found.value
        specs = [found.value]
    sets: list[frozenset[int]] = []
    complete = True
    for spec in specs:
        try:
            parsed = parse_cpu_spec(spec)
        except XlConfigError as err:
            raise read.error(key, err.message) from None
        if parsed is None:
            complete = False
        else:
            sets.append(parsed)
    return raw, (sets if complete else None)


def build_domain_config(cfg: XlConfig) -> DomainConfig:
    """Apply xl 4.10's rules for the core keys.  Raises XlConfigError where xl exits."""
    warnings: list[str] = []
    read = _Reader(cfg, warnings)

    domain_type = _domain_type(read)

    name = read.string("name")
    if name is None:
        raise read.error(None, "Domain name must be specified.")

    uuid = read.string("uuid")
    if uuid is not None and not _UUID.match(uuid):
        raise read.error("uuid", f"Failed to parse UUID: {uuid}")

    dom = DomainConfig(name=name, filename=cfg.filename, uuid=uuid, type=domain_type,
                       warnings=warnings)
    dom.pool = read.string("pool")
    dom.cpu_weight = read.long("cpu_weight")
    dom.cap = read.long("cap")

    memory = read.long("memory")
    maxmem = read.long("maxmem")
    dom.memory = memory if memory is not None else DEFAULT_MEMORY_MIB
    # maxmem defaults to memory (xl), which itself defaults to libxl's 32 MiB.
    dom.maxmem = maxmem if maxmem is not None else dom.memory

    vcpus = read.long("vcpus")
    maxvcpus = read.long("maxvcpus")
    if not maxvcpus:  # xl treats maxvcpus=0 as "not given"
        maxvcpus = vcpus or 0
    if maxvcpus < (vcpus or 0):
        raise read.error("maxvcpus" if "maxvcpus" in cfg else "vcpus", "maxvcpus < vcpus")
    dom.vcpus = vcpus if vcpus is not None else DEFAULT_VCPUS
    dom.maxvcpus = maxvcpus or DEFAULT_VCPUS

    dom.cpus, dom.cpus_sets = _affinity(read, "cpus", dom.maxvcpus)
    dom.cpus_soft, dom.cpus_soft_sets = _affinity(read, "cpus_soft", dom.maxvcpus)

    # xl passes cpu_weight and cap on unchecked; libxl refuses them when it applies the
    # scheduler parameters (credit and credit2 alike), which fails the creation.  pyxen
    # refuses them here, with libxl's words, before anything is built.
    if dom.cpu_weight is not None and not 1 <= dom.cpu_weight <= 65535:
        raise read.error("cpu_weight", "Cpu weight out of range, valid values are within"
                                       " range from 1 to 65535")
    if dom.cap is not None and not 0 <= dom.cap <= 100 * dom.maxvcpus:
        raise read.error("cap", "Cpu cap out of range, valid range is from 0 to"
                                f" {100 * dom.maxvcpus} for specified number of vcpus")

    for key in ("max_grant_frames", "max_maptrack_frames"):
        try:
            # xl reads these without printing libxlutil's complaint, then exits(1).
            setattr(dom, key, cfg.get_bounded_long(key, 0, _INT_MAX))
        except XlConfigError as err:
            raise read.error(key, err.message) from None

    defaults = {"on_poweroff": "destroy", "on_reboot": "restart", "on_watchdog": "destroy",
                "on_crash": "destroy", "on_soft_reset": "soft-reset"}
    for key, default in defaults.items():
        action = read.string(key)
        if action is None:
            action = default
        elif action not in SHUTDOWN_ACTIONS:
            raise read.error(key, f"Unknown {key} action \"{action}\" specified")
        setattr(dom, key, action)

    dom.max_event_channels = read.long("max_event_channels")
    dom.kernel = read.string("kernel")
    dom.ramdisk = read.string("ramdisk")

    cmdline = read.string("cmdline")
    dom.root = read.string("root")
    dom.extra = read.string("extra")
    if cmdline is not None:
        dom.cmdline = cmdline
        if dom.root is not None or dom.extra is not None:
            warnings.append("Warning: ignoring root= and extra= in favour of cmdline=")
    elif dom.root is not None and dom.extra is not None:
        dom.cmdline = f"root={dom.root} {dom.extra}"
    elif dom.root is not None:
        dom.cmdline = f"root={dom.root}"
    else:
        dom.cmdline = dom.extra

    dom.bootloader = read.string("bootloader")
    if "bootloader_args" in cfg:
        found = cfg.setting("bootloader_args")
        assert found is not None
        if isinstance(found.value, list):
            args: list[str] = []
            for item in found.value:  # the string list ends at the first non-string
                if not isinstance(item, str):
                    break
                args.append(item)
            dom.bootloader_args = args
        else:
            warnings.append("WARNING: Specifying \"bootloader_args\" as a string is deprecated."
                            " Please use a list of arguments.")
            # split on blanks, tabs and newlines, dropping empty fields (strtok)
            dom.bootloader_args = [arg for arg in re.split("[ \t\n]+", found.value) if arg]

    firmware = read.string("firmware")
    dom.firmware = firmware
    if domain_type in ("pv", "pvh"):
        if firmware is not None:
            if dom.kernel is not None:
                raise read.error("firmware", "both kernel and firmware specified")
            if not (_prefix_of(firmware, "pvgrub32") or _prefix_of(firmware, "pvgrub64")):
                raise read.error("firmware", "only pvgrub{32|64} supported as firmware options")
            dom.kernel = f"{XEN_FIRMWARE_DIR}/{firmware}.bin"
        if dom.bootloader is None and dom.kernel is None:
            raise read.error(None, "Neither kernel nor bootloader specified")
    elif dom.kernel is not None and Path(dom.kernel).name == "hvmloader":
        warnings.append("WARNING: you seem to be using \"kernel\" directive to override HVM"
                        " guest firmware. Ignore that. Use \"firmware_override\" instead if"
                        " you really want a non-default firmware")
        dom.kernel = None

    dom.extra_keys = {key: value for key, value in cfg.items() if key not in _INTERPRETED_KEYS}
    return dom

"""JSON in and out for result files (pure, but for the files): atomic writes, and reading
that refuses what a result file may not hold, with the JSON path where it is.

JSON has no NaN or Infinity. Python's ``json`` writes and reads them anyway; a file with one
is then unreadable to other tools, and a NaN figure compares false with everything (a
baseline figure of NaN never regresses). So they are refused on both sides, and so are a
whole number beyond ``MAX_FIGURE`` (it overflows the floats figures are compared and drawn
in), nesting deeper than ``DEEPEST`` (it overflows the stack of every reader) and a lone
surrogate escape such as ``"\\ud800"`` (half of a character: no UTF-8 text, and so no
pytest-xdist worker, terminal or HTML page, can take it). Reading also refuses a key
given twice in one object, which Python's ``json`` takes silently (the last one wins).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..units import MAX_FIGURE, short_repr

DEEPEST = 100
"""The deepest nesting of arrays and objects a result file holds (a run file's is about
a dozen levels)."""


class _Refused:
    """Stands in, while a document is parsed, for a number the text held that is refused:
    NaN, ±Infinity, or a whole number beyond ``MAX_FIGURE``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


# Any surrogate escape, half of a pair or not (an escaped backslash before "u" matches
# too): the walk then decides. It starts with a literal, so a text without one is scanned
# at C speed, and only a text with one (an emoji, say) is walked.
_LONE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_WRITTEN_OUT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""What ``visible`` writes out: C0 and C1 controls, DEL and the line separators (wider than
the control characters a run file refuses in a label, ``runfile._CONTROL``)."""


BYTE_ORDER_MARK = "\ufeff"
"""What a Windows editor may put before a file's UTF-8 text; JSON's readers may ignore it
(RFC 8259), and a run file's reader does."""


def not_utf8(error: UnicodeDecodeError) -> str:
    """Where text that is not UTF-8 goes wrong, for a message: the byte and its offset."""
    return f"byte 0x{error.object[error.start]:02x} at offset {error.start}"


def loads(text: str) -> Any:
    """Parse JSON, refusing what ``refusal`` names, a key given twice in one object and a
    lone surrogate escape, with the JSON path of the first such thing; every error is a
    ValueError (``json.JSONDecodeError`` or ``Refused``)."""

    def number(digits: str) -> float | _Refused:
        value = float(digits)
        return value if math.isfinite(value) else _Refused(digits)

    def integer(digits: str) -> int | _Refused:
        if len(digits) > len(str(MAX_FIGURE)) + 1:
            return _Refused(digits)  # int() refuses 4300 digits with a bare ValueError
        value = int(digits)
        return value if abs(value) <= MAX_FIGURE else _Refused(digits)

    twice: list[tuple[dict[str, Any], str]] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) != len(items):
            twice.append((obj, _repeated(items)))
        return obj

    try:
        data = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=_Refused,
            parse_float=number,
            parse_int=integer,
        )
    except RecursionError:
        raise TooDeepError(None) from None
    error = refusal(data)
    if error is None and twice:
        error = _twice_refusal(data, twice)
    if error is None and _LONE_ESCAPE.search(text):
        error = surrogate_refusal(data)
    if error is not None:
        raise error
    return data


def _repeated(items: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            return key
        seen.add(key)
    raise AssertionError("no key is repeated")


def _twice_refusal(data: Any, twice: list[tuple[dict[str, Any], str]]) -> Refused:
    """The error for the first object in ``data``, in document order, that ``loads`` found
    a key twice in. A value dropped for a later one under its key is not in ``data``, but
    the object that held it is (a key twice in it), so one is always found."""
    keys = {id(obj): key for obj, key in twice}
    for chain, value in _nodes(data):
        key = keys.get(id(value))
        if key is not None and isinstance(value, dict):
            return DuplicateKeyError(json_path(_path_of_chain(chain), key), key)
    return DuplicateKeyError(json_path("$", twice[0][1]), twice[0][1])


def surrogate_refusal(data: Any) -> Refused | None:
    """The first string (a key or a value) in ``data`` holding a lone surrogate, as the
    error that names its JSON path, or None. A walk in Python: ``loads`` takes it only
    for a text with a lone surrogate escape in it."""
    for chain, value in _nodes(data):
        if isinstance(value, str):
            found = _SURROGATE.search(value)
            if found:
                return SurrogateError(_path_of_chain(chain), short_repr(value), found.group())
        elif isinstance(value, Mapping):
            for key in value:
                found = _SURROGATE.search(key) if isinstance(key, str) else None
                if found:
                    where = json_path(_path_of_chain(chain), key)
                    return SurrogateError(where, "its key", found.group())
    return None


def _nodes(data: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every value in ``data``, the root first, in document order, with its chain (see
    ``_path_of_chain``)."""
    stack: list[tuple[tuple[Any, ...], Any]] = [(("$",), data)]
    while stack:
        chain, value = stack.pop()
        yield chain, value
        if isinstance(value, Mapping):
            inner = [((chain, k, True), v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            inner = [((chain, i, False), v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(inner))


class Refused(ValueError):
    """Something a result file may not hold, at JSON path ``path`` (None: not known).

    A file's message says ``lead`` then the error (``has a number that is not finite at``
    ``$.x: NaN is not a finite number...``); a message about one part says the path then
    ``said`` (``devices[0].peak is nan, not a finite number``).
    """

    lead = "holds what a result file may not at"

    def __init__(self, path: str | None, said: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.said = said


class NonFiniteError(Refused):
    """A NaN or ±Infinity (``what``, as written; a literal too large for a float, cut short)."""

    lead = "has a number that is not finite at"

    def __init__(self, path: str, what: str) -> None:
        super().__init__(
            path,
            f"is {what}, not a finite number",
            f"{path}: {what} is not a finite number (JSON has no NaN or Infinity)",
        )


class OutOfRangeError(Refused):
    """A whole number (``what``, cut short) beyond ``MAX_FIGURE`` either side."""

    lead = "has a number out of range at"

    def __init__(self, path: str, what: str) -> None:
        beyond = f"beyond ±{MAX_FIGURE}"
        super().__init__(path, f"is {what}, {beyond}", f"{path}: {what} is {beyond}")


class DuplicateKeyError(Refused):
    """A key given twice in one object (``path`` is where the key is)."""

    lead = "has a key twice in one object at"

    def __init__(self, path: str, key: str) -> None:
        super().__init__(path, "is a key given twice", f"{path}: duplicate key {short_repr(key)}")


class SurrogateError(Refused):
    """A string (``what``: its repr, cut short) holding the lone surrogate ``char``."""

    lead = "has text that is not Unicode at"

    def __init__(self, path: str, what: str, char: str) -> None:
        said = f"holds a lone surrogate {ascii(char)[1:-1]} (half of a character)"
        super().__init__(path, f"{what} {said}", f"{path}: {what} {said}")


class TooDeepError(Refused):
    """Arrays and objects nested deeper than ``DEEPEST``."""

    lead = "is nested too deep:"

    def __init__(self, path: str | None) -> None:
        where = "" if path is None else f" at {path if len(path) <= 60 else path[:57] + '...'}"
        super().__init__(
            path,
            f"is nested more than {DEEPEST} levels deep",
            f"more than {DEEPEST} levels of arrays and objects{where}",
        )


def shown_number(value: object) -> str:
    """A number as an error message shows it: a long one cut to its ends, with its length."""
    if isinstance(value, _Refused):
        text = value.text
    elif isinstance(value, int) and value.bit_length() > 14000:  # str() refuses 4300 digits
        return short_repr(value)
    else:
        text = repr(value)
    if len(text) <= 24:
        return text
    whole = text.lstrip("-")
    return (
        f"{text[:8]}...{text[-4:]} ({len(whole)} {'digits' if whole.isdigit() else 'characters'})"
    )


def refusal(data: Any, path: str = "$") -> Refused | None:
    """The first thing in ``data`` a result file may not hold, as the error that names its
    JSON path: a NaN or ±Infinity, a whole number beyond ``MAX_FIGURE``, nesting deeper than
    ``DEEPEST``. A container's own values are looked at before the containers in it. Walks
    without recursion, so data of any depth is safe to pass, and makes a path only for what
    it refuses (a walk of a large run file is mostly numbers)."""
    if not isinstance(data, (Mapping, list, tuple)):
        return _number_refusal(path, data)
    stack: list[tuple[Any, Any, int]] = [((path,), data, 0)]
    while stack:
        chain, value, depth = stack.pop()
        if depth >= DEEPEST:
            return TooDeepError(_path_of_chain(chain))
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        inner = []
        for key, child in items:
            if isinstance(child, (Mapping, list, tuple)):
                inner.append(((chain, key, isinstance(value, Mapping)), child, depth + 1))
            elif isinstance(child, (float, int, _Refused)) and not isinstance(child, bool):
                error = _number_refusal("", child)
                if error is not None:
                    where = _path_of_chain((chain, key, isinstance(value, Mapping)))
                    return _number_refusal(where, child)
        stack.extend(reversed(inner))
    return None


def _path_of_chain(chain: tuple[Any, ...]) -> str:
    """The JSON path of a link ``(parent link, key, in a mapping)``; the root is ``(path,)``."""
    keys: list[tuple[Any, bool]] = []
    while len(chain) == 3:
        chain, key, mapped = chain
        keys.append((key, mapped))
    where: str = chain[0]
    for key, mapped in reversed(keys):
        where = json_path(where, key) if mapped else f"{where}[{key}]"
    return where


_DIGITS_AS_NINES = bytes(0x39 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
"""A table for ``bytes.translate``: each digit a 9, every other byte a space, so that a run
of 19 digits (a whole number beyond ``MAX_FIGURE``) is a run of 19 nines, found at C speed
(a regex takes seven times as long over a measured test's record)."""
_NINETEEN_NINES = b"9" * 19
_WHOLE_NUMBER_OF_19 = re.compile(rb"(?<![.0-9])[0-9]{19}")
"""Where the nines show a run, whether it can be a whole number: a float's fraction digits
are no whole number, and one between 0.0001 and 0.01 (a region's seconds) is written with
up to 20 of them."""
_LINE_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
"""A journal line's JSON: no NaN, no spaces."""


def clean_text(data: Any) -> str | None:
    """``data`` as one line of compact JSON where a pass at C speed shows it holds nothing
    refused: JSON writes it without NaN, with no run of 19 digits, no lone surrogate escape
    and fewer than ``DEEPEST`` brackets. None otherwise (``refusal`` then walks it, and may
    still find nothing: 19 digits in a string, a surrogate pair)."""
    try:
        text = compact(data)
    except (ValueError, TypeError, RecursionError):
        return None
    encoded = text.encode("ascii")
    if (
        text.count("[") + text.count("{") < DEEPEST
        and (
            _NINETEEN_NINES not in encoded.translate(_DIGITS_AS_NINES)
            or _WHOLE_NUMBER_OF_19.search(encoded) is None
        )
        and _LONE_ESCAPE.search(text) is None
    ):
        return text
    return None


def quick_refusal(data: Any) -> Refused | None:
    """``refusal`` and ``surrogate_refusal``, after ``clean_text``'s pass, which clears most
    data at once (a measured test's record, at each test's end, takes this way)."""
    if clean_text(data) is not None:
        return None
    return refusal(data) or surrogate_refusal(data)


def _number_refusal(path: str, value: object) -> Refused | None:
    if isinstance(value, _Refused):
        if value.text.lstrip("-").isdigit():
            return OutOfRangeError(path, shown_number(value))
        return NonFiniteError(path, shown_number(value))
    if isinstance(value, float) and not math.isfinite(value):
        return NonFiniteError(path, repr(value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_FIGURE:
        return OutOfRangeError(path, shown_number(value))
    return None


def json_path(path: str, key: object) -> str:
    """``path`` and one step more: ``.name`` for a plain key, ``['odd key']`` else."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    return f"{path}.{text}" if text.isidentifier() else f"{path}[{text!r}]"


def path_of(parts: Iterable[object], start: str = "$") -> str:
    path = start
    for part in parts:
        path = json_path(path, part)
    return path


def valid_text(text: str) -> str:
    """``text`` as UTF-8 can hold it: the bytes of a file name that are not UTF-8 (which
    Python holds as lone surrogates: ``b\\udcff.json``) are written out as Python writes
    them (``b\\xff.json``), and any other lone surrogate as its escape (``\\ud800``), so
    that two names that differ only there stay two names."""
    if not _SURROGATE.search(text):
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return _SURROGATE.sub(_surrogate_written_out, text)


def _surrogate_written_out(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` for a line of terminal output: a control character (a newline, an escape
    sequence's ESC) or a line separator written as Python writes it in a string (``\\n``,
    ``\\x1b``). A run file may hold a node id with one (pytest keeps them under its option
    that turns off id escaping); printed raw it would split the line or drive the terminal."""
    if not _WRITTEN_OUT.search(text):
        return text
    return _WRITTEN_OUT.sub(lambda match: repr(match.group())[1:-1], text)


def shown_width(text: str) -> int:
    """The columns ``text`` takes on a terminal: two for a wide character (CJK, most
    emoji), none for a combining one or a format character."""
    if text.isascii():
        return len(text)
    return sum(_char_width(char) for char in text)


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Me", "Mn", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("F", "W") else 1


def in_columns(text: str, width: int, most: int | None = None) -> str:
    """``text`` padded with spaces to ``width`` terminal columns, after being cut to
    ``most`` columns (``width`` by default) by "..." in place of its start: a node id's
    end, which names the test, is kept."""
    most = width if most is None else most
    if shown_width(text) > most:
        start, room = len(text), most - 3
        while start > 0 and _char_width(text[start - 1]) <= room:
            start -= 1
            room -= _char_width(text[start])
        text = "..." + text[start:]
    return text + " " * max(0, width - shown_width(text))


def compact(data: Any) -> str:
    """JSON with no NaN and no spaces, as a journal line holds it."""
    return _LINE_ENCODER.encode(data)


def dumps_line(data: Any) -> str:
    """One line of JSON (no NaN), with its newline: a journal line."""
    return compact(data) + "\n"


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON atomically (``write_text``); NaN and ±Infinity raise
    ValueError before the file is touched."""
    write_text(path, indented(data) + "\n")


class _NotPlain(Exception):
    """A value ``indented`` leaves to ``json.dumps``."""


_CONSTANTS = {True: "true", False: "false", None: "null"}
_CHUNK = 4096
"""How many of ``indented``'s small strings are joined into one chunk."""


def indented(data: Any) -> str:
    """``json.dumps(data, indent=1, allow_nan=False)``, written here at twice its speed for
    the plain data result files hold (the stdlib writes indented JSON in Python, a
    generator for each container: 37 µs a measured test's record). Anything else (another
    type, a key that is no string, NaN, a cycle) is left to ``json.dumps`` itself.

    The small strings written so far are joined into a chunk each time a container ends with
    ``_CHUNK`` of them pending: held all at once, a string a line took 6x the text's size (a
    run file of 20,000 tests of 10 regions each: 890 MB for 144 MB of JSON)."""
    chunks: list[str] = []
    parts: list[str] = []
    add = parts.append
    escape = json.encoder.encode_basestring_ascii

    def write(value: Any, pad: str) -> None:
        kind = type(value)
        if kind is str:
            add(escape(value))
        elif kind is dict:
            if not value:
                add("{}")
                return
            inner = pad + " "
            opening = "{\n"
            for key, item in value.items():
                if type(key) is not str:
                    raise _NotPlain
                add(opening + inner + escape(key) + ": ")
                opening = ",\n"
                write(item, inner)
            add("\n" + pad + "}")
            if len(parts) >= _CHUNK:
                chunks.append("".join(parts))
                parts.clear()
        elif kind is list or kind is tuple:
            if not value:
                add("[]")
                return
            inner = pad + " "
            opening = "[\n"
            for item in value:
                add(opening + inner)
                opening = ",\n"
                write(item, inner)
            add("\n" + pad + "]")
        elif kind is int:
            add(int.__repr__(value))
        elif kind is float and math.isfinite(value):
            add(float.__repr__(value))
        elif value is None or kind is bool:
            add(_CONSTANTS[value])
        else:
            raise _NotPlain

    try:
        write(data, "")
    except (_NotPlain, RecursionError):
        return json.dumps(data, indent=1, allow_nan=False)
    chunks.append("".join(parts))
    return "".join(chunks)


def overwrite_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as JSON over the file at ``path``, in place: no second file, so on a
    full disk a shorter file takes the place of a longer one. A crash can leave half of it."""
    _write_in_place(Path(path), (indented(data) + "\n").encode("utf-8"))


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically (``write_bytes``), as UTF-8."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` atomically: a temp file in the same folder, then a rename.

    A crash or Ctrl-C leaves either the old file or the new one, never half a file; a
    write that fails leaves no temp file behind. A file that is a mount point of its own
    (a container's single-file bind mount) cannot be renamed over (EBUSY): it is written
    in place, where a crash mid-write can leave half of it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # as open() would make it, not mkstemp's 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.replace(tmp, target)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            _write_in_place(target, data)
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def remove(path: str | os.PathLike[str]) -> None:
    """Remove an earlier output; one that is a mount point of its own (EBUSY) is emptied,
    as no reader takes an empty file for an output. A missing file is no error."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        with open(path, "wb"):
            pass


def _write_in_place(target: Path, data: bytes) -> None:
    with open(target, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())

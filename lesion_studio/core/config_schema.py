"""One validation layer for every config file (train, evaluate, batch, phantom, study).

A config is TOML: tables (`[run]`, `[model]`, ...) of keys. A *schema* maps each table name
(`""` is the top level) to its keys, and each key to a `Setting`: its kind, default, bounds,
allowed values and a one-line doc. `validate_tables` checks a parsed file against a schema and
returns the values with defaults filled in, or raises ONE `ConfigError` that lists every
problem, one a line, in the same shape for every config:

    /path/to/train.toml:7: model.base_chanels: unknown key; did you mean 'base_channels'?
    /path/to/train.toml:9: run.steps: must be >= 1, got 0

Rules shared by every config: bools are not integers; integers are accepted where a number is
expected (and come back as floats); NaN and Inf are refused (TOML allows them); an unknown
table or key is refused with the closest known name; a value out of its bounds or choices is
refused with the value shown. Cross-key rules a schema cannot express stay in the caller, which
adds them to the same `Problems` so that the error still lists everything with its line.

Qt-free and torch-free: the CLI, the GUI dialogs and the checkpoint loader share it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lesion_studio.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class _Required:
    """The type of `REQUIRED`: a default that means "this key must be given"."""

    _instance: "_Required | None" = None

    def __new__(cls) -> "_Required":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"


#: Sentinel default of a `Setting` that must be given.
REQUIRED: Any = _Required()

#: The kinds a `Setting` can have, and how a message names each.
KIND_WORDS: dict[str, str] = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "path": "a path (string)",
    "list[int]": "a list of integers",
    "list[float]": "a list of numbers",
    "list[str]": "a list of strings",
    "list[bool]": "a list of true/false values",
    "table": "a table",
}

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Setting:
    """One key of a config table: its type, default, bounds and a one-line doc.

    Bounds (`ge`, `gt`, `le`, `lt`) and `choices` apply to each item of a list kind;
    `min_len`/`max_len` bound a list's length. `nullable` accepts `None` (JSON `null`; a TOML
    file leaves such a key out). `check` is a last custom test on an otherwise valid value:
    it returns the reason it is wrong, or None.
    """

    kind: str  # a key of KIND_WORDS: int, float, str, bool, path, list[int|float|str|bool], table
    default: Any = REQUIRED
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    doc: str = ""
    min_len: int | None = None
    max_len: int | None = None
    nullable: bool = False
    check: Check | None = None

    def __post_init__(self) -> None:
        if self.kind not in KIND_WORDS:
            raise ValueError(f"unknown setting kind {self.kind!r}; expected one of {', '.join(KIND_WORDS)}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def item_kind(self) -> str:
        """`int` for `list[int]`; the kind itself for scalars."""
        return self.kind[5:-1] if self.kind.startswith("list[") else self.kind

    def bounds_text(self) -> str:
        """The allowed range in words ('>= 1', 'in [0, 1)'), '' when unbounded."""
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        high = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None else None
        if low and high:
            return f"in {low[0]}{_num(low[1])}, {_num(high[1])}{high[0]}"
        if low:
            return (">= " if low[0] == "[" else "> ") + _num(low[1])
        if high:
            return ("<= " if high[0] == "]" else "< ") + _num(high[1])
        return ""

    def allowed(self) -> str:
        """Length, bounds and choices in words ('2 values, each in [0, 1)'); '' when anything goes."""
        parts = []
        if self.min_len is not None and self.min_len == self.max_len:
            parts.append(f"{self.min_len} values")
        elif self.min_len is not None or self.max_len is not None:
            parts.append(f"{self.min_len or 0}..{'' if self.max_len is None else self.max_len} values")
        if self.bounds_text():
            parts.append(("each " if self.kind.startswith("list[") else "") + self.bounds_text())
        if self.choices:
            parts.append("one of " + ", ".join(map(repr, self.choices)))
        return ", ".join(parts)

    def describe(self) -> str:
        """Kind, length, bounds and choices in words, for help texts and generated docs."""
        return ", ".join(part for part in (KIND_WORDS[self.kind], self.allowed()) if part)


#: Table name (`""` = the top level) -> key -> Setting.
Schema = Mapping[str, Mapping[str, Setting]]


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shown(value: Any) -> str:
    """A value as a message shows it: repr, 'a table' for dicts, cut at 80 characters."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- messages ------------------------------------------------------------------------------------
def did_you_mean(key: str, known: Iterable[str]) -> str:
    """'; did you mean 'x'?' for the closest known name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown(what: str, key: str, known: Iterable[str]) -> str:
    known = list(known)
    hint = did_you_mean(key, known)
    if hint:
        return f"unknown {what}{hint}"
    return f"unknown {what} (expected one of: {', '.join(known)})" if known else f"unknown {what}"


# -- line numbers --------------------------------------------------------------------------------
_TABLE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+|\"[^\"]*\")\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-]+|\"[^\"]*\")\s*=")


def key_lines(text: str) -> dict[str, int]:
    """`{"section.key": line}` for every `key = ...` line and `{"section": line}` for tables.

    The n-th `[[name]]` table (counted from 1) is `name#n`, as `validate_tables` names it.
    """
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        match = _TABLE.match(raw)
        if match:
            table = match.group(2).strip('"')
            if match.group(1) == "[[":
                counts[table] = counts.get(table, 0) + 1
                table = f"{table}#{counts[table]}"
            lines.setdefault(table, number)
            continue
        match = _KEY.match(raw)
        if match:
            key = match.group(1).strip('"')
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


# -- problems ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where (`section.key`, line) and why."""

    name: str  # "section.key", "key" (top level) or "section"
    reason: str
    line: int | None = None

    def format(self, path: Path | None) -> str:
        """`FILE:LINE: name: reason` (the parts that are known)."""
        if path is None:
            return f"{self.name}: {self.reason}"
        where = f"{path}:{self.line}" if self.line else str(path)
        return f"{where}: {self.name}: {self.reason}"


class ConfigProblems(ConfigError):
    """A `ConfigError` listing every problem of one config, one line each; `.problems` holds them."""

    def __init__(self, problems: Iterable[Problem], path: str | Path | None = None, what: str = "config") -> None:
        self.problems = tuple(problems)
        p = None if path is None else Path(path)
        if len(self.problems) == 1:
            reason = self.problems[0].format(None)
            message = self.problems[0].format(p)
        else:
            head = f"{len(self.problems)} problem(s) in the {what}:"
            reason = head + "".join("\n  " + q.format(p) for q in self.problems)
            message = f"{p}: {reason}" if p is not None else reason
        super().__init__(reason, p)
        self.args = (message,)


class Problems:
    """Collects every problem of one config (with its line when the TOML text is known)."""

    def __init__(self, path: str | Path | None = None, text: str = "", what: str = "config") -> None:
        self.path = None if path is None else Path(path)
        self.what = what
        self.lines = key_lines(text) if text else {}
        self.items: list[Problem] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def line_of(self, name: str) -> int | None:
        """The line of `section.key`, else of its table header (or top-level key), else None."""
        while name:
            if name in self.lines:
                return self.lines[name]
            name = name.rpartition(".")[0]
        return None

    def add(self, name: str, reason: str) -> None:
        """Record that `name` ("section.key", "key" or "section") is wrong because of `reason`."""
        self.items.append(Problem(name, reason, self.line_of(name)))

    def error(self) -> ConfigProblems:
        """The one error listing every problem so far."""
        in_file_order = sorted(self.items, key=lambda p: p.line if p.line is not None else math.inf)
        return ConfigProblems(in_file_order, self.path, self.what)

    def raise_if_any(self) -> None:
        """Raise `error()` when anything was recorded."""
        if self.items:
            raise self.error()


# -- reading -------------------------------------------------------------------------------------
def load_toml(path: str | Path, *, what: str = "config file") -> tuple[dict[str, Any], str]:
    """Parsed TOML and its text; ConfigError naming the file for unreadable/invalid TOML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise ConfigError(f"{what} is a folder, not a file", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} cannot be read ({exc})", path) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path) from exc
    return data, text


# -- checking ------------------------------------------------------------------------------------
def _type_ok(value: Any, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("str", "path"):
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "table":
        return isinstance(value, dict)
    return False


def _out_of_bounds(value: Any, s: Setting) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return ((s.ge is not None and value < s.ge) or (s.gt is not None and value <= s.gt)
            or (s.le is not None and value > s.le) or (s.lt is not None and value >= s.lt))


def check_value(value: Any, setting: Setting) -> tuple[Any, str | None]:
    """`(value, None)` converted (ints to floats where numbers are wanted), or `(value, reason)`."""
    s = setting
    if value is None:
        return (None, None) if s.nullable else (value, f"expected {KIND_WORDS[s.kind]}, got None")
    is_list = s.kind.startswith("list[")
    if is_list:
        if not isinstance(value, list) or not all(_type_ok(v, s.item_kind) for v in value):
            return value, f"expected {KIND_WORDS[s.kind]}, got {_shown(value)}"
        items = list(value)
    else:
        if not _type_ok(value, s.kind):
            return value, f"expected {KIND_WORDS[s.kind]}, got {_shown(value)}"
        items = [value]
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            return value, f"must be a finite number, got {item}"
    if s.item_kind == "float":
        items = [float(v) for v in items]
    if is_list and s.min_len is not None and len(items) < s.min_len:
        need = "must not be empty" if s.min_len == 1 else f"must hold at least {s.min_len} values"
        return value, f"{need}, got {_shown(value)}"
    if is_list and s.max_len is not None and len(items) > s.max_len:
        return value, f"must hold at most {s.max_len} values, got {len(items)}"
    if any(_out_of_bounds(v, s) for v in items):
        shown = _shown(value)
        return value, (f"each value must be {s.bounds_text()}, got {shown}" if is_list
                       else f"must be {s.bounds_text()}, got {shown}")
    if s.choices is not None:
        for item in items:
            if item not in s.choices:
                allowed = ", ".join(map(repr, s.choices))
                hint = did_you_mean(item, [str(c) for c in s.choices]) if isinstance(item, str) else ""
                if is_list:
                    return value, f"{item!r} is not one of {allowed}{hint}"
                return value, f"must be one of {allowed}, got {item!r}{hint}"
    converted: Any = items if is_list else items[0]
    if s.check is not None:
        reason = s.check(converted)
        if reason:
            return value, reason
    return converted, None


def _default(setting: Setting) -> Any:
    default = setting.default
    return list(default) if isinstance(default, list) else dict(default) if isinstance(default, dict) else default


def check_table(table: Mapping[str, Any], settings: Mapping[str, Setting], section: str,
                problems: Problems) -> dict[str, Any]:
    """One table's keys checked into `problems`; the valid values with defaults filled in.

    A key with a problem gets its default in the result (or is left out when required), so a
    caller can go on collecting problems; it must not use the result when `problems` is set.
    """
    prefix = f"{section}." if section else ""
    out: dict[str, Any] = {}
    for key, value in table.items():
        setting = settings.get(key)
        if setting is None:
            problems.add(prefix + str(key), _unknown("key", str(key), settings))
            continue
        converted, reason = check_value(value, setting)
        if reason is not None:
            problems.add(prefix + key, reason)
            continue
        out[key] = converted
    for key, setting in settings.items():
        if key in out:
            continue
        if not setting.required:
            out[key] = _default(setting)  # missing, or bad (and reported above)
        elif key not in table:
            choices = f" (one of {', '.join(map(repr, setting.choices))})" if setting.choices else ""
            problems.add(prefix + key, "is required" + choices)
    return out


def check_tables(data: Mapping[str, Any], schema: Schema, problems: Problems, *,
                 allow_extra_sections: Collection[str] = ()) -> dict[str, dict[str, Any]]:
    """Every table of `data` checked into `problems` (see `validate_tables`), nothing raised."""
    top_settings = schema.get("", {})
    sections = [name for name in schema if name]
    known_top = [*top_settings, *sections, *allow_extra_sections]
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key in top_settings or key in allow_extra_sections:
            if key in top_settings:
                top[key] = value
            continue
        if key in schema:
            if not isinstance(value, dict):
                problems.add(key, f"must be a table ([{key}]), got {_shown(value)}")
            continue
        problems.add(key, _unknown("section" if isinstance(value, dict) else "key", key, known_top))
    out: dict[str, dict[str, Any]] = {}
    if "" in schema:
        out[""] = check_table(top, top_settings, "", problems)
    for name in sections:
        table = data.get(name, {})
        if isinstance(table, dict):
            out[name] = check_table(table, schema[name], name, problems)
        else:  # already reported as not a table: its missing keys would only repeat that
            out[name] = check_table({}, schema[name], name, Problems())
    return out


def validate_tables(data: Mapping[str, Any], schema: Schema, *, path: Path | None = None, text: str = "",
                    allow_extra_sections: Collection[str] = (), what: str = "config") -> dict[str, dict[str, Any]]:
    """Every section and key checked; defaults filled; ints accepted as floats; NaN/Inf refused;
    unknown sections/keys refused with a did-you-mean; ALL problems collected into ONE ConfigError,
    one line each: `FILE:LINE: section.key: reason`.

    Returns `{section: {key: value}}` for every section of the schema (`""`: top-level keys);
    sections in `allow_extra_sections` are accepted unchecked and left out of the result.
    """
    problems = Problems(path, text, what)
    out = check_tables(data, schema, problems, allow_extra_sections=allow_extra_sections)
    problems.raise_if_any()
    return out


# -- dataclasses as schemas ----------------------------------------------------------------------
_SETTING_KEYS = ("ge", "gt", "le", "lt", "choices", "doc", "min_len", "max_len", "check", "kind")


def setting_field(default: Any = REQUIRED, *, ge: float | None = None, gt: float | None = None,
                  le: float | None = None, lt: float | None = None, choices: tuple | None = None, doc: str = "",
                  min_len: int | None = None, max_len: int | None = None, check: Check | None = None) -> Any:
    """A dataclass field whose bounds and doc `settings_from_dataclass` turns into a `Setting`."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt), ("choices", choices), ("doc", doc),
                              ("min_len", min_len), ("max_len", max_len), ("check", check)) if v not in (None, "")}
    if default is REQUIRED:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def kind_of(annotation: Any) -> tuple[str, bool]:
    """`(kind, nullable)` of a type annotation: `list[int] | None` -> `("list[int]", True)`."""
    nullable = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            raise TypeError(f"no setting kind for {annotation!r}")
        annotation = args[0]
    if typing.get_origin(annotation) in (list, tuple):
        item = (typing.get_args(annotation) or (Any,))[0]
        names = {int: "list[int]", float: "list[float]", str: "list[str]", bool: "list[bool]"}
        if item not in names:
            raise TypeError(f"no setting kind for {annotation!r}")
        return names[item], nullable
    names = {int: "int", float: "float", str: "str", bool: "bool", Path: "path", dict: "table"}
    if annotation not in names:
        raise TypeError(f"no setting kind for {annotation!r}")
    return names[annotation], nullable


def settings_from_dataclass(cls: type, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                            docs: Mapping[str, str] | None = None) -> dict[str, Setting]:
    """`key -> Setting` of a dataclass: kind from the annotation, default from the field, bounds
    and doc from the field's metadata (`setting_field`), then `overrides[key]` (same names),
    then `docs[key]` where the field gives no doc. The dataclass stays the source of truth."""
    hints = typing.get_type_hints(cls)
    overrides = overrides or {}
    out: dict[str, Setting] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind, nullable = kind_of(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = REQUIRED
        options: dict[str, Any] = {k: v for k, v in f.metadata.items() if k in _SETTING_KEYS}
        options.update(overrides.get(f.name, {}))
        if not options.get("doc") and docs and f.name in docs:
            options["doc"] = docs[f.name]
        options.setdefault("kind", kind)
        out[f.name] = Setting(default=default, nullable=nullable or default is None, **options)
    return out


__all__ = [
    "REQUIRED", "KIND_WORDS", "Setting", "Schema", "Problem", "Problems", "ConfigProblems",
    "did_you_mean", "key_lines", "load_toml", "check_value", "check_table", "check_tables", "validate_tables",
    "setting_field", "kind_of", "settings_from_dataclass",
]

"""The key reference of `docs/training.md`, generated from the config dataclasses.

Every key, its type, its default, its allowed values (from the same schema `core.config_schema`
checks files against) and the comment beside it in `models/config.py` (where the paper and
section are cited) become one table row, so the documentation cannot drift from the
code: `scripts/gen_training_doc.py` rewrites the generated part of the file, and a test fails
when the file differs from what this module renders.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import tokenize
import typing
from pathlib import Path
from typing import Any

from lesion_studio.core.config_schema import Setting
from lesion_studio.models.config import FAMILY_CONFIGS, RunConfig, train_schema

BEGIN = "<!-- BEGIN GENERATED: scripts/gen_training_doc.py (do not edit by hand) -->"
END = "<!-- END GENERATED -->"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def field_comments(cls: type) -> dict[str, str]:
    """`name -> comment` of the fields of `cls` and its dataclass bases (subclass wins)."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        source = inspect.getsource(klass)
        line_name: dict[int, str] = {}
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.start[0] not in line_name:
                line_name[tok.start[0]] = tok.string
            elif tok.type == tokenize.COMMENT and tok.start[0] in line_name:
                comments[line_name[tok.start[0]]] = tok.string.lstrip("#").strip()
    return comments


def _type_name(annotation: Any) -> str:
    text = str(annotation) if typing.get_origin(annotation) else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "").replace("NoneType", "None")


def toml_value(value: Any) -> str:
    """A default as it is written in a TOML file (None: the key is left out)."""
    if value is None:
        return "*(unset)*"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    if isinstance(value, float):
        return f"`{value!r}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(cls: type, instance: Any, settings: dict[str, Setting] | None = None) -> str:
    """The markdown table of one config dataclass (`settings`: its schema, for the allowed values)."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    settings = settings or {}
    rows = ["| key | type | default | allowed | meaning, paper reference |", "| --- | --- | --- | --- | --- |"]
    for f in dataclasses.fields(instance):
        if f.name == "family":
            continue
        allowed = settings[f.name].allowed() if f.name in settings else ""
        rows.append(f"| `{f.name}` | {_cell(_type_name(hints[f.name]))} | {toml_value(getattr(instance, f.name))} "
                    f"| {_cell(allowed)} | {_cell(comments.get(f.name, ''))} |")
    return "\n".join(rows)


def keys_markdown() -> str:
    """Every `[run]` key and every `[model]` key of every family, with defaults and references."""
    parts = [
        "## Every key (generated)",
        "",
        "Defaults are the values a key takes when the file leaves it out. P0–P3 and SPEC are the "
        "papers and sections cited in `lesion_studio/models/config.py`.",
        "",
        "### `[run]` (every family)",
        "",
        inspect.getdoc(RunConfig) or "",
        "",
        table(RunConfig, RunConfig(), train_schema(None)["run"]),
    ]
    for family, cls in FAMILY_CONFIGS.items():
        parts += ["", f'### `[model]` for `family = "{family}"`', "", inspect.getdoc(cls) or "", "",
                  table(cls, cls(), train_schema(family)["model"])]
    return "\n".join(parts) + "\n"


def render(document: str) -> str:
    """`document` with its generated part replaced (appended at the end when missing)."""
    block = f"{BEGIN}\n{keys_markdown()}{END}"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if pattern.search(document):
        return pattern.sub(lambda _m: block, document)
    return document.rstrip("\n") + "\n\n" + block + "\n"

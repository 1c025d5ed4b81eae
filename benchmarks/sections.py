"""Named benchmark sections and their blocks in RESULTS.md (no model, no MLX: imported by the tests).

A section is one `Section` entry in `benchmarks/run.py`'s `SECTIONS` list: a name (what `make bench
SECTIONS=a,b` and `run.py --sections a,b` / `--only a` take), the block's title and note, the function that
measures and returns `(markdown_rows, data)`, and a rough duration. In RESULTS.md each section owns one block,

    <!-- section:NAME -->
    ## Title

    _Measured 2026-12-04 at commit abc1234: `make bench SECTIONS=NAME`._
    ...
    <!-- /section:NAME -->

so a partial run replaces only its own blocks and leaves every other byte of the file as it was.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SectionFn = Callable[[Any], tuple[list[str], dict]]


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    note: str
    fn: SectionFn | str  # a function of the run context, or "module:function" imported when the section runs
    minutes: float  # rough duration on the 2-core reference machine

    def run(self, ctx: Any) -> tuple[list[str], dict]:
        fn = self.fn
        if isinstance(fn, str):
            module, _, name = fn.partition(":")
            fn = getattr(importlib.import_module(module), name)
        return fn(ctx)


NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def check_registry(sections: Iterable[Section]) -> dict[str, Section]:
    """name -> section; names are unique and plain (they appear in HTML comments and on the command line)."""
    by_name: dict[str, Section] = {}
    for s in sections:
        if not NAME.match(s.name):
            raise ValueError(f"section name {s.name!r} is not lower-case letters, digits and dashes")
        if s.name in by_name:
            raise ValueError(f"section name {s.name!r} is registered twice")
        by_name[s.name] = s
    return by_name


def select(spec: str, by_name: dict[str, Section]) -> list[Section]:
    """`a,b` -> those sections in the order given ('all' = every one); ValueError names the unknown ones."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError("no section named (choose from: " + ", ".join(by_name) + ")")
    if names == ["all"]:
        return list(by_name.values())
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown section {', '.join(unknown)} (choose from: {', '.join(by_name)})")
    return [by_name[n] for n in dict.fromkeys(names)]


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section:{name} -->", f"<!-- /section:{name} -->"


def block_text(name: str, title: str, stamp: str, note: str, rows: list[str]) -> str:
    """One section's block, markers included, ending with a newline."""
    start, end = _markers(name)
    lines = [start, f"## {title}", "", stamp, ""]
    if note:
        lines += [note, ""]
    lines += [*rows, end]
    return "\n".join(lines) + "\n"


def stamp_line(name: str, date: str, commit: str) -> str:
    return f"_Measured {date} at commit {commit}: `make bench SECTIONS={name}`._"


def block_names(text: str) -> list[str]:
    return re.findall(r"^<!-- section:([a-z0-9-]+) -->$", text, flags=re.M)


def replace_block(text: str, name: str, block: str) -> str:
    """`text` with the block of `name` replaced by `block` (appended after a blank line if absent).

    Every byte outside that block is kept; a block must start and end on its own lines, once."""
    start, end = _markers(name)
    i = text.find(start + "\n")
    while i > 0 and text[i - 1] != "\n":  # the marker must start a line
        i = text.find(start + "\n", i + 1)
    if i < 0:
        if text and not text.endswith("\n"):
            text += "\n"
        return text + ("\n" if text and not text.endswith("\n\n") else "") + block
    j = text.find(end, i)
    if j < 0 or text.count(start + "\n") > 1:
        raise ValueError(f"RESULTS.md: the block {name!r} is not closed exactly once")
    j += len(end)
    if text[j : j + 1] == "\n":
        j += 1
    return text[:i] + block + text[j:]


def write_block(path: Path, name: str, block: str, header: str) -> None:
    """Replace one block in the file (created with `header` if missing), atomically."""
    text = path.read_text(encoding="utf-8") if path.exists() else header
    new = replace_block(text, name, block)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

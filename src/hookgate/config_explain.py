"""Turn msgspec's validation messages into ones an operator can act on.

msgspec reports `Object contains unknown field `secret` - at `$.sources[3]``: a position
in the parsed document, in terms of the code. The operator edits a TOML file, so the
message names the source by its name, says which keys or values would be accepted (with
the nearest one as a suggestion), describes patterns in words and gives the line of the
file. tomllib keeps no positions for values, so lines are found by scanning the text for
the table and the key.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import msgspec.inspect as mi

Part = str | int

_AT = re.compile(r" - at `\$(.*)`$")
_PART = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")
# What a pattern of the configuration means, for messages.
PATTERN_WORDS = {
    r"^[a-z0-9][a-z0-9_-]{0,62}$": (
        "must be 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
    ),
    r"^[\x21-\x7e]+$": "must be printable ASCII without spaces",
    r"^[\x20-\x7e]+$": "must be printable ASCII",
    r"^[A-Z]{3}$": "must be a three-letter ISO 4217 currency code in capitals, e.g. SEK",
}
# The key that names an item of a list of tables, so messages can name it.
_ITEM_NAMES = ("name", "id", "uid")


def split_path(text: str) -> list[Part]:
    """`.sources[3].secret` to ["sources", 3, "secret"]."""
    return [int(index) if index else key for key, index in _PART.findall(text)]


def item_label(item: Any, index: int) -> str:
    """`["ampeco"]` for a table with a name, else `[3]`."""
    if isinstance(item, dict):
        for key in _ITEM_NAMES:
            value = item.get(key)
            if isinstance(value, str) and value:
                return f'["{value}"]'
    return f"[{index}]"


def pretty_path(parts: list[Part], data: Any) -> str:
    """A key path with list items named by their `name` (or `id`, `uid`) when they have one."""
    text = ""
    node = data
    for part in parts:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            text += item_label(item, part)
            node = item
        else:
            text += f".{part}" if text else part
            node = node.get(part) if isinstance(node, dict) else None
    return text


def _unwrap(info: mi.Type) -> list[mi.Type]:
    if isinstance(info, mi.Metadata):
        return _unwrap(info.type)
    if isinstance(info, mi.UnionType):
        return [t for member in info.types for t in _unwrap(member)]
    return [info]


def _type_at(root: type, parts: list[Part], data: Any) -> list[mi.Type]:
    """The types the document may have at `parts` (several for a union)."""
    current: list[mi.Type] = [mi.type_info(root)]
    node = data
    for part in parts:
        following: list[mi.Type] = []
        for info in current:
            for kind in _unwrap(info):
                if isinstance(part, int) and isinstance(kind, mi.ListType):
                    following.extend(_unwrap(kind.item_type))
                elif isinstance(part, str) and isinstance(kind, mi.StructType):
                    for f in kind.fields:
                        if f.name == part:
                            following.extend(_unwrap(f.type))
                elif isinstance(part, str) and isinstance(kind, mi.DictType):
                    following.extend(_unwrap(kind.value_type))
        flat = following
        node = (
            (node[part] if isinstance(node, list) and part < len(node) else None)
            if isinstance(part, int)
            else (node.get(part) if isinstance(node, dict) else None)
        )
        structs = [t for t in flat if isinstance(t, mi.StructType)]
        if len(structs) > 1 and isinstance(node, dict):
            # A tagged union (sources): the tag picks the member.
            tagged: list[mi.Type] = [
                s for s in structs if s.tag_field and node.get(s.tag_field) == s.tag
            ]
            flat = tagged or flat
        current = flat
    return current


def _choices(values: list[str], given: str) -> str:
    near = difflib.get_close_matches(given, values, n=1, cutoff=0.6)
    listed = ", ".join(values)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"{hint}allowed: {listed}"


def explain(message: str, data: Any, root: type) -> tuple[str, list[Part]]:
    """The operator's version of a msgspec message, and the key path it concerns."""
    match = _AT.search(message)
    if not match:
        # A check of our own names the key itself: `sources[1].name: ...`.
        lead = re.match(r"([A-Za-z0-9_.\[\]-]+): ", message)
        return message, split_path("." + lead.group(1)) if lead else []
    parts = split_path(match.group(1))
    text = message[: match.start()]
    where = pretty_path(parts, data)
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", text)
    if unknown:
        key = unknown.group(1)
        fields = sorted(
            {
                f.name
                for t in _type_at(root, parts, data)
                if isinstance(t, mi.StructType)
                for f in t.fields
            }
        )
        near = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
        hint = f"did you mean `{near[0]}`? " if near else ""
        text = f"unknown key `{key}`: {hint}known keys: {', '.join(fields)}"
        return f"{where}: {text}" if where else text, [*parts, key]
    required = re.fullmatch(r"Object missing required field `(.+)`", text)
    if required:
        key = required.group(1)
        text = f"the key `{key}` is required"
        if key == "provider":
            text += f" (one of: {', '.join(sorted(_tags(root, parts, data)))})"
        return f"{where}: {text}" if where else text, parts
    enum = re.fullmatch(r"Invalid (?:enum )?value '?(.*?)'?", text)
    if enum:
        given = enum.group(1)
        values: list[str] = []
        for t in _type_at(root, parts, data):
            if isinstance(t, mi.LiteralType):
                values.extend(str(v) for v in t.values)
        if parts and parts[-1] == "provider" and not values:
            values = _tags(root, parts[:-1], data)
        if values:
            text = f"{given!r} is not allowed; {_choices(sorted(set(values)), given)}"
    regex = re.fullmatch(r"Expected `str` matching regex '(.*)'", text)
    if regex:
        words = PATTERN_WORDS.get(regex.group(1), f"must match {regex.group(1)}")
        node: Any = data
        for part in parts:
            node = node[part] if isinstance(part, int) else node.get(part)
        text = f"{node!r} {words}"
    return f"{where}: {text}" if where else text, parts


def _tags(root: type, parts: list[Part], data: Any) -> list[str]:
    """The tag values a union of tables at `parts` accepts (the providers of a source)."""
    container = _type_at(root, parts[:-1], data) if parts else []
    tags: list[str] = []
    for info in container:
        for kind in _unwrap(info):
            if isinstance(kind, mi.ListType):
                tags.extend(
                    str(t.tag)
                    for t in _unwrap(kind.item_type)
                    if isinstance(t, mi.StructType) and t.tag is not None
                )
    return tags


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("?)([A-Za-z0-9_.-]+)\1\s*=""")


def _with_indexes(names: list[str], counts: dict[tuple[str, ...], int]) -> list[Part]:
    """`[destinations.filter]` under the third `[[destinations]]` is destinations[2].filter."""
    parts: list[Part] = []
    for depth, name in enumerate(names, start=1):
        parts.append(name)
        index = counts.get(tuple(names[:depth]))
        if index is not None and depth < len(names):
            parts.append(index)
    return parts


def line_of(text: str, parts: list[Part]) -> int | None:
    """The line (1-based) of the key at `parts` in TOML `text`: the key's own line when it
    is found in its table, else the table's header line."""
    table: list[Part] = []
    counts: dict[tuple[str, ...], int] = {}
    best: tuple[int, int] | None = None  # (how many parts matched, line)
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            names = [n.strip().strip('"') for n in header.group(2).split(".")]
            table = _with_indexes(names, counts)
            if header.group(1) == "[[":
                counts[tuple(names)] = counts.get(tuple(names), -1) + 1
                table.append(counts[tuple(names)])
            candidate: list[Part] = table
        else:
            found = _KEY.match(line)
            if not found:
                continue
            candidate = table + [k.strip('"') for k in found.group(2).split(".")]
        if (
            len(candidate) <= len(parts)
            and candidate == parts[: len(candidate)]
            and (best is None or len(candidate) > best[0])
        ):
            best = (len(candidate), number)
    return best[1] if best else None

"""The ROS `.msg` grammar, once: field lines, the types they refer to, and the concatenated
schema text that rosbag2 and MCAP embed for a message type with its dependencies (each after a
line of 80 '=' and a `MSG: pkg/Type` line). ingest.decode reads definitions with it and
sim.generate writes them.

Types are keyed `pkg/Type` inside schema texts (`short`), `pkg/msg/Type` elsewhere (`long`).

>>> msgs = {"a/Pair": "Point first\\nPoint second  # same", "a/Point": "float64 x\\nint8 K=1"}
>>> fields(msgs["a/Pair"]), fields(msgs["a/Point"])
([('Point', 'first'), ('Point', 'second')], [('float64', 'x')])
>>> print(concatenated("a/msg/Pair", msgs).replace(SEPARATOR, "==="))
Point first
Point second  # same
===
MSG: a/Point
float64 x
int8 K=1
>>> split("a/Pair", concatenated("a/Pair", msgs)) == msgs
True
"""

from __future__ import annotations

import re

SEPARATOR = "=" * 80
PRIMITIVES = {
    "bool", "byte", "char", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "float32", "float64", "string", "wstring", "time", "duration",
}  # fmt: skip
_FIELD = re.compile(r"^\s*([A-Za-z0-9_/]+(?:<=\d+)?)(\[[^\]]*\])?\s+([A-Za-z0-9_]+)")


def short(msgtype: str) -> str:
    """`nav_msgs/msg/Odometry` -> `nav_msgs/Odometry` (the key used inside schema texts)."""
    return msgtype.replace("/msg/", "/")


def long(msgtype: str) -> str:
    """`nav_msgs/Odometry` -> `nav_msgs/msg/Odometry` (the spelling used everywhere else)."""
    pkg, _, name = short(msgtype).rpartition("/")
    return f"{pkg}/msg/{name}" if pkg else name


def fields(text: str) -> list[tuple[str, str]]:
    """(type with array suffix, name) of each field; comments, constants and defaults dropped."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        match = _FIELD.match(line)
        if not match or line[match.end() :].lstrip().startswith("="):  # constant: `uint8 A=0`
            continue
        out.append((match.group(1) + (match.group(2) or ""), match.group(3)))
    return out


def resolve(ftype: str, current: str, msgs: dict[str, str]) -> str | None:
    """The `pkg/Type` a field type of message `current` refers to, or None for primitives."""
    base = re.sub(r"\[.*\]$", "", ftype)
    base = re.sub(r"<=\d+$", "", base)
    if base in PRIMITIVES:
        return None
    if base == "Header":
        return "std_msgs/Header"
    base = short(base)
    if "/" in base:
        return base
    pkg = current.rpartition("/")[0]
    if f"{pkg}/{base}" in msgs:
        return f"{pkg}/{base}"
    same_name = [n for n in msgs if n.rpartition("/")[2] == base]
    return same_name[0] if same_name else f"{pkg}/{base}"


def dependencies(name: str, msgs: dict[str, str]) -> list[str]:
    """The message types `name`'s fields refer to, `pkg/Type`, sorted (as rosbag2 orders them)."""
    found = {resolve(ftype, name, msgs) for ftype, _ in fields(msgs[name])}
    return sorted(found - {None})


def concatenated(msgtype: str, msgs: dict[str, str]) -> str:
    """The schema text of `msgtype` with its dependencies, as rosbag2 writes it: depth-first
    over each type's dependencies in sorted order, each once, after a separator line and a
    `MSG: pkg/Type` line. `msgs` maps `pkg/Type` to its own definition text."""
    top = short(msgtype)
    seen = {top}

    def walk(name: str) -> str:
        text = msgs[name]
        for dep in dependencies(name, msgs):
            if dep not in seen:
                seen.add(dep)
                text += f"\n{SEPARATOR}\nMSG: {dep}\n" + walk(dep)
        return text

    return walk(top)


def split(msgtype: str, text: str) -> dict[str, str]:
    """Concatenated schema text -> {`pkg/Type`: its own definition text}."""
    sections: dict[str, str] = {}
    name, lines = short(msgtype), []
    for line in text.splitlines():
        if line.startswith("=" * 10):
            sections[name] = "\n".join(lines)
            name, lines = "", []
        elif line.startswith("MSG:") and not lines:
            name = short(line[4:].strip())
        else:
            lines.append(line)
    sections[name] = "\n".join(lines)
    return sections

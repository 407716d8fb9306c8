"""Reading the human-edited YAML files defensively.

The settings and accounts files need plain mappings, lists and scalars only. Anchors,
aliases and tags are refused up front: aliases let a tiny file expand into an enormous value
("billion laughs") and tags reach constructors that raise errors of their own.
"""

from __future__ import annotations

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 64


class PlainYamlError(Exception):
    """Why a YAML text is not plain data; `line` is 1-based when known."""

    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def _line(event: yaml.Event) -> int | None:
    mark = getattr(event, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def compose(text: str) -> yaml.Node | None:
    """The YAML node tree of `text`, refusing anything beyond plain data."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise PlainYamlError(_line(event), "anchors and aliases (&name / *name) are not supported")
            tag = getattr(event, "tag", None)
            if tag is not None and tag != "!":
                raise PlainYamlError(_line(event), f"tags like {printable(tag)} are not supported")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise PlainYamlError(_line(event), f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PlainYamlError(mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None


def construct(node: yaml.Node):
    """A composed node as Python data; a value Python refuses (e.g. an integer of thousands of
    digits) raises PlainYamlError."""
    try:
        return yaml.constructor.SafeConstructor().construct_document(node)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise PlainYamlError(node.start_mark.line + 1, f"unreadable value ({exc.__class__.__name__})") from None


def printable(text: str) -> str:
    """`text` with control characters escaped, safe to print on one line."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)

"""Bounded YAML: every YAML the project reads (configs, ``--set`` values, the config embedded in an
export, sweep search spaces) goes through :func:`load` or :func:`load_file`.

PyYAML's ``safe_load`` runs no code, but it trusts the shape of the document: a kilobyte of nested
aliases (``&a [x, x]``, ``&b [*a, *a]``, ...) expands to a billion values that every later step
(validation, error messages, ``model_dump``) walks, and a few thousand nested brackets exhaust
Python's recursion limit. A config is a few kilobytes of keys and values, so the loader here refuses,
before anything else sees the document:

* a document larger than :data:`MAX_CHARS` characters;
* more than :data:`MAX_VALUES` values once its aliases are expanded (each alias counts as the values
  it stands for), and an alias used inside the node it names (a recursive structure);
* nesting deeper than :data:`MAX_DEPTH`;
* a mapping that repeats a key (PyYAML silently keeps the last one), naming the key and its lines;
* an integer too long for Python to convert.

Each refusal is a :class:`UserError` naming the source, the limit and the line. :func:`short_repr`
is the bounded ``repr`` that error messages quote user values with.
"""

from __future__ import annotations

import reprlib
from itertools import islice
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from neuromod_rl.experiment.errors import UserError

#: the largest document read (characters; a file's size in bytes): shipped configs are under 2 kB
MAX_CHARS = 1 << 20
#: values (scalars, lists, mappings) a document may hold with its aliases expanded
MAX_VALUES = 100_000
#: nesting levels of lists and mappings (a config uses four)
MAX_DEPTH = 64
#: the longest message quoted from PyYAML (its own snippets are short; tags and names need not be)
_MAX_ERROR_CHARS = 1000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_SIZE_FIX = (
    "A config or search space is a few kilobytes of keys and values: write the values out (or use fewer, "
    "shallower &anchors and *aliases)."
)


class InvalidYAML(UserError):
    """The text is not YAML at all (``--set`` then takes it as a plain string)."""


class _LimitError(yaml.MarkedYAMLError):
    """A document outside the limits (raised while composing, so nothing is expanded)."""

    def __init__(self, problem: str, mark: yaml.Mark | None, fix: str) -> None:
        super().__init__(None, None, problem, mark)
        self.fix = fix


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts values with aliases expanded, bounds the nesting and refuses
    duplicate keys, all while composing the node graph (before any Python object is built)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._values = 0
        # expanded value count of each finished node, by id (the node graph keeps them alive)
        self._sizes: dict[int, int] = {}

    def _count(self, n: int, mark: yaml.Mark | None) -> None:
        self._values += n
        if self._values > MAX_VALUES:
            raise _LimitError(f"holds more than {MAX_VALUES:,} values once its aliases are expanded", mark, _SIZE_FIX)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias: PyYAML's own error below
                size = self._sizes.get(id(target))
                if size is None:  # the alias sits inside the node it names
                    raise _LimitError(f"uses the alias *{event.anchor} inside the node &{event.anchor} it names "
                                      "(a recursive structure)", event.start_mark, _SIZE_FIX)
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitError(f"nests lists or mappings more than {MAX_DEPTH} levels deep", mark, _SIZE_FIX)
        start = self._values
        self._count(1, mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._values - start
        return node

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # merge keys may repeat; a non-scalar key is unhashable (PyYAML refuses it)
            # the plain key `=` resolves to a tag with no constructor until flatten_mapping makes it a str
            key = "=" if key_node.tag == _VALUE_TAG else self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _LimitError(f"repeats the key {short_repr(key)} (lines {seen[key]} and {line})",
                                  key_node.start_mark, "YAML would keep only the last value: remove the other.")
            seen[key] = line
        return node

    def construct_yaml_int(self, node: ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python's int_max_str_digits
            raise _LimitError(f"holds an integer of {len(node.value):,} digits", node.start_mark,
                              "No setting takes a number that long: write a smaller one.") from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def load(text: str, source: str, fix: str = "Fix the syntax at that line.") -> Any:
    """Parse one YAML document within the limits (``None`` for an empty one).

    Args:
        text: the document.
        source: what it is, for messages (``config file 'x.yaml'``, ``x.safetensors: the embedded config``).
        fix: what the user should do about a syntax error.

    Raises:
        InvalidYAML: not YAML (a :class:`UserError`).
        UserError: a document outside the limits, naming ``source``, the limit and the line.
    """
    if len(text) > MAX_CHARS:
        raise UserError(f"{source} is larger than {MAX_CHARS:,} characters ({len(text):,}). {_SIZE_FIX}")
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader already refuses control characters
        return loader.get_single_data()
    except _LimitError as err:
        mark = err.problem_mark
        where = f" (line {mark.line + 1})" if mark is not None and "(lines" not in err.problem else ""
        raise UserError(f"{source} {err.problem}{where}. {err.fix}") from None
    except yaml.YAMLError as err:
        raise InvalidYAML(f"{source} is not valid YAML: {truncate(str(err))}. {fix}") from None
    except RecursionError:  # a limit above should come first; never a traceback regardless
        raise UserError(f"{source} nests too deeply to read. {_SIZE_FIX}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_file(path: str | Path, source: str, fix: str = "Fix the syntax at that line.") -> Any:
    """:func:`load` of a UTF-8 file, reading no more than the size limit (a huge file is refused, not read)."""
    with open(path, "rb") as f:
        raw = f.read(MAX_CHARS + 1)
    if len(raw) > MAX_CHARS:
        raise UserError(f"{source} is larger than {MAX_CHARS:,} bytes. {_SIZE_FIX}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{source} is not a text (UTF-8) YAML file.") from None
    return load(text, source, fix)


def truncate(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    """``text``, cut to ``limit`` characters with a note of its length (for messages that quote input)."""
    return text if len(text) <= limit else text[: limit - 30] + f"... ({len(text):,} characters)"


class _ShortRepr(reprlib.Repr):
    """``reprlib`` with room for a config value, mappings in their own order, and huge integers named by size
    (``repr`` of one with more than 4,300 digits raises)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxtuple, self.maxset = 4, 8, 10, 10, 10
        self.maxstring, self.maxlong, self.maxother = 80, 40, 80

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<an integer of about {int(x.bit_length() * 0.30103):,} digits>"
        return super().repr_int(x, level)

    def repr_dict(self, x: dict, level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in islice(x.items(), self.maxdict)]
        if len(x) > self.maxdict:
            items.append(self.fillvalue)
        return "{" + ", ".join(items) + "}"


_SHORT = _ShortRepr()


def short_repr(value: Any, limit: int = 300) -> str:
    """``repr(value)`` for a message: the same for small values, elided for large ones, never longer than
    ``limit`` characters and never expensive (it walks only what it prints)."""
    return truncate(_SHORT.repr(value), limit)

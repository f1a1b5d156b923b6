"""YAML for experiment configs, bounded: the C loader where present, the values written in the text counted
from the parser's events before any node is built, then one linear walk of the node graph refusing
recursive aliases, deep nesting, alias bombs (more values once expanded than a config can hold) and
duplicate keys (naming the key and both lines). Every failure is one ConfigError line naming the file.

    raw = load_yaml(text, "exp.yaml")     # Python values
    line_of(text, ("budget", "lr"))       # the line of a dotted key, for error messages (parsed once)
"""
from __future__ import annotations

import functools
from typing import Any, Optional

import yaml

from .errors import ConfigError

__all__ = ["load_yaml", "line_of", "short", "cut", "MAX_YAML_VALUES", "MAX_YAML_DEPTH"]

MAX_YAML_VALUES = 200_000  # once aliases are expanded: a config holds hundreds (a grid <= 10,000 points); 9^9 is a bomb
MAX_YAML_DEPTH = 64          # nesting; construction recurses, and a config is 4 levels deep
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in: 10-50x faster


def short(value: Any, limit: int = 120) -> str:
    """A bounded repr for error messages (a bad value may be megabytes, or an alias bomb)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlist, r.maxdict = 3, limit, limit, 6, 6
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _children(node: yaml.Node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_nodes(root: yaml.Node, where: str) -> None:
    """One linear walk of the composed YAML graph (aliases are shared nodes, each visited once): refuse
    recursive aliases, nesting beyond MAX_YAML_DEPTH, more than MAX_YAML_VALUES values once aliases are
    expanded, and duplicate keys in a mapping (naming the key and both lines)."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            size[nid] = 1 + sum(size.get(id(c), 1) for c in _children(node))  # a scalar counts 1
            if size[nid] > MAX_YAML_VALUES:
                raise ConfigError(f"{where}: the YAML holds more than {MAX_YAML_VALUES:,} values once its aliases "
                                  "(*name) are expanded; refusing to build it")
            continue
        if nid in size:
            continue
        line = node.start_mark.line + 1
        if nid in on_path:
            raise ConfigError(f"{where}:{line}: a YAML alias refers to a value containing itself (a recursive structure)")
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(f"{where}:{line}: YAML nested more than {MAX_YAML_DEPTH} levels deep")
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple, int] = {}
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    first = seen.setdefault((key.tag, key.value), key.start_mark.line + 1)
                    if first != key.start_mark.line + 1:
                        raise ConfigError(f"{where}:{key.start_mark.line + 1}: duplicate key {short(key.value, 80)} "
                                          f"(first at line {first}); a key may appear once in a section")
        on_path.add(nid)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in _children(node)
                     if not isinstance(c, yaml.ScalarNode) and id(c) not in size)


def _yaml_error(e: Exception, where: str) -> ConfigError:
    mark = getattr(e, "problem_mark", None)
    at = f"{where}:{mark.line + 1}" if mark is not None else where
    problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
    return ConfigError(f"{at}: not valid YAML ({cut(problem, 160)})")


_VALUE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def _count_events(text: str, where: str) -> None:
    loader, n = _LOADER(text), 0
    try:
        while loader.check_event():
            n += isinstance(loader.get_event(), _VALUE_EVENTS)
            if n > MAX_YAML_VALUES:
                raise ConfigError(f"{where}: the YAML holds more than {MAX_YAML_VALUES:,} values; refusing to build it")
    except yaml.YAMLError as e:
        raise _yaml_error(e, where) from None
    finally:
        loader.dispose()


def _compose(text: str, where: str) -> Optional[yaml.Node]:
    """The YAML document's node graph, checked (`_check_nodes`); ConfigError naming `where` otherwise.
    The values written in the text are counted from the parser's events first (fast, no memory), so a
    huge file is refused before its nodes are built."""
    _count_events(text, where)
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as e:
        raise _yaml_error(e, where) from None
    except RecursionError:  # the pure-Python composer, on nesting deeper than the interpreter's stack
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()
    if node is not None:
        _check_nodes(node, where)
    return node


def load_yaml(text: str, where: str) -> Any:
    """YAML text -> Python values, bounded (size after aliases, depth, no duplicate keys) and with the C
    loader where present; every failure is one ConfigError line naming `where`."""
    node = _compose(text, where)
    if node is None:
        return None
    loader = _LOADER("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise _yaml_error(e, where) from None
    finally:
        loader.dispose()


@functools.lru_cache(maxsize=2)
def _root_node(text: str) -> Optional[yaml.Node]:
    """The composed YAML of a config's text, once per text (every error's line is looked up in it)."""
    try:
        return _compose(text, "<config>")
    except ConfigError:
        return None


def line_of(text: str, loc: tuple) -> Optional[int]:
    """1-based line of the deepest mapping key along `loc` in the YAML text (None when not found)."""
    node = _root_node(text)
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
        if not match:
            break
        line, node = match[0][0].start_mark.line + 1, match[0][1]
    return line

"""The registry's ``REGISTRY_...`` environment overrides, applied to its parsed config.yml as
distribution's ``configuration/parser.go`` applies them (checked against registry 3.1.1 and
2.8.2: tests/unit/test_registry_env.py), for the parts the warmer reads: ``storage`` and ``redis``.

The variables are taken sorted by name (``REGISTRY_STORAGE`` before
``REGISTRY_STORAGE_S3_BUCKET``); a name is split at ``_`` and walks the registry's Go types:

- a struct field is named by its Go name in upper case, exactly: a lower-case part names nothing
  and the variable is ignored (the registry logs "Ignoring unrecognized environment variable");
  so are unknown fields. A key written with capitals in the file is no field's key: the registry
  never reads it (``Redis:``, ``Addrs:``), and an override sets the field beside it;
- a map (``storage``, a driver's parameters) takes any key: on the way down, the first key whose
  upper case is the part is followed; the last part, or a part that matches no key (lower case
  included), makes the key anew, lower-cased, replacing what was there;
- a list is indexed by a number (``REGISTRY_REDIS_ADDRS_0``): an index past the end stops the
  registry, one at the end appends an empty element, and an element of text is never set (the
  parser hands it an empty path). So the warmer refuses an index that adds an empty element;
- past a value of text or number, nothing is set; into a map that came from the YAML file (below
  a driver's parameters) neither (Go sees keys that are not strings there);
- the value is YAML read as the field's type: text for a text field (``0123`` stays ``0123``,
  ``true`` stays ``true``), a whole number, a list, a mapping; what the type refuses stops the
  registry, and the warmer refuses it too.

The ``redis:`` section differs by generation: 2.x has ``addr`` and ``tls.enabled``; 3.x inlines
an ``Options`` struct (``addrs``, ``username``, ``mastername``, ..., also reachable as
``REGISTRY_REDIS_OPTIONS_...``) and has ``tls.certificate``, ``key``, ``rootcas``. A file with
``addrs`` is read with 3.x's fields, one with ``addr`` with 2.x's, one with neither with both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import yaml

from worker.errors import ConfigError

__all__ = ["apply_overrides"]

_PREFIX: Final = "REGISTRY_"

# Go types, as far as the warmer reads them. Scalars by name; a driver's parameters are a
# map[string]any; storage is a map of those, which also reads a bare driver name.
_STRING, _INT, _BOOL, _ANY = "string", "int", "bool", "any"
_PARAMETERS, _STORAGE = "parameters", "storage"
#: Keys of ``storage`` that are not a driver (distribution's Storage.UnmarshalYAML; ``tag`` is
#: 3.x's, which 2.8 refuses as a second driver: a difference the warmer does not check).
_NOT_DRIVERS: Final = frozenset({"maintenance", "cache", "delete", "redirect", "tag"})


@dataclass(frozen=True)
class _Slice:
    elem: str
    #: What an empty element does in the registry (said when an index appends one).
    empty: str


@dataclass(frozen=True)
class _Field:
    name: str  # the Go field's name, upper-cased: what a variable's part must equal
    key: str  # its YAML key; "" for an inlined struct, whose fields sit beside the others
    type: _Type


@dataclass(frozen=True)
class _Struct:
    fields: tuple[_Field, ...]


_Type: TypeAlias = "str | _Slice | _Struct"


def _fields(kind: str, *names: str) -> tuple[_Field, ...]:
    return tuple(_Field(name.upper(), name, kind) for name in names)


_ADDRS = _Slice(_STRING, "address (it dials localhost:6379 for it; beside others, as a Cluster)")
_ROOTCAS = _Slice(_STRING, "CA file (it then does not start)")
_OPTIONS_3 = _Struct(
    (
        _Field("ADDRS", "addrs", _ADDRS),
        _Field("DB", "db", _INT),
        *_fields(_STRING, "username", "password", "sentinelusername", "sentinelpassword"),
        *_fields(_STRING, "mastername"),
    )
)
_TLS_3 = (*_fields(_STRING, "certificate", "key"), _Field("ROOTCAS", "rootcas", _ROOTCAS))
_TLS_2 = (_Field("ENABLED", "enabled", _BOOL),)
_REDIS_2 = _Struct(
    (
        *_fields(_STRING, "addr", "password"),
        _Field("DB", "db", _INT),
        _Field("TLS", "tls", _Struct(_TLS_2)),
    )
)
_REDIS_3 = _Struct((_Field("OPTIONS", "", _OPTIONS_3), _Field("TLS", "tls", _Struct(_TLS_3))))
# The file names no address: each generation's fields (3.x's first, as its inline comes first).
_REDIS_EITHER = _Struct(
    (
        _Field("OPTIONS", "", _OPTIONS_3),
        _Field("ADDR", "addr", _STRING),
        _Field("TLS", "tls", _Struct(_TLS_2 + _TLS_3)),
    )
)


def _configuration(redis: _Struct) -> _Struct:
    return _Struct((_Field("STORAGE", "storage", _STORAGE), _Field("REDIS", "redis", redis)))


class _EnvMap(dict[str, Any]):
    """A map an override made where the type is ``any``: Go's map[string]any, which later
    overrides can walk into (a map read from the file is not: its keys are not strings to Go)."""


def apply_overrides(config: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``config`` (parsed config.yml) with the ``REGISTRY_...`` variables of ``environ`` applied,
    in place; raise ConfigError for one the registry would not start with."""
    redis = config.get("redis")
    generation = _REDIS_EITHER
    if isinstance(redis, dict) and "addrs" in redis:
        generation = _REDIS_3
    elif isinstance(redis, dict) and "addr" in redis:
        generation = _REDIS_2
    top = _configuration(generation)
    for name in sorted(environ):
        if name.startswith(_PREFIX):
            _struct(config, top, name.split("_")[1:], environ[name], name)
    return config


def _walk(value: Any, kind: _Type, path: list[str], payload: str, name: str) -> Any:
    """``value`` (of type ``kind``) with the rest of ``path`` set in it: parser.go's
    overwriteFields."""
    if isinstance(kind, _Struct):
        node = value if isinstance(value, dict) else {}
        _struct(node, kind, path, payload, name)
        return node
    if kind == _STORAGE and isinstance(value, str):
        value = {value: {}}  # "storage: filesystem" in the file: that driver, no parameters
    if kind in (_STORAGE, _PARAMETERS):
        node = value if isinstance(value, dict) else {}
        _map(node, _PARAMETERS if kind == _STORAGE else _ANY, path, payload, name)
        return node
    if isinstance(kind, _Slice):
        return _slice(value, kind, path, payload, name)
    if kind == _ANY and (value is None or isinstance(value, _EnvMap)):
        node = value if value is not None else _EnvMap()  # Go makes an empty interface a map
        _map(node, _ANY, path, payload, name)
        return node
    return value  # text, a number, a list or the file's own map: nothing to walk into


def _struct(node: dict[str, Any], kind: _Struct, path: list[str], payload: str, name: str) -> None:
    head = path[0]
    for inline in _inlined(kind):
        # An inlined struct's own fields are matched first, and without regard to case; its
        # fields then match as any struct's (so REDIS_addrs gets here, and is ignored there).
        if any(f.name.casefold() == head.casefold() for f in inline.fields):
            _struct(node, inline, path, payload, name)
            return
    field = next((f for f in kind.fields if f.name == head), None)
    if field is None:
        return  # the registry logs "Ignoring unrecognized environment variable" and goes on
    if field.key and len(path) > 1:
        node[field.key] = _walk(node.get(field.key), field.type, path[1:], payload, name)
    elif field.key:
        node[field.key] = _decode(payload, field.type, name)
    elif isinstance(field.type, _Struct) and len(path) > 1:
        _struct(node, field.type, path[1:], payload, name)  # REGISTRY_REDIS_OPTIONS_ADDRS
    elif isinstance(field.type, _Struct):  # an inlined struct given whole: all its fields go
        value = _decode(payload, field.type, name)
        for f in _flat(field.type):
            node.pop(f.key, None)
        node.update(value)


def _inlined(kind: _Struct) -> list[_Struct]:
    return [f.type for f in kind.fields if not f.key and isinstance(f.type, _Struct)]


def _map(node: dict[str, Any], elem: _Type, path: list[str], payload: str, name: str) -> None:
    head = path[0]
    if len(path) > 1:
        for key, value in node.items():
            if str(key).upper() == head:
                if value is None:
                    break  # nothing there: made anew below
                node[key] = _walk(value, elem, path[1:], payload, name)
                return
        fresh: Any = {} if elem == _PARAMETERS else None
        value = _walk(fresh, elem, path[1:], payload, name)
    else:
        value = _decode(payload, elem, name)
    node[head.lower()] = value


def _slice(value: Any, kind: _Slice, path: list[str], payload: str, name: str) -> list[Any]:
    items = list(value) if isinstance(value, list) else []
    part = path[0]
    if not re.fullmatch(r"[+-]?[0-9]+", part):  # Go's strconv.Atoi
        raise _refused(name, f"non-numeric index: {part}")
    index = int(part)
    if index > len(items):
        raise _refused(name, f"undefined index: {part}")
    if index < 0:
        raise _refused(name, f"index {part} (it panics: slice index out of range)")
    if not items or index == len(items):
        # parser.go appends a zero element, then sets it with the rest of the path: for text,
        # that rest is empty, and sets nothing. The registry runs with an empty element.
        whole = "_".join(name.split("_")[: -len(path)])
        raise ConfigError(
            f"{name}: the registry appends an empty {kind.empty} and sets nothing in it: "
            f"distribution's parser sets no list element by its index; give the whole list, "
            f"{whole}=[...]"
        )
    if len(path) > 1:
        items[index] = _walk(items[index], kind.elem, path[1:], payload, name)
    return items


def _refused(name: str, why: str) -> ConfigError:
    return ConfigError(f"{name}: the registry does not start with it: {why}")


def _decode(payload: str, kind: _Type, name: str) -> Any:
    """``payload`` read as YAML into the type ``kind``, as go-yaml v2 reads it."""
    try:
        node = yaml.compose(payload, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _refused(name, f"not YAML: {getattr(exc, 'problem', None) or exc}") from None
    return _from_node(node, kind, name)


def _from_node(node: yaml.Node | None, kind: _Type, name: str) -> Any:
    if node is None or node.tag == "tag:yaml.org,2002:null":
        # Nothing, or null: the type's zero value (a map's is nil).
        zeros: dict[str, Any] = {_STRING: "", _INT: 0, _BOOL: False}
        if isinstance(kind, _Slice):
            return []
        return {} if isinstance(kind, _Struct) else zeros.get(kind)
    if kind == _STRING:
        if isinstance(node, yaml.ScalarNode):
            return node.value  # the text as written (unquoted): 0123, true
        raise _refused(name, f"cannot read {_what(node)} as text")
    if isinstance(kind, _Slice):
        if isinstance(node, yaml.SequenceNode):
            return [_from_node(item, kind.elem, name) for item in node.value]
        raise _refused(name, f"cannot read {_what(node)} as a list")
    if isinstance(kind, _Struct):
        if not isinstance(node, yaml.MappingNode):
            raise _refused(name, f"cannot read {_what(node)} as a section")
        return _from_mapping(node, kind, name)
    return _typed(_construct(node), kind, name)


def _what(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return "a list" if isinstance(node, yaml.SequenceNode) else repr(node.value)


def _from_mapping(node: yaml.MappingNode, kind: _Struct, name: str) -> dict[str, Any]:
    # Keys are matched as written (a capitalised one is no field's); unknown ones are skipped.
    fields = {f.key: f for f in _flat(kind)}
    out: dict[str, Any] = {}
    for key, value in node.value:
        field = fields.get(key.value) if isinstance(key, yaml.ScalarNode) else None
        if field is not None:
            out[field.key] = _from_node(value, field.type, name)
    return out


def _flat(kind: _Struct) -> list[_Field]:
    """The struct's fields as its YAML has them: an inlined struct's beside the others."""
    flat: list[_Field] = []
    for field in kind.fields:
        if not field.key and isinstance(field.type, _Struct):
            flat += _flat(field.type)
        else:
            flat.append(field)
    return flat


def _typed(value: Any, kind: str, name: str) -> Any:
    if kind == _ANY:
        return value
    whole = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if kind == _INT and whole and not isinstance(value, bool):
        return int(value)  # go-yaml takes 4.0 (and truncates 4.5)
    if kind == _BOOL and isinstance(value, bool):
        return value
    if kind == _PARAMETERS and isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if kind == _STORAGE:
        if isinstance(value, str):
            return {value: {}}  # a bare driver name is that driver, with no parameters
        if isinstance(value, dict) and all(isinstance(v, dict | None) for v in value.values()):
            drivers = [str(k) for k in value if k not in _NOT_DRIVERS]
            if len(drivers) > 1:
                raise _refused(name, f"must provide exactly one storage type: {drivers}")
            return {str(k): v for k, v in value.items()}
    raise _refused(name, f"cannot read {value!r} as {kind}")


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()

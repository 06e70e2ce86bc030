"""Strictly typed JSON for the values that cross the jail boundary (never pickle).

Function arguments go in and return values come out in this encoding. Only plain built-in
types are accepted, checked with `type(x) is ...`, so a subclass with a doctored `__eq__`
cannot cross: it is refused inside the jail, and the trusted side only ever compares values
it rebuilt itself. Depth and item counts are bounded; big integers travel as hex text.

    None -> null        bool -> true/false     str -> "..."       list -> [...]
    int  -> {"i": n} (|n| < 2**63) or {"I": "-0x..."}            float -> {"f": "repr"}
    tuple -> {"t": [...]}   set -> {"s": [...]}   frozenset -> {"z": [...]}
    dict -> {"d": [[key, value], ...]}   bytes -> {"y": "hex"}   complex -> {"c": [re, im]}
    a built-in type (int, str, ...: MBPP passes them as arguments) -> {"T": "int"}
    collections.Counter -> {"C": [[key, value], ...]}   OrderedDict -> {"O": [...]}
    defaultdict -> {"D": [factory, [[key, value], ...]]}, the factory a built-in type or null

The `collections` types are rebuilt as themselves (a Counter compares as a Counter, an
OrderedDict by order), never trusted from the jail: their items are encoded like a dict's.

This file runs inside the jail too, so it imports the standard library only.
"""

from __future__ import annotations

import collections
import json

MAPPINGS = {collections.Counter: "C", collections.OrderedDict: "O", collections.defaultdict: "D"}
TYPES = {t.__name__: t for t in (bool, bytes, complex, dict, float, frozenset, int, list, set,
                                 str, tuple)}
MAX_DEPTH = 64
MAX_ITEMS = 1_000_000
_SMALL_INT = 2**63


class EncodeError(ValueError):
    """The value cannot cross the boundary: a type outside the list, too deep or too big."""


class DecodeError(ValueError):
    """The text is not a value in this encoding."""


def _float_text(x: float) -> str:
    return repr(x)  # repr round-trips exactly and spells nan, inf and -inf


def encode(value: object) -> object:
    """The JSON-ready form of `value`; raises EncodeError for anything else."""
    budget = [MAX_ITEMS]

    def enc(x: object, depth: int) -> object:
        budget[0] -= 1
        if budget[0] < 0:
            raise EncodeError(f"more than {MAX_ITEMS} items")
        if depth > MAX_DEPTH:
            raise EncodeError(f"nested deeper than {MAX_DEPTH}")
        t = type(x)
        if x is None or t is bool or t is str:
            return x
        if t is int:
            return {"i": x} if -_SMALL_INT < x < _SMALL_INT else {"I": hex(x)}
        if t is float:
            return {"f": _float_text(x)}
        if t is list:
            return [enc(v, depth + 1) for v in x]
        if t is tuple:
            return {"t": [enc(v, depth + 1) for v in x]}
        if t is set or t is frozenset:
            items = [enc(v, depth + 1) for v in x]
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
            return {"s" if t is set else "z": items}
        if t is dict or t in MAPPINGS:
            pairs = [[enc(k, depth + 1), enc(v, depth + 1)] for k, v in dict.items(x)]
            if t is collections.defaultdict:
                factory = x.default_factory
                name = getattr(factory, "__name__", "")
                if factory is not None and TYPES.get(name) is not factory:
                    raise EncodeError("a defaultdict's factory must be a built-in type")
                return {"D": [None if factory is None else factory.__name__, pairs]}
            return {MAPPINGS.get(t, "d"): pairs}
        if t is type and TYPES.get(x.__name__) is x:
            return {"T": x.__name__}
        if t is bytes:
            return {"y": x.hex()}
        if t is complex:
            return {"c": [_float_text(x.real), _float_text(x.imag)]}
        raise EncodeError(f"values of type {t.__module__}.{t.__qualname__} cannot be returned")

    return enc(value, 0)


def dumps(value: object) -> str:
    """`encode` then compact JSON text."""
    return json.dumps(encode(value), separators=(",", ":"))


def decode(data: object) -> object:
    """Rebuild the value from its JSON-ready form; raises DecodeError on anything malformed."""

    def dec(x: object, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise DecodeError(f"nested deeper than {MAX_DEPTH}")
        t = type(x)
        if x is None or t is bool or t is str:
            return x
        if t is list:
            return [dec(v, depth + 1) for v in x]
        if t is not dict or len(x) != 1:
            raise DecodeError(f"unexpected JSON value {str(x)[:60]!r}")
        ((tag, body),) = x.items()
        try:
            if tag == "i" and type(body) is int:
                return body
            if tag == "I" and type(body) is str:
                return int(body, 16)
            if tag == "f" and type(body) is str:
                return float(body)
            if tag == "c" and type(body) is list and len(body) == 2:
                return complex(float(body[0]), float(body[1]))
            if tag == "y" and type(body) is str:
                return bytes.fromhex(body)
            if tag == "T" and type(body) is str and body in TYPES:
                return TYPES[body]
            if type(body) is list:
                if tag == "t":
                    return tuple(dec(v, depth + 1) for v in body)
                if tag in ("s", "z"):
                    items = [dec(v, depth + 1) for v in body]
                    _few_collisions(items)
                    return set(items) if tag == "s" else frozenset(items)
                if tag in ("d", "C", "O"):
                    pairs = [(dec(k, depth + 1), dec(v, depth + 1)) for k, v in body]
                    _few_collisions([k for k, _ in pairs])
                    if tag == "C":
                        return collections.Counter(dict(pairs))
                    return dict(pairs) if tag == "d" else collections.OrderedDict(pairs)
                if tag == "D" and len(body) == 2 and type(body[1]) is list and (
                        body[0] is None or body[0] in TYPES):
                    inner = dec({"d": body[1]}, depth)
                    return collections.defaultdict(body[0] and TYPES[body[0]], inner)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"bad {tag!r} value: {exc}") from None
        raise DecodeError(f"unknown tag {tag!r}")

    return dec(data, 0)


def parse(text: str) -> object:
    """JSON text that came out of a jail, parsed at bounded cost: too deep, or more items than
    `encode` ever writes (a flood of empty lists would cost the parser ~60 bytes each), is a
    DecodeError, never a RecursionError or a gigabyte on the trusted side."""
    if text.count(",") > 2 * MAX_ITEMS or text.count("[") + text.count("{") > 2 * MAX_ITEMS:
        raise DecodeError(f"more than {MAX_ITEMS} items")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not JSON: {str(exc)[:200]}") from None


MAX_COLLISIONS = 64


def _few_collisions(keys: list) -> None:
    """Int, float and tuple hashes are not randomized: keys built to share one hash (multiples
    of 2**61 - 1) would make a set or dict of n items cost n**2. More than MAX_COLLISIONS
    keys sharing hashes is a DecodeError, found in linear time before anything is built."""
    if len(keys) > MAX_COLLISIONS and len(keys) - len(set(map(hash, keys))) > MAX_COLLISIONS:
        raise DecodeError(f"more than {MAX_COLLISIONS} set or dict keys share a hash")


def loads(text: str) -> object:
    """`parse` then `decode`."""
    return decode(parse(text))

"""Backward-compatibility check between two JSON Schemas of the same event (DESIGN.md §4).

Within one major topic, consumers and producers of neighbouring versions must understand each
other: a newer reader must accept what older writers wrote and vice versa. So we flag:

* ``removed_field``         a property of the old schema is gone (old readers may need it)
* ``new_required_field``    the new schema requires a property the old one did not (old writers
                            do not send it)
* ``changed_type``          a property no longer accepts every JSON type (incl. ``format``) it
                            accepted, or a free string became an enum
* ``removed_enum_value``    an enum lost a value that old writers may still send
* ``tightened_constraint``  a bound/length/pattern now rejects values that were valid

Adding optional properties, adding ``null``, dropping a ``format`` or widening integer to
number are compatible. ``$ref`` into ``$defs``, ``anyOf``/``oneOf`` (Optional), arrays,
dict values (``additionalProperties``) and nested objects are followed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Incompatibility", "IncompatibilityKind", "check_backward_compatible"]

IncompatibilityKind = Literal[
    "removed_field",
    "new_required_field",
    "changed_type",
    "removed_enum_value",
    "tightened_constraint",
]

Schema = Mapping[str, Any]

# A larger lower bound or a smaller upper bound rejects values that used to be valid.
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


@dataclass(frozen=True, slots=True)
class Incompatibility:
    path: str  # dotted property path; ``[]`` = array items, ``*`` = dict values, "" = root
    kind: IncompatibilityKind
    detail: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.kind}: {self.detail}"


def _join(path: str, part: str) -> str:
    if part.startswith("["):
        return f"{path}{part}"
    return f"{path}.{part}" if path else part


class _Checker:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.roots = (old_root, new_root)
        self.found: list[Incompatibility] = []
        self._stack: set[tuple[str | None, str | None]] = set()

    def add(self, path: str, kind: IncompatibilityKind, detail: str) -> None:
        item = Incompatibility(path, kind, detail)
        if item not in self.found:
            self.found.append(item)

    # ---- schema navigation -------------------------------------------------------------

    @staticmethod
    def _deref(root: Schema, node: Schema) -> tuple[Schema, str | None]:
        """Follow ``$ref`` (and single-element ``allOf``) chains; sibling keys win."""
        ref_name: str | None = None
        for _ in range(64):  # guards against $ref loops like A -> B -> A
            if "$ref" in node:
                ref = node["$ref"]
                if not isinstance(ref, str) or not ref.startswith("#/"):
                    raise ValueError(f"only local $refs are supported, got {ref!r}")
                target: Any = root
                for part in ref[2:].split("/"):
                    target = target[part.replace("~1", "/").replace("~0", "~")]
                ref_name = ref
                siblings = {k: v for k, v in node.items() if k != "$ref"}
                node = {**target, **siblings}
                continue
            all_of = node.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1:
                node = {**{k: v for k, v in node.items() if k != "allOf"}, **all_of[0]}
                continue
            return node, ref_name
        raise ValueError("$ref chain too deep (cycle?)")

    def _alternatives(self, side: int, node: Schema) -> list[tuple[Schema, str | None]]:
        """Flatten ``anyOf``/``oneOf`` into the concrete alternatives (each dereferenced)."""
        root = self.roots[side]
        resolved, ref = self._deref(root, node)
        union = resolved.get("anyOf") or resolved.get("oneOf")
        if not isinstance(union, list):
            return [(resolved, ref)]
        out: list[tuple[Schema, str | None]] = []
        for alt in union:
            out.extend(self._alternatives(side, alt))
        return out

    @staticmethod
    def _enum_values(node: Schema) -> list[Any] | None:
        if "const" in node:
            return [node["const"]]
        enum = node.get("enum")
        return list(enum) if isinstance(enum, list) else None

    @classmethod
    def _types(cls, node: Schema) -> set[str]:
        """JSON types a node accepts; strings with a ``format`` are their own type."""
        declared = node.get("type")
        if isinstance(declared, str):
            types = {declared}
        elif isinstance(declared, list):
            types = set(declared)
        elif (values := cls._enum_values(node)) is not None:
            types = {_json_type(v) for v in values}
        elif "properties" in node or "additionalProperties" in node:
            types = {"object"}
        elif "items" in node or "prefixItems" in node:
            types = {"array"}
        else:
            return {"any"}
        fmt = node.get("format")
        if isinstance(fmt, str) and "string" in types:
            types = (types - {"string"}) | {f"string:{fmt}"}
        return types

    # ---- comparison -----------------------------------------------------------------------

    def compare(self, old: Schema, new: Schema, path: str) -> None:
        old_alts = self._alternatives(0, old)
        new_alts = self._alternatives(1, new)
        old_types = set().union(*(self._types(a) for a, _ in old_alts))
        new_types = set().union(*(self._types(a) for a, _ in new_alts))

        lost = sorted(t for t in old_types if not _covered(t, new_types))
        if lost:
            self.add(
                path,
                "changed_type",
                f"no longer accepts {', '.join(lost)} "
                f"(was {_fmt_types(old_types)}, now {_fmt_types(new_types)})",
            )

        self._compare_enums(old_alts, new_alts, path)
        for kind in ("string", "integer", "number", "array", "object"):
            o = _first_of_kind(old_alts, kind, self._types)
            n = _first_of_kind(new_alts, kind, self._types)
            if kind == "integer" and n is None:
                n = _first_of_kind(new_alts, "number", self._types)
            if o is None or n is None:
                continue
            self._compare_constraints(o[0], n[0], path)
            if kind == "array":
                self._compare_items(o[0], n[0], path)
            elif kind == "object":
                self._compare_objects(old_alts, new_alts, path)

    def _compare_enums(
        self,
        old_alts: list[tuple[Schema, str | None]],
        new_alts: list[tuple[Schema, str | None]],
        path: str,
    ) -> None:
        def split(alts: list[tuple[Schema, str | None]]) -> tuple[list[Any], bool]:
            values: list[Any] = []
            free = False  # an alternative that takes any string (no enum)
            for alt, _ in alts:
                vals = self._enum_values(alt)
                if vals is not None:
                    values.extend(vals)
                elif any(t == "any" or t.startswith("string") for t in self._types(alt)):
                    free = True
            return values, free

        old_vals, old_free = split(old_alts)
        new_vals, new_free = split(new_alts)
        if new_free:
            return  # any string is accepted again
        if old_free and new_vals:
            self.add(path, "changed_type", f"free text is now restricted to {new_vals}")
        for value in old_vals:
            if value not in new_vals:
                self.add(path, "removed_enum_value", f"enum value {value!r} was removed")

    def _compare_constraints(self, old: Schema, new: Schema, path: str) -> None:
        for key in _LOWER_BOUNDS:
            if key in new and (key not in old or new[key] > old[key]):
                self.add(path, "tightened_constraint", f"{key} {old.get(key)} -> {new[key]}")
        for key in _UPPER_BOUNDS:
            if key in new and (key not in old or new[key] < old[key]):
                self.add(path, "tightened_constraint", f"{key} {old.get(key)} -> {new[key]}")
        if "pattern" in new and new.get("pattern") != old.get("pattern"):
            self.add(
                path,
                "tightened_constraint",
                f"pattern {old.get('pattern')!r} -> {new['pattern']!r} may reject old values",
            )
        if "multipleOf" in new and new.get("multipleOf") != old.get("multipleOf"):
            self.add(path, "tightened_constraint", f"multipleOf -> {new['multipleOf']}")

    def _compare_items(self, old: Schema, new: Schema, path: str) -> None:
        old_items, new_items = old.get("items"), new.get("items")
        if isinstance(old_items, Mapping) and isinstance(new_items, Mapping):
            self.compare(old_items, new_items, _join(path, "[]"))

    def _compare_objects(
        self,
        old_alts: list[tuple[Schema, str | None]],
        new_alts: list[tuple[Schema, str | None]],
        path: str,
    ) -> None:
        olds = [(a, r) for a, r in old_alts if "object" in self._types(a)]
        news = [(a, r) for a, r in new_alts if "object" in self._types(a)]
        for old, old_ref in olds:
            match = _match_object(old, news)
            if match is None:
                self.add(path, "changed_type", f"object variant {old.get('title')!r} was removed")
                continue
            new, new_ref = match
            key = (old_ref, new_ref)
            if old_ref is not None and key in self._stack:
                continue  # recursive model: this pair is already being compared further up
            self._stack.add(key)
            try:
                self._compare_properties(old, new, path)
            finally:
                self._stack.discard(key)

    def _compare_properties(self, old: Schema, new: Schema, path: str) -> None:
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        old_req = set(old.get("required", ()))
        new_req = set(new.get("required", ()))
        for name in old_props:
            if name not in new_props:
                self.add(_join(path, name), "removed_field", f"property {name!r} was removed")
        for name in sorted(new_req - old_req):
            detail = "is now required" if name in old_props else "new property is required"
            self.add(_join(path, name), "new_required_field", detail)
        for name, old_schema in old_props.items():
            if name in new_props:
                self.compare(old_schema, new_props[name], _join(path, name))
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            self.compare(old_extra, new_extra, _join(path, "*"))
        old_names, new_names = old.get("propertyNames"), new.get("propertyNames")
        if isinstance(old_names, Mapping) and isinstance(new_names, Mapping):
            self.compare(old_names, new_names, _join(path, "<keys>"))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _covered(old_type: str, new_types: set[str]) -> bool:
    if old_type in new_types or "any" in new_types:
        return True
    if old_type == "integer" and "number" in new_types:
        return True
    # Dropping a format widens the type (e.g. date-time -> any string).
    return old_type.startswith("string:") and "string" in new_types


def _fmt_types(types: set[str]) -> str:
    return "|".join(sorted(types))


def _first_of_kind(
    alts: list[tuple[Schema, str | None]], kind: str, types: Any
) -> tuple[Schema, str | None] | None:
    for alt in alts:
        if any(t == kind or t.startswith(f"{kind}:") for t in types(alt[0])):
            return alt
    return None


def _match_object(
    old: Schema, news: list[tuple[Schema, str | None]]
) -> tuple[Schema, str | None] | None:
    if len(news) == 1:
        return news[0]
    title = old.get("title")
    for candidate in news:
        if title is not None and candidate[0].get("title") == title:
            return candidate
    return None


def check_backward_compatible(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[Incompatibility]:
    """Ways in which ``new`` breaks readers or writers of ``old``; empty list = compatible."""
    checker = _Checker(old, new)
    checker.compare(old, new, "")
    return checker.found

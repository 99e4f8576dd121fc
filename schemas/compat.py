"""Compatibility rules between two JSON Schemas of the same event type (same ``.vN``).

A change may ship under the same type only if every existing consumer keeps working and every
event already on a topic stays valid. Checked against **every** earlier schema of the type
(transitively), so a chain of small steps cannot add up to a break. Breaking:

- removing a field, or an event type;
- changing a field's type, format or constant, or an object's openness (additionalProperties);
- adding a required field, or making an optional field required;
- removing a value from an enum;
- tightening a constraint (pattern, min/max length, items, minimum, maximum).

Allowed: adding an optional field, adding an enum value (consumers must tolerate unknown enum
values), loosening a constraint, editing descriptions and examples. Anything else needs a new
type ending in the next ``.vN``, published alongside the old one until its consumers moved.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_LOWER_BOUNDS = ("minLength", "minItems", "minimum", "exclusiveMinimum", "minProperties")
_UPPER_BOUNDS = ("maxLength", "maxItems", "maximum", "exclusiveMaximum", "maxProperties")
_IDENTITY = ("format", "const", "pattern")


def _resolve(schema: Schema, root: Schema) -> Schema:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/"):
            raise ValueError(f"unsupported $ref {ref}")
        schema = root["$defs"][ref.removeprefix("#/$defs/")]
    return schema


def _types(schema: Schema, root: Schema) -> set[str]:
    """The JSON types a schema allows, looking through $ref, anyOf and oneOf."""
    schema = _resolve(schema, root)
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        return set().union(*(_types(s, root) for s in variants))
    if "type" in schema:
        kind = schema["type"]
        return set(kind) if isinstance(kind, list) else {kind}
    if "enum" in schema:
        return {type(v).__name__ for v in schema["enum"]}
    if "const" in schema:
        return {type(schema["const"]).__name__}
    return {"any"}


def _variants(schema: Schema, root: Schema) -> list[Schema]:
    schema = _resolve(schema, root)
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        return [v for s in variants for v in _variants(s, root)]
    return [schema]


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """What in ``new`` would break a consumer built on ``old``; empty when compatible."""
    problems: list[str] = []
    _compare(old, old, new, new, "", problems, seen=set())
    return problems


def _compare(
    old: Schema,
    old_root: Schema,
    new: Schema,
    new_root: Schema,
    path: str,
    problems: list[str],
    seen: set[tuple[int, int]],
) -> None:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    if (id(old), id(new)) in seen:
        return
    seen.add((id(old), id(new)))
    where = path or "(root)"
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if new_types - old_types and "any" not in old_types:
        problems.append(f"{where}: type changed from {sorted(old_types)} to {sorted(new_types)}")
        return
    if old_types - new_types and "any" not in new_types:
        problems.append(f"{where}: no longer accepts {sorted(old_types - new_types)}")
    for keyword in _IDENTITY:
        if old.get(keyword) != new.get(keyword) and keyword in new:
            problems.append(f"{where}: {keyword} changed from {old.get(keyword)!r} to {new.get(keyword)!r}")
    for keyword in _LOWER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
            problems.append(f"{where}: {keyword} tightened to {new[keyword]}")
    for keyword in _UPPER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
            problems.append(f"{where}: {keyword} tightened to {new[keyword]}")
    if "enum" in old or "enum" in new:
        removed = set(map(str, old.get("enum", []))) - set(map(str, new.get("enum", [])))
        if "enum" in new and removed:
            problems.append(f"{where}: enum values removed: {sorted(removed)}")
    old_variants, new_variants = _variants(old, old_root), _variants(new, new_root)
    if len(old_variants) > 1 or len(new_variants) > 1:
        _compare_variants(old_variants, old_root, new_variants, new_root, path, problems, seen)
        return
    if old.get("additionalProperties", True) is not False and new.get("additionalProperties", True) is False:
        problems.append(f"{where}: closed to unknown fields (additionalProperties became false)")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, old_prop in old_props.items():
        child = f"{path}.{name}" if path else name
        if name not in new_props:
            problems.append(f"{child}: field removed")
            continue
        _compare(old_prop, old_root, new_props[name], new_root, child, problems, seen)
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for name in sorted(new_required - old_required):
        child = f"{path}.{name}" if path else name
        problems.append(f"{child}: " + ("became required" if name in old_props else "new required field"))
    if "items" in old and "items" in new:
        _compare(old["items"], old_root, new["items"], new_root, f"{path}[]", problems, seen)


def _compare_variants(
    old_variants: list[Schema],
    old_root: Schema,
    new_variants: list[Schema],
    new_root: Schema,
    path: str,
    problems: list[str],
    seen: set[tuple[int, int]],
) -> None:
    """Union members are matched by their discriminating constant (e.g. details.channel), else by type."""

    def label(schema: Schema) -> str:
        if "const" in schema:
            return f"const:{schema['const']}"
        for prop in schema.get("properties", {}).values():
            if "const" in prop:
                return f"discriminator:{prop['const']}"
        return f"type:{schema.get('type', 'any')}:{schema.get('format', '')}"

    new_by_label = {label(v): v for v in new_variants}
    for old_variant in old_variants:
        match = new_by_label.get(label(old_variant))
        if match is None:
            problems.append(f"{path or '(root)'}: no longer accepts the {label(old_variant)} variant")
            continue
        _compare(old_variant, old_root, match, new_root, path, problems, seen)

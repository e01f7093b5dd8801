"""Offline validation of custom resources against a CRD's openAPIV3Schema, the
way the API server does it: defaults applied first, unknown fields rejected
(kubectl's default `--validate=strict`), nullable and int-or-string honoured,
then the CEL rules (`x-kubernetes-validations`) evaluated with cel-python.

Transition rules (those that read `oldSelf`) only run on updates and are
skipped here; a rule cel-python cannot compile is reported as not evaluated.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

try:  # cel-python is installed by check.sh; without it CEL rules are not evaluated.
    import celpy  # type: ignore

    _CEL_ENV = celpy.Environment()
except Exception:  # pragma: no cover
    celpy = None
    _CEL_ENV = None


@dataclass
class CrdVersion:
    group: str
    kind: str
    version: str
    plural: str
    scope: str
    schema: dict[str, Any]
    json_schema: dict[str, Any]
    served: bool = True
    storage: bool = False
    cel_unsupported: list[str] = field(default_factory=list)


def load_crd(crd: dict[str, Any]) -> list[CrdVersion]:
    spec = crd["spec"]
    out = []
    for v in spec["versions"]:
        schema = v.get("schema", {}).get("openAPIV3Schema", {})
        out.append(
            CrdVersion(
                group=spec["group"],
                kind=spec["names"]["kind"],
                version=v["name"],
                plural=spec["names"]["plural"],
                scope=spec.get("scope", "Namespaced"),
                schema=schema,
                json_schema=to_json_schema(schema, top=True),
                served=v.get("served", True),
                storage=v.get("storage", False),
            )
        )
    return out


def to_json_schema(s: Any, top: bool = False) -> Any:
    """A structural OpenAPI v3 schema as a JSON Schema (draft 7) that rejects
    unknown fields like the API server's strict field validation."""
    if not isinstance(s, dict):
        return s
    s = dict(s)
    out: dict[str, Any] = {}
    preserve = s.pop("x-kubernetes-preserve-unknown-fields", False)
    int_or_string = s.pop("x-kubernetes-int-or-string", False)
    nullable = s.pop("nullable", False)
    embedded = s.pop("x-kubernetes-embedded-resource", False)
    for k, v in s.items():
        if k.startswith("x-kubernetes-"):
            continue  # CEL rules, list/map types: handled elsewhere or not structural
        if k in ("properties", "patternProperties", "definitions"):
            out[k] = {name: to_json_schema(sub) for name, sub in v.items()}
        elif k in ("items", "additionalProperties", "not"):
            out[k] = to_json_schema(v) if isinstance(v, dict) else v
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [to_json_schema(sub) for sub in v]
        elif k == "format":
            continue  # int32/int64/byte/date-time: the API server is lenient where JSON Schema is not
        else:
            out[k] = v
    if int_or_string:
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if top and "properties" in out:
        # apiVersion, kind and metadata are checked by the API server itself.
        out["properties"].setdefault("apiVersion", {"type": "string"})
        out["properties"].setdefault("kind", {"type": "string"})
        out["properties"]["metadata"] = OBJECT_META
    if embedded and "properties" in out:
        out["properties"].setdefault("apiVersion", {"type": "string"})
        out["properties"].setdefault("kind", {"type": "string"})
        out["properties"].setdefault("metadata", {"type": "object"})
    if nullable and "type" in out:
        t = out["type"]
        out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
    return out


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "generateName": {"type": "string"},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it before validation."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(sub, value[name])
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in list(value):
                if k not in props:
                    value[k] = apply_defaults(addl, value[k])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _path(p: list[Any]) -> str:
    out = ""
    for x in p:
        out += f"[{x}]" if isinstance(x, int) else f".{x}"
    return out.lstrip(".") or "<root>"


_MISSING = object()


def _cel_rules(schema: dict[str, Any], value: Any, path: list[Any], errors: list[str], skipped: list[str], old: Any = _MISSING) -> None:
    """Evaluates the CEL rules of `schema` on `value` and below. `old` is the
    value at the same place in the object before an update (transition rules
    run only where it exists, as on the API server)."""
    if not isinstance(schema, dict) or value is None:
        return
    for rule in schema.get("x-kubernetes-validations", []) or []:
        expr = rule.get("rule", "")
        transition = bool(re.search(r"\boldSelf\b", expr))
        if transition and (old is _MISSING or old is None):
            skipped.append(f"{_path(path)}: transition rule (checked on updates only): {expr}")
            continue
        if _CEL_ENV is None:
            skipped.append(f"{_path(path)}: cel-python missing: {expr}")
            continue
        try:
            prog = _CEL_ENV.program(_CEL_ENV.compile(expr))
        except Exception as e:  # noqa: BLE001 - any compile error of the library
            skipped.append(f"{_path(path)}: not evaluable offline ({type(e).__name__}): {expr}")
            continue
        try:
            activation = {"self": celpy.json_to_cel(value)}
            if transition:
                activation["oldSelf"] = celpy.json_to_cel(old)
            result = prog.evaluate(activation)
        except Exception as e:  # noqa: BLE001
            errors.append(f"{_path(path)}: CEL rule {expr!r} could not be evaluated: {e}")
            continue
        if isinstance(result, Exception) or not bool(result):
            msg = rule.get("message") or f"failed rule: {expr}"
            fp = rule.get("fieldPath", "")
            kind = "object" if isinstance(value, dict) else type(value).__name__
            errors.append(f"{_path(path)}{fp}: Invalid value: \"{kind}\": {msg}")

    def old_at(key: Any) -> Any:
        if isinstance(old, dict) and isinstance(key, str):
            return old.get(key, _MISSING)
        return _MISSING  # list items: no positional correlation (as for non-map lists on the API server)

    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name, sub in props.items():
            if name in value:
                _cel_rules(sub, value[name], path + [name], errors, skipped, old_at(name))
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k, v in value.items():
                if k not in props:
                    _cel_rules(addl, v, path + [k], errors, skipped, old_at(k))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            _cel_rules(schema["items"], v, path + [i], errors, skipped)


def _message(e: jsonschema.ValidationError) -> list[str]:
    """A jsonschema error in the API server's words (field.ErrorList style)."""
    path = _path(list(e.absolute_path))
    inst = e.instance
    v = e.validator
    if v == "required":
        missing = [p for p in e.validator_value if isinstance(inst, dict) and p not in inst]
        prefix = "" if path == "<root>" else path + "."
        return [f"{prefix}{m}: Required value" for m in missing] or [f"{path}: {e.message}"]
    if v == "enum":
        return [f"{path}: Unsupported value: {json.dumps(inst)}: supported values: " + ", ".join(json.dumps(x) for x in e.validator_value)]
    if v == "const":
        return [f"{path}: Unsupported value: {json.dumps(inst)}: supported values: {json.dumps(e.validator_value)}"]
    def num(x: Any) -> str:
        return str(int(x)) if isinstance(x, float) and x.is_integer() else json.dumps(x)

    bad = f"{path}: Invalid value: {num(inst) if isinstance(inst, (int, float)) else json.dumps(inst)}: {path} in body"
    if v == "pattern":
        return [f"{bad} should match '{e.validator_value}'"]
    if v == "minimum":
        return [f"{bad} should be greater than or equal to {num(e.validator_value)}"]
    if v == "maximum":
        return [f"{bad} should be less than or equal to {num(e.validator_value)}"]
    if v == "minLength":
        return [f"{bad} should be at least {e.validator_value} chars long"]
    if v == "maxLength":
        return [f"{path}: Too long: may not be longer than {e.validator_value}"]
    if v == "minItems":
        return [f"{path}: Invalid value: {len(inst)}: {path} in body should have at least {e.validator_value} items"]
    if v == "type":
        actual = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(type(inst), "null")
        return [f'{path}: Invalid value: "{actual}": {path} in body must be of type {e.validator_value}: "{actual}"']
    if v == "additionalProperties" and isinstance(inst, dict):
        allowed = set((e.schema.get("properties") or {}).keys())
        prefix = "" if path == "<root>" else path + "."
        return [f'unknown field "{prefix}{k}"' for k in inst if k not in allowed] or [f"{path}: {e.message}"]
    return [f"{path}: {e.message}"]


def validate(crd: CrdVersion, obj: dict[str, Any], old: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """Errors (empty when valid) and CEL rules that were not evaluated. `old`:
    the object before an update, for transition rules (`oldSelf`)."""
    obj = apply_defaults(crd.schema, copy.deepcopy(obj))
    errors: list[str] = []
    v = jsonschema.Draft7Validator(crd.json_schema)
    for e in sorted(v.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        errors.extend(_message(e))
    skipped: list[str] = []
    if not errors:  # the API server runs CEL only on structurally valid objects
        old_obj = apply_defaults(crd.schema, copy.deepcopy(old)) if old is not None else _MISSING
        _cel_rules(crd.schema, obj, [], errors, skipped, old_obj)
    return errors, skipped

"""The request contract: every API request body the fake receives is validated with jsonschema
against two schemas, and a failure is Meta's error 100 whose ``details`` name each failing
field (``session.sdp_type: must be 'answer'; got 'offer'``).

- ``openapi-calling.json``: 360dialog's published OpenAPI for the Calling endpoints, as is.
  It types the fields, but marks none required and lists no enums.
- ``documented-requests.json``: what Meta documents and the seed leaves out (required fields
  per action, enums, formats, sizes, one settings feature per update) and the non-Calling
  body the fake models: ``POST /messages`` for the call-permission request, the call button
  and templates.

What a schema cannot say stays in code, next to the state it needs: the SDP (``_sdp``, its
fingerprint depends on the settings), call-hour overlaps and past holidays (``_settings``),
the call lifecycle (``_calls``), the limits (``_permissions``), a template against its
registration (``_messages``) and the user ids (``_identity``).

jsonschema and jsonschema-rs come with the ``testing`` extra; they are imported here only,
when the first fake is made, so ``import d360calling`` never needs them.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import attrs

from ._errors import FakeAPIError

__all__ = (
    "Contract",
    "DOCUMENTED_FILE",
    "OPENAPI_FILE",
    "contract",
    "openapi",
)

OPENAPI_FILE = "openapi-calling.json"
DOCUMENTED_FILE = "documented-requests.json"
_MAX_SHOWN = 40  # characters of a refused value quoted back in the details


def openapi() -> dict[str, Any]:
    """360dialog's OpenAPI document for the Calling endpoints, as shipped in this package."""
    return _load(OPENAPI_FILE)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath(name).read_text("utf-8")
    )
    return data


def _seed_body_schema(spec: Mapping[str, Any], method: str, path: str) -> Any:
    operation = spec.get("paths", {}).get(path, {}).get(method.lower())
    if operation is None:
        return True  # not a seed endpoint (POST /messages): the documented rules alone apply
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    # 360dialog's generator writes every body as "oneOf: [object, <named schema>]"; a valid
    # body matches both branches, which oneOf refuses, so the named schema is the contract.
    named = [branch for branch in schema.get("oneOf", ()) if "$ref" in branch]
    return {"$ref": named[0]["$ref"]} if named else schema


@attrs.frozen
class Contract:
    """The validators of the request bodies, by ``"METHOD path"``: ``validators`` (jsonschema)
    say what is wrong with a body, ``fast`` (jsonschema-rs, the same schemas) only whether
    anything is: about 1 µs a body instead of 0.6 ms, so a fake under a soak or a call bot's
    load is not held up by its own checks."""

    validators: Mapping[str, Any]
    fast: Mapping[str, Any]

    def check(self, method: str, path: str, body: Any) -> None:
        """Raise Meta's error 100 naming every failing field if ``body`` breaks the rules."""
        route = f"{method} {path}"
        validator = self.validators.get(route)
        if validator is None or self.fast[route].is_valid(body):
            return
        problems: list[str] = []
        for error in validator.iter_errors(body):
            for problem in _describe(error):
                if problem not in problems:  # the seed and the rules may both refuse a type
                    problems.append(problem)
        if problems:
            raise FakeAPIError.invalid("; ".join(problems))


@functools.cache
def contract() -> Contract:
    """The contract, built once per process (the validators are read-only)."""
    try:
        jsonschema = importlib.import_module("jsonschema")
        jsonschema_rs = importlib.import_module("jsonschema_rs")
    except ImportError:  # pragma: no cover - the test environment has them
        raise ImportError(
            "d360calling.testing validates requests with jsonschema and jsonschema-rs: "
            "pip install 'd360calling[testing]'"
        ) from None
    spec, documented = openapi(), _load(DOCUMENTED_FILE)
    validators, fast = {}, {}
    for route, rules in documented["requests"].items():
        method, path = route.split(" ", 1)
        root = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": spec["components"],
            "$defs": documented["$defs"],
            "allOf": [_seed_body_schema(spec, method, path), rules],
        }
        jsonschema.Draft202012Validator.check_schema(root)
        validators[route] = jsonschema.Draft202012Validator(root)
        fast[route] = jsonschema_rs.Draft202012Validator(root)
    return Contract(validators, fast)


# -- turning a jsonschema error into details that name the field ----------------------------


def _describe(error: Any) -> Iterator[str]:
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("x-errors", {}).get(error.validator)
    where = list(error.absolute_path)
    instance, value = error.instance, error.validator_value
    if error.validator == "required":
        for name in value:
            if isinstance(instance, dict) and name not in instance:
                yield f"{_field([*where, name])}: {custom or 'is required'}"
        return
    if error.validator == "additionalProperties":
        known = schema.get("properties", {})
        for name in instance:
            if name not in known:
                yield f"{_field([*where, name])}: {custom or 'is not a field here'}"
        return
    yield f"{_field(where)}: {custom or _message(error.validator, value, instance, error)}"


def _message(keyword: str, value: Any, instance: Any, error: Any) -> str:
    got = _shown(instance)
    if keyword == "type":
        kinds = [str(kind) for kind in (value if isinstance(value, list) else [value])]
        return f"must be {' or '.join(_TYPE_NAMES.get(k, k) for k in kinds)}; got {got}"
    if keyword == "enum":
        return f"must be one of {', '.join(map(json.dumps, value))}; got {got}"
    if keyword == "const":
        return f"must be {json.dumps(value)}; got {got}"
    if keyword == "pattern":
        return f"must match {value}; got {got}"
    if keyword == "maxLength":
        return f"is longer than {value} characters"
    if keyword in ("minLength", "minItems", "minProperties") and value == 1:
        return "must not be empty"
    if keyword == "maxItems":
        return f"holds more than {value} item(s)"
    if keyword == "minimum":
        return f"must be at least {value}; got {got}"
    if keyword == "maximum":
        return f"must be at most {value}; got {got}"
    return str(error.message)[:200]


_TYPE_NAMES = {
    "object": "a JSON object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _shown(instance: Any) -> str:
    text = json.dumps(instance)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _field(path: list[Any]) -> str:
    """``calling.call_hours.weekly_operating_hours[0].open_time``; ``body`` for the root."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"

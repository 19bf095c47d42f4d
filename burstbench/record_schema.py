"""run.json's JSON Schema, generated from the typed model of ``burstbench.record``, and validation against
the copy shipped in the package (``burstbench/schemas/run.schema.json``; a test keeps the two equal)."""
from __future__ import annotations

import json
import types
import typing
from functools import lru_cache
from importlib import resources
from pathlib import Path

from burstbench.record import (_MODELS, RECORD_FILE, SCHEMA_RESOURCE, SCHEMA_VERSION, STATUSES, Event, RecordError,
                               _fields, _hints)

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


def _type_schema(tp, version: int) -> dict:
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _nullable(_type_schema(inner[0], version))
    if tp in _MODELS:
        return {"$ref": f"#/$defs/{tp.__name__}{'' if version == SCHEMA_VERSION else '_v1'}"}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], version)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], version)}
    return {"type": _JSON_TYPES[tp]}


def _nullable(schema: dict) -> dict:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    if "anyOf" in schema or "null" in schema.get("type", []):
        return schema
    return {**schema, "type": [schema["type"], "null"]}


def _model_schema(cls, version: int) -> dict:
    hints = _hints(cls)
    props = {}
    for f in _fields(cls):
        schema = _type_schema(hints[f.name], version)
        if version != SCHEMA_VERSION:
            schema = _nullable(schema)
        props[f.name] = {"description": f.metadata.get("doc", ""), **schema}
    out = {"type": "object", "description": (cls.__doc__ or cls.__name__).strip().splitlines()[0],
           "properties": props}
    if version == SCHEMA_VERSION:
        out["required"] = list(props)
    elif cls is Event:
        out["required"] = ["epoch"]  # a version 1 event is {"epoch", "label"}: without its time it means nothing
    return out


def json_schema() -> dict:
    """run.json's JSON Schema (draft 2020-12), generated from the dataclasses: what ships as schemas/run.schema.json.

    A record with ``schema_version`` must match version 2 exactly (every field, every type); one
    without it is version 1: any field may be absent or null, present ones have version 2's types.
    """
    defs = {}
    for cls in _MODELS:
        defs[cls.__name__] = _model_schema(cls, SCHEMA_VERSION)
        defs[f"{cls.__name__}_v1"] = _model_schema(cls, 1)
    v2 = defs["RunRecord"]["properties"]
    v2["schema_version"] = {**v2["schema_version"], "const": SCHEMA_VERSION}
    v2["status"] = {**v2["status"], "enum": list(STATUSES)}
    defs["RunRecord_v1"]["properties"].pop("schema_version")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/burstbench/burstbench/schemas/run.schema.json",
        "title": "burstbench run.json",
        "description": "One run folder's record (burstbench/record.py generates this file; docs/results-format.md). "
                       "With schema_version: version 2, every field; without: version 1, any field may be absent.",
        "type": "object",
        "if": {"required": ["schema_version"]},
        "then": {"$ref": "#/$defs/RunRecord"},
        "else": {"$ref": "#/$defs/RunRecord_v1"},
        "$defs": defs,
    }


def schema_text(schema: dict | None = None) -> str:
    """The schema as the shipped file holds it (regenerate: ``python -m burstbench.record > burstbench/schemas/run.schema.json``)."""
    return json.dumps(json_schema() if schema is None else schema, indent=2) + "\n"


@lru_cache(maxsize=1)
def shipped_schema() -> dict:
    """The JSON Schema installed with the package (schemas/run.schema.json)."""
    return json.loads(resources.files("burstbench").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = shipped_schema()
    return jsonschema.Draft202012Validator(schema)


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate(data: dict, source: str | Path = RECORD_FILE) -> None:
    """Raise RecordError naming ``source`` and the first bad field when ``data`` does not match the schema."""
    import jsonschema

    if not isinstance(data, dict):
        raise RecordError(f"{source}: not a JSON object (got {type(data).__name__})")
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is None:
        return
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        raise RecordError(f"{source}: field {_where(path + missing[:1])!r} is missing (a required field)")
    raise RecordError(f"{source}: field {_where(path)!r}: {error.message}")


def main(argv=None) -> int:
    """``burstbench validate RUN...``: each run folder's run.json against the shipped schema."""
    import argparse
    import sys

    from burstbench.record import load_record

    p = argparse.ArgumentParser(prog="burstbench validate", description=main.__doc__)
    p.add_argument("runs", nargs="+", help="run folders (results/<run>)")
    args = p.parse_args(argv)
    bad = 0
    for run in args.runs:
        try:
            record = load_record(run)
        except (RecordError, OSError, ValueError) as err:
            print(f"burstbench validate: {err}", file=sys.stderr)
            bad += 1
            continue
        print(f"{run}: run.json is valid (schema version {record.schema_version})")
    return 2 if bad else 0

"""Generate the contract files from the models: ``python -m schemas.generate`` (what ``make schemas`` runs).

- ``schemas/jsonschema/<type>.json``: one JSON Schema (draft 2020-12) per event type.
- ``schemas/asyncapi.yaml``: AsyncAPI 3.0, every topic with its key, headers, messages, and who
  publishes and consumes it.
- ``schemas/history/<type>/NNNN.json``: every schema a type has had, append-only. A change that
  breaks compatibility with any of them is refused (see schemas/compat.py), and the files are left
  as they were.

``--check`` writes nothing and exits 1 when the committed files differ from the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from schemas.catalog import EVENTS, TOPICS, EventSpec, TopicSpec, events_on
from schemas.compat import breaking_changes
from schemas.envelope import CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE
from schemas.feedback import DeadLetterHeaders

SCHEMAS_DIR = Path(__file__).resolve().parent
JSON_SCHEMA_DIR = SCHEMAS_DIR / "jsonschema"
HISTORY_DIR = SCHEMAS_DIR / "history"
ASYNCAPI_FILE = SCHEMAS_DIR / "asyncapi.yaml"
EXAMPLES_DIR = SCHEMAS_DIR / "examples"
SCHEMA_ID_BASE = "https://schemas.parley.bank/events/"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
JSON_SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"


def json_schema(spec: EventSpec) -> dict[str, Any]:
    generated = spec.model.model_json_schema(mode="validation", by_alias=True)
    description = generated.pop("description", None) or spec.summary
    generated.pop("title", None)
    openness = (
        "Read tolerantly: unknown fields are ignored, so the publisher may add fields."
        if spec.consumed
        else "Closed: unknown fields are an error."
    )
    return {
        "$schema": DRAFT_2020_12,
        "$id": f"{SCHEMA_ID_BASE}{spec.name}.json",
        "title": spec.name,
        "description": f"{description}\n\n{openness} Topics: {', '.join(spec.topics)}.",
        **generated,
    }


def render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _component_id(text: str) -> str:
    return text.replace("{", "").replace("}", "").replace(" ", "-")


def _headers_schema(topic: TopicSpec) -> dict[str, Any]:
    if topic.value == "cloudevent":
        return {
            "type": "object",
            "properties": {CONTENT_TYPE_HEADER: {"type": "string", "const": STRUCTURED_CONTENT_TYPE}},
            "required": [CONTENT_TYPE_HEADER],
        }
    if topic.value == "original_bytes":
        return {"$ref": f"jsonschema/{EVENTS_NAMED_HEADERS}.json"}
    return {"type": "object", "description": "Whatever the channel system sets (e.g. trace ids); kept on rejection."}


EVENTS_NAMED_HEADERS = next(spec.name for spec in EVENTS if spec.model is DeadLetterHeaders)


def _message(spec: EventSpec, topic: TopicSpec) -> dict[str, Any]:
    if topic.value == "original_bytes":
        payload: dict[str, Any] = {
            "type": "string",
            "format": "binary",
            "description": "The original record's value, byte for byte.",
        }
        content_type = "application/octet-stream"
    else:
        payload = {"schemaFormat": JSON_SCHEMA_FORMAT, "schema": {"$ref": f"jsonschema/{spec.name}.json"}}
        content_type = STRUCTURED_CONTENT_TYPE if topic.value == "cloudevent" else "application/json"
    return {
        "name": spec.name,
        "title": spec.name,
        "summary": spec.summary,
        "contentType": content_type,
        "headers": _headers_schema(topic),
        "payload": payload,
        "bindings": {"kafka": {"key": {"type": "string", "description": topic.key}, "bindingVersion": "0.5.0"}},
    }


def asyncapi_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in TOPICS:
        channel_id = _component_id(topic.address)
        on_topic = events_on(topic)
        message_ids = {}
        for spec in on_topic:
            message_id = spec.name if topic.value != "original_bytes" else f"{spec.name}.{channel_id}"
            messages[message_id] = _message(spec, topic)
            message_ids[spec.name] = message_id
        channel: dict[str, Any] = {
            "address": topic.address,
            "description": f"{topic.description}\n\nKey: {topic.key}",
            "messages": {mid: {"$ref": f"#/components/messages/{mid}"} for mid in message_ids.values()},
        }
        if topic.parameters:
            channel["parameters"] = {
                name: {"enum": list(values), "description": f"One topic per {name}."}
                for name, values in topic.parameters.items()
            }
        channels[channel_id] = channel
        for action, parties in (("send", topic.publishers), ("receive", topic.consumers)):
            for party in parties:
                operations[f"{_component_id(party)}.{action}.{channel_id}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel_id}"},
                    "summary": f"{party} {'publishes to' if action == 'send' else 'consumes'} {topic.address}",
                    "messages": [{"$ref": f"#/channels/{channel_id}/messages/{mid}"} for mid in message_ids.values()],
                    "x-party": party,
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "parley: negotiation-desk events",
            "version": "1.0.0",
            "description": (
                "Every topic of the parley pipeline. Events are CloudEvents 1.0 in structured mode: the record "
                "value is one JSON document with the CloudEvents attributes and `data`, and the record carries "
                f"`{CONTENT_TYPE_HEADER}: {STRUCTURED_CONTENT_TYPE}`. Raw channel topics carry the channel's "
                "own JSON. Event types end in their major version (`.v1`); see schemas/compat.py for what may "
                "change within one."
            ),
        },
        "defaultContentType": STRUCTURED_CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render_asyncapi() -> str:
    header = "# Generated by `make schemas` from schemas/catalog.py: do not edit by hand.\n"
    return header + yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=120)


def history_of(name: str) -> list[Path]:
    folder = HISTORY_DIR / name
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def problems_against_history(current: dict[str, Any], history: list[Path]) -> list[str]:
    """Backward-transitive: the current schema must be compatible with every earlier one, not just the last."""
    return [
        f"against {old_file.name}: {problem}"
        for old_file in history
        for problem in breaking_changes(json.loads(old_file.read_text(encoding="utf-8")), current)
    ]


def compatibility_problems(history_dir: Path = HISTORY_DIR) -> dict[str, list[str]]:
    """Per event type, what breaks against any schema it had before (types removed included)."""
    problems: dict[str, list[str]] = {}
    current = {spec.name: json_schema(spec) for spec in EVENTS}
    for folder in sorted(history_dir.iterdir()) if history_dir.is_dir() else []:
        if folder.name not in current:
            problems[folder.name] = ["event type removed (retire it only when no consumer reads it)"]
            continue
        found = problems_against_history(current[folder.name], sorted(folder.glob("*.json")))
        if found:
            problems[folder.name] = found
    return problems


def expected_files() -> dict[Path, str]:
    files = {JSON_SCHEMA_DIR / f"{spec.name}.json": render_json(json_schema(spec)) for spec in EVENTS}
    files[ASYNCAPI_FILE] = render_asyncapi()
    return files


def drift() -> list[str]:
    """Committed files that differ from what the models generate."""
    differences = []
    for path, text in expected_files().items():
        if not path.exists():
            differences.append(f"missing: {path.relative_to(SCHEMAS_DIR.parent)}")
        elif path.read_text(encoding="utf-8") != text:
            differences.append(f"differs: {path.relative_to(SCHEMAS_DIR.parent)}")
    expected_names = {p.name for p in expected_files()}
    differences.extend(
        f"stale: {p.relative_to(SCHEMAS_DIR.parent)}"
        for p in sorted(JSON_SCHEMA_DIR.glob("*.json"))
        if p.name not in expected_names
    )
    return differences


def write() -> list[str]:
    """Write every file; append changed schemas to their history. Returns what changed."""
    changed = []
    JSON_SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in expected_files().items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(str(path.relative_to(SCHEMAS_DIR.parent)))
    expected_names = {p.name for p in expected_files()}
    for stale in JSON_SCHEMA_DIR.glob("*.json"):
        if stale.name not in expected_names:
            stale.unlink()
            changed.append(f"removed {stale.relative_to(SCHEMAS_DIR.parent)}")
    for spec in EVENTS:
        schema_text = render_json(json_schema(spec))
        versions = history_of(spec.name)
        if not versions or versions[-1].read_text(encoding="utf-8") != schema_text:
            target = HISTORY_DIR / spec.name / f"{len(versions) + 1:04d}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(schema_text, encoding="utf-8")
            changed.append(str(target.relative_to(SCHEMAS_DIR.parent)))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on drift or a breaking change")
    args = parser.parse_args(argv)
    problems = compatibility_problems()
    for name, found in problems.items():
        for problem in found:
            print(f"BREAKING {name}: {problem}", file=sys.stderr)
    if problems:
        print(
            "A breaking change needs a new event type (.v2): see schemas/compat.py. Nothing written.", file=sys.stderr
        )
        return 1
    if args.check:
        differences = drift()
        for line in differences:
            print(line, file=sys.stderr)
        if differences:
            print("The committed contract files differ from the models: run `make schemas`.", file=sys.stderr)
        return 1 if differences else 0
    changed = write()
    print("\n".join(changed) if changed else "contract files already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

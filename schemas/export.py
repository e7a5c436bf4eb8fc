"""Export the event contract as JSON Schema files and guard them against breaking changes.

    python -m schemas.export           # (re)write schemas/jsonschema/, refusing breaking changes
    python -m schemas.export --check   # CI: exit 1 if files are not current, 2 if breaking

Layout: ``envelope.json`` plus ``<topic>/<EventType>.json`` for each payload (commands live
under ``booking.commands.v1``, which the per-region forward topics relay; dead letters under
``dlq.v1``). Output is deterministic: sorted keys, indent 2, trailing newline.

A committed schema is the contract other regions and services are running against. The writer
refuses (exit 2) to replace it with an incompatible one: that needs a new major topic. A
compatible change to a payload must bump the minor ``event_version``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from schemas.catalog import EVENT_TYPES
from schemas.compat import check_backward_compatible
from schemas.envelope import Envelope
from schemas.events.base import EventPayload
from schemas.registry import load_registry

__all__ = [
    "SCHEMA_DIR",
    "ExportProblem",
    "ExportRefusedError",
    "check",
    "envelope_schema",
    "generate",
    "main",
    "payload_schema",
    "render",
    "schema_path",
    "write",
]

SCHEMA_DIR = Path(__file__).with_name("jsonschema")
DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_FILE = "envelope.json"
# Annotation keywords: changing them does not change what validates, so no version bump needed.
_ANNOTATIONS = frozenset({"title", "description", "examples", "x-event-version"})
_SCHEMA_MAPS = frozenset({"properties", "$defs", "patternProperties", "dependentSchemas"})

ProblemKind = Literal["missing", "differs", "stale", "incompatible", "version"]


@dataclass(frozen=True, slots=True)
class ExportProblem:
    path: str  # relative to the schema directory
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.detail}"


class ExportRefusedError(Exception):
    """Writing would break the committed contract; ``problems`` says where."""

    def __init__(self, problems: list[ExportProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def schema_path(cls: type[EventPayload]) -> str:
    """Relative file of a payload's schema: ``<topic>/<EventType>.json``."""
    folder = cls.topic.removeprefix("*.")  # "*.dlq.v1": one shape for every DLQ topic
    return f"{folder}/{cls.event_type}.json"


def payload_schema(cls: type[EventPayload]) -> dict[str, Any]:
    schema = cls.model_json_schema(mode="validation")
    schema["$schema"] = DIALECT
    schema["x-event-type"] = cls.event_type
    schema["x-event-version"] = cls.event_version
    schema["x-topic"] = cls.topic
    return schema


def envelope_schema() -> dict[str, Any]:
    schema = Envelope[EventPayload].model_json_schema(mode="validation")
    schema["$schema"] = DIALECT
    schema["title"] = "Envelope"
    # event_id has a default for producers' convenience, but is always on the wire.
    schema["required"] = ["event_id", *schema["required"]]
    return schema


def generate() -> dict[str, dict[str, Any]]:
    """Every schema file by relative path, from the current models."""
    files = {ENVELOPE_FILE: envelope_schema()}
    for cls in EVENT_TYPES.values():
        files[schema_path(cls)] = payload_schema(cls)
    return dict(sorted(files.items()))


def render(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _committed(directory: Path) -> dict[str, str]:
    if not directory.is_dir():
        return {}
    return {
        p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(directory.rglob("*.json"))
    }


def _strip_annotations(node: Any, *, schema_map: bool = False) -> Any:
    if isinstance(node, list):
        return [_strip_annotations(v) for v in node]
    if not isinstance(node, dict):
        return node
    if schema_map:  # keys are property/definition names, values are schemas
        return {k: _strip_annotations(v) for k, v in node.items()}
    return {
        k: _strip_annotations(v, schema_map=k in _SCHEMA_MAPS)
        for k, v in node.items()
        if k not in _ANNOTATIONS
    }


def _version(text: str) -> tuple[int, int] | None:
    raw = text.split(".")
    return (int(raw[0]), int(raw[1])) if len(raw) == 2 and all(p.isdigit() for p in raw) else None


def _contract_problems(rel: str, old: dict[str, Any], new: dict[str, Any]) -> list[ExportProblem]:
    problems = [
        ExportProblem(rel, "incompatible", f"{i}; a breaking change needs a new major topic")
        for i in check_backward_compatible(old, new)
    ]
    if "x-event-version" not in new or problems:
        return problems
    old_v, new_v = _version(str(old.get("x-event-version"))), _version(str(new["x-event-version"]))
    if old_v is None or new_v is None:
        return problems
    if new_v[0] != old_v[0]:
        problems.append(
            ExportProblem(rel, "version", f"major {old_v[0]} -> {new_v[0]} needs a new topic")
        )
    elif new_v < old_v:
        problems.append(ExportProblem(rel, "version", f"event_version went back {old_v}->{new_v}"))
    elif new_v == old_v and _strip_annotations(old) != _strip_annotations(new):
        problems.append(
            ExportProblem(
                rel,
                "version",
                f"schema changed but event_version is still {new['x-event-version']}: "
                "bump the minor version (additive change)",
            )
        )
    return problems


def _live_topic_folders() -> set[str]:
    return set(load_registry()) | {cls.topic.removeprefix("*.") for cls in EVENT_TYPES.values()}


def _plan(
    directory: Path,
) -> tuple[dict[str, str], dict[str, str], list[str], list[ExportProblem]]:
    """(committed files, files to write, stale files, contract problems)."""
    generated = generate()
    rendered = {rel: render(schema) for rel, schema in generated.items()}
    committed = _committed(directory)
    to_write = {rel: text for rel, text in rendered.items() if committed.get(rel) != text}
    stale = sorted(set(committed) - set(rendered))
    problems: list[ExportProblem] = []
    for rel in to_write:
        if rel in committed:
            try:
                old = json.loads(committed[rel])
            except json.JSONDecodeError as exc:
                problems.append(ExportProblem(rel, "differs", f"committed file is not JSON: {exc}"))
                continue
            problems.extend(_contract_problems(rel, old, generated[rel]))
    live = _live_topic_folders()
    for rel in stale:
        folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if folder in live:
            problems.append(
                ExportProblem(
                    rel,
                    "incompatible",
                    f"event type removed from live topic {folder}; old messages still use it "
                    "(keep the model, or move to a new major topic)",
                )
            )
    return committed, to_write, stale, problems


def check(directory: Path = SCHEMA_DIR) -> list[ExportProblem]:
    """What is out of date (missing/differs/stale) or breaking; empty when all is current."""
    committed, to_write, stale, problems = _plan(directory)
    out = [
        ExportProblem(
            rel,
            "differs" if rel in committed else "missing",
            "regenerate with `python -m schemas.export`",
        )
        for rel in sorted(to_write)
    ]
    out.extend(
        ExportProblem(rel, "stale", "no model produces this schema any more")
        for rel in stale
        if not any(p.path == rel for p in problems)
    )
    return out + problems


def write(directory: Path = SCHEMA_DIR) -> tuple[list[str], list[str]]:
    """Write changed schemas and drop stale ones; returns (written, removed).

    Raises ExportRefusedError without touching any file if a change would break the contract.
    """
    _, to_write, stale, problems = _plan(directory)
    if problems:
        raise ExportRefusedError(problems)
    for rel, text in to_write.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8", newline="\n")
    for rel in stale:
        (directory / rel).unlink()
        parent = (directory / rel).parent
        if parent != directory and not any(parent.iterdir()):
            parent.rmdir()
    return sorted(to_write), stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 if not current")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="schema directory")
    args = parser.parse_args(argv)
    directory: Path = args.dir

    if args.check:
        problems = check(directory)
        for p in problems:
            print(p, file=sys.stderr)
        if any(p.kind in ("incompatible", "version") for p in problems):
            return 2
        if problems:
            print(f"{len(problems)} schema file(s) out of date", file=sys.stderr)
            return 1
        print(f"JSON Schemas in {directory} are current")
        return 0

    try:
        written, removed = write(directory)
    except ExportRefusedError as exc:
        print("refusing to overwrite the committed contract:", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    for rel in written:
        print(f"wrote {directory / rel}")
    for rel in removed:
        print(f"removed {directory / rel}")
    if not written and not removed:
        print(f"JSON Schemas in {directory} are current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Topic registry: loads and validates ``schemas/topics.yaml`` (DESIGN.md §4, §6).

Everything that creates, configures, mirrors or names a topic goes through here, so a topic
exists in exactly one declarative place. Names are ``<domain>.<stream>.v<major>`` with an
optional region (``booking.forward.eu.v1``) or ``dlq`` (``booking.events.dlq.v1``) segment.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

import yaml

__all__ = [
    "AVAILABILITY",
    "BOOKING_COMMANDS",
    "BOOKING_COMMANDS_DLQ",
    "BOOKING_EVENTS",
    "BOOKING_EVENTS_DLQ",
    "BOOKING_FACTS",
    "BOOKING_FORWARD_TEMPLATE",
    "DEFAULT_REGIONS",
    "FEEDBACK_EVENTS",
    "MESSAGES_INBOUND",
    "MESSAGES_INBOUND_DLQ",
    "MESSAGES_ROUTED",
    "NOTIFY_DELIVERIES",
    "NOTIFY_DLQ",
    "REGISTRY_PATH",
    "ROSTER_EVENTS",
    "ROSTER_EVENTS_DLQ",
    "SCOPES",
    "CleanupPolicy",
    "RegistryError",
    "Scope",
    "TopicSpec",
    "UnknownTopicError",
    "dlq_topic_for",
    "forward_topic",
    "load_registry",
    "local_topic_name",
    "parse_topic_name",
    "subscription_pattern",
    "topic",
    "topics_for_scope",
]

ROSTER_EVENTS: Final = "roster.events.v1"
ROSTER_EVENTS_DLQ: Final = "roster.events.dlq.v1"
BOOKING_COMMANDS: Final = "booking.commands.v1"
BOOKING_COMMANDS_DLQ: Final = "booking.commands.dlq.v1"
BOOKING_FORWARD_TEMPLATE: Final = "booking.forward.{region}.v1"
BOOKING_EVENTS: Final = "booking.events.v1"
BOOKING_EVENTS_DLQ: Final = "booking.events.dlq.v1"
BOOKING_FACTS: Final = "booking.facts.v1"
AVAILABILITY: Final = "availability.v1"
NOTIFY_DELIVERIES: Final = "notify.deliveries.v1"
NOTIFY_DLQ: Final = "notify.dlq.v1"
MESSAGES_INBOUND: Final = "messages.inbound.v1"
MESSAGES_INBOUND_DLQ: Final = "messages.inbound.dlq.v1"
MESSAGES_ROUTED: Final = "messages.routed.v1"
FEEDBACK_EVENTS: Final = "feedback.events.v1"

DEFAULT_REGIONS: Final[tuple[str, ...]] = ("cn", "eu", "ap")
REGISTRY_PATH: Final = Path(__file__).with_name("topics.yaml")

Scope = Literal["local", "to-hq", "all-regions", "to-home-region"]
CleanupPolicy = Literal["delete", "compact"]
SCOPES: Final[frozenset[str]] = frozenset(get_args(Scope))
_CLEANUP_POLICIES: Final[frozenset[str]] = frozenset(get_args(CleanupPolicy))
# PII must not leave its region (DESIGN §6): only these scopes may carry it.
_PII_SCOPES: Final = frozenset({"local", "to-home-region"})

# `availability.v1` has no stream segment, hence the optional middle part.
_NAME_RE: Final = re.compile(
    r"^(?P<domain>[a-z][a-z0-9_]*)"
    r"(?:\.(?P<stream>[a-z][a-z0-9_]*))?"
    r"(?:\.(?P<qualifier>[a-z][a-z0-9-]*))?"
    r"\.v(?P<major>[1-9][0-9]*)$"
)
_REGION_RE: Final = re.compile(r"^[a-z][a-z0-9-]*$")
_ENTRY_KEYS: Final = frozenset(
    {
        "name",
        "key",
        "partitions",
        "cleanup_policy",
        "retention_ms",
        "scope",
        "pii",
        "description",
        "events",
        "events_from",
        "dlq",
        "per_region",
    }
)
_REQUIRED_KEYS: Final = (
    "name",
    "key",
    "partitions",
    "cleanup_policy",
    "retention_ms",
    "scope",
    "pii",
    "description",
)
# Compacted topics: keep recent values readable by mirrors for a minute, roll segments hourly so
# the (never compacted) active segment stays small, compact once 10% of the log is stale.
_COMPACT_CONFIG: Final = {
    "min.compaction.lag.ms": "60000",
    "segment.ms": "3600000",
    "min.cleanable.dirty.ratio": "0.1",
}


class RegistryError(ValueError):
    """``topics.yaml`` is malformed or inconsistent with the event catalog."""


class UnknownTopicError(KeyError):
    """A topic name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else "unknown topic"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    cleanup_policy: CleanupPolicy
    retention_ms: int | None
    scope: Scope
    pii: bool
    description: str
    events: tuple[str, ...]
    dlq: str | None = None
    region: str | None = None  # set for per-region topics: the region the name is for

    @property
    def major(self) -> int:
        return int(self.name.rsplit(".v", 1)[1])

    @property
    def is_dlq(self) -> bool:
        return self.name.endswith(f".dlq.v{self.major}")

    def kafka_config(self) -> dict[str, str]:
        """Topic-level Kafka configs (strings, as the admin API and Strimzi expect)."""
        config: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        if self.cleanup_policy == "compact":
            config.update(_COMPACT_CONFIG)
        elif self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


def parse_topic_name(name: str) -> dict[str, str | None]:
    """Split a topic name into ``domain``, ``stream``, ``qualifier`` and ``major``.

    Raises RegistryError if the name does not follow ``<domain>.<stream>[.<qualifier>].v<major>``.
    """
    m = _NAME_RE.match(name)
    if m is None:
        raise RegistryError(
            f"topic name {name!r} does not match <domain>.<stream>[.<region>|.dlq].v<major>"
        )
    return m.groupdict()


@dataclass(frozen=True, slots=True)
class _Loaded:
    topics: dict[str, TopicSpec]
    templates: tuple[TopicSpec, ...]  # per-region entries with `{region}` still in the name


def _fail(where: str, message: str) -> RegistryError:
    return RegistryError(f"topic registry: {where}: {message}")


def _read_yaml(path: Path) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistryError(f"topic registry: cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise RegistryError(f"topic registry: {path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("topics"), list):
        raise RegistryError(f"topic registry: {path} must be a mapping with a `topics:` list")
    entries = doc["topics"]
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise _fail(f"topics[{i}]", "each topic must be a mapping")
    return cast(list[dict[str, Any]], entries)


def _check_regions(regions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(regions, str):  # a str is a Sequence[str]; "eu" would become ("e", "u")
        raise RegistryError(
            f"regions must be a sequence of region names, not the string {regions!r}"
        )
    out = tuple(regions)
    if not out:
        raise RegistryError("at least one region is required")
    for r in out:
        if not isinstance(r, str) or not _REGION_RE.match(r) or r == "dlq":
            raise RegistryError(f"invalid region name {r!r} (expected e.g. 'cn', 'eu', 'ap')")
    if len(set(out)) != len(out):
        raise RegistryError(f"duplicate region in {list(out)}")
    return out


def _spec_from_entry(i: int, entry: dict[str, Any]) -> tuple[TopicSpec, bool, list[str]]:
    """Validate one YAML entry; returns (spec, per_region, events_from)."""
    where = f"topics[{i}] ({entry.get('name', '?')})"
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; allowed: {sorted(_ENTRY_KEYS)}")
    missing = [k for k in _REQUIRED_KEYS if k not in entry]
    if missing:
        raise _fail(where, f"missing key(s) {missing}")

    name = entry["name"]
    if not isinstance(name, str):
        raise _fail(where, "name must be a string")
    per_region = entry.get("per_region", False)
    if not isinstance(per_region, bool):
        raise _fail(where, "per_region must be true or false")
    if per_region and name.count("{region}") != 1:
        raise _fail(where, "a per_region topic name must contain `{region}` exactly once")
    if not per_region and "{" in name:
        raise _fail(where, "`{region}` in the name needs `per_region: true`")
    try:
        parse_topic_name(name.replace("{region}", "region"))
    except RegistryError as exc:
        raise _fail(where, str(exc)) from None

    for text_key in ("key", "description"):
        if not isinstance(entry[text_key], str) or not entry[text_key].strip():
            raise _fail(where, f"{text_key} must be a non-empty string")

    partitions = entry["partitions"]
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise _fail(where, f"partitions must be an integer >= 1, got {partitions!r}")

    policy = entry["cleanup_policy"]
    if policy not in _CLEANUP_POLICIES:
        raise _fail(where, f"cleanup_policy must be one of {sorted(_CLEANUP_POLICIES)}")
    retention = entry["retention_ms"]
    if policy == "compact":
        if retention is not None:
            raise _fail(
                where, "a compacted topic keeps the latest value per key: retention_ms must be null"
            )
    elif (
        isinstance(retention, bool)
        or not isinstance(retention, int)
        or not (retention == -1 or retention > 0)
    ):
        raise _fail(
            where, f"retention_ms must be a positive integer or -1 (forever), got {retention!r}"
        )

    scope = entry["scope"]
    if scope not in SCOPES:
        raise _fail(where, f"scope must be one of {sorted(SCOPES)}, got {scope!r}")
    if per_region != (scope == "to-home-region"):
        raise _fail(where, "scope `to-home-region` is for (and required by) per_region topics")
    pii = entry["pii"]
    if not isinstance(pii, bool):
        raise _fail(where, "pii must be true or false")
    if pii and scope not in _PII_SCOPES:
        raise _fail(
            where, f"a topic with PII must stay in its region; scope {scope!r} is not allowed"
        )

    dlq = entry.get("dlq")
    if dlq is not None and not isinstance(dlq, str):
        raise _fail(where, "dlq must be a topic name")

    events = entry.get("events", [])
    events_from = entry.get("events_from", [])
    for key_name, value in (("events", events), ("events_from", events_from)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(where, f"{key_name} must be a list of names")
    if len(set(events)) != len(events):
        raise _fail(where, "events lists a type twice")
    if not events and not events_from:
        raise _fail(where, "a topic must carry at least one event type (events / events_from)")

    spec = TopicSpec(
        name=name,
        key=entry["key"],
        partitions=partitions,
        cleanup_policy=policy,
        retention_ms=retention,
        scope=scope,
        pii=pii,
        description=" ".join(entry["description"].split()),
        events=tuple(events),
        dlq=dlq,
    )
    return spec, per_region, events_from


def _expand(template: TopicSpec, region: str) -> TopicSpec:
    return replace(
        template,
        name=template.name.replace("{region}", region),
        description=template.description.replace("{region}", region),
        region=region,
    )


def _check_events(specs: Mapping[str, TopicSpec], templates: Sequence[TopicSpec]) -> None:
    # Imported here: event modules import the topic-name constants from this module.
    from schemas.catalog import EVENT_TYPES

    relays = {t.name for t in templates} | {s.name for s in specs.values() if s.region}
    for spec in [*specs.values(), *templates]:
        where = f"topic {spec.name}"
        for event in spec.events:
            cls = EVENT_TYPES.get(event)
            if cls is None:
                close = difflib.get_close_matches(event, EVENT_TYPES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise _fail(where, f"event type {event!r} is not in the event catalog{hint}")
            event_major = int(cls.event_version.split(".", 1)[0])
            if event_major != spec.major:
                raise _fail(
                    where,
                    f"{event} is version {cls.event_version} but the topic is v{spec.major}; "
                    "a new major version needs a new topic",
                )
            # Forward topics relay other topics' types; everything else carries its own.
            if spec.name not in relays and not fnmatch.fnmatchcase(spec.name, cls.topic):
                raise _fail(where, f"{event} declares topic {cls.topic!r}, not this one")

    # The reverse direction: every catalogued type has a home topic that lists it.
    for event, cls in EVENT_TYPES.items():
        homes = [s for s in specs.values() if fnmatch.fnmatchcase(s.name, cls.topic)]
        if not homes:
            raise RegistryError(
                f"topic registry: event {event} declares topic {cls.topic!r}, "
                "which is not registered"
            )
        missing = [s.name for s in homes if event not in s.events]
        if missing:
            raise RegistryError(
                f"topic registry: event {event} is not listed under `events:` of {missing}"
            )


def _load(path: Path, regions: tuple[str, ...]) -> _Loaded:
    entries = _read_yaml(path)
    plain: dict[str, TopicSpec] = {}
    templates: list[TopicSpec] = []
    includes: dict[str, list[str]] = {}
    for i, entry in enumerate(entries):
        spec, per_region, events_from = _spec_from_entry(i, entry)
        if spec.name in plain or any(t.name == spec.name for t in templates):
            raise _fail(f"topics[{i}]", f"duplicate topic {spec.name!r}")
        if per_region:
            templates.append(spec)
        else:
            plain[spec.name] = spec
        if events_from:
            includes[spec.name] = events_from

    # Resolve `events_from` (one level: sources must list their own events).
    def with_includes(spec: TopicSpec) -> TopicSpec:
        sources = includes.get(spec.name, [])
        events = list(spec.events)
        for src in sources:
            if src not in plain or src in includes:
                raise _fail(
                    f"topic {spec.name}",
                    f"events_from: {src!r} is not a registered topic with `events:`",
                )
            events.extend(e for e in plain[src].events if e not in events)
        return replace(spec, events=tuple(events))

    plain = {name: with_includes(s) for name, s in plain.items()}
    templates = [with_includes(t) for t in templates]

    topics = dict(plain)
    for template in templates:
        for region in regions:
            spec = _expand(template, region)
            if spec.name in topics:
                raise _fail(
                    f"topic {template.name}", f"expands to {spec.name!r}, which already exists"
                )
            topics[spec.name] = spec

    for spec in topics.values():
        if spec.dlq is None:
            continue
        target = topics.get(spec.dlq)
        if target is None:
            raise _fail(f"topic {spec.name}", f"dlq {spec.dlq!r} is not a registered topic")
        if not target.is_dlq or "DeadLetter" not in target.events:
            raise _fail(
                f"topic {spec.name}",
                f"dlq {spec.dlq!r} must be a *.dlq.v<N> topic carrying DeadLetter",
            )

    _check_events(topics, templates)
    return _Loaded(topics=dict(sorted(topics.items())), templates=tuple(templates))


@cache
def _load_cached(path: Path, regions: tuple[str, ...]) -> _Loaded:
    return _load(path, regions)


def load_registry(
    regions: Sequence[str] = DEFAULT_REGIONS, path: str | Path | None = None
) -> dict[str, TopicSpec]:
    """All topics by name, per-region templates expanded for ``regions``.

    ``path`` defaults to ``schemas/topics.yaml``. Raises RegistryError when the file is invalid.
    The result is a fresh dict; the TopicSpecs are immutable and shared.
    """
    resolved = Path(path).resolve() if path is not None else REGISTRY_PATH
    return dict(_load_cached(resolved, _check_regions(regions)).topics)


def _default() -> _Loaded:
    return _load_cached(REGISTRY_PATH, DEFAULT_REGIONS)


def topic(name: str) -> TopicSpec:
    """The spec of a registered topic (per-region topics resolve for any valid region name)."""
    loaded = _default()
    spec = loaded.topics.get(name)
    if spec is not None:
        return spec
    for template in loaded.templates:
        prefix, suffix = template.name.split("{region}")
        if name.startswith(prefix) and name.endswith(suffix):
            region = name[len(prefix) : len(name) - len(suffix)]
            if _REGION_RE.match(region) and region != "dlq":
                return _expand(template, region)
    close = difflib.get_close_matches(name, loaded.topics, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownTopicError(f"unknown topic {name!r}: not in schemas/topics.yaml{hint}")


def forward_topic(region: str) -> str:
    """``booking.forward.<region>.v1``: where commands for stores homed in ``region`` go."""
    _check_regions([region])
    return BOOKING_FORWARD_TEMPLATE.format(region=region)


def local_topic_name(name: str) -> str:
    """Strip a MirrorMaker 2 source-region prefix (``eu.booking.facts.v1`` -> ``booking.facts.v1``).

    Names that are registered as they are come back unchanged.
    """
    try:
        topic(name)
        return name
    except UnknownTopicError:
        pass
    head, _, rest = name.partition(".")
    if rest and _REGION_RE.match(head):
        try:
            topic(rest)
            return rest
        except UnknownTopicError:
            pass
    return name


def subscription_pattern(name: str) -> str:
    """Regex matching a topic and its mirrored copies from other regions (``<region>.<name>``)."""
    topic(name)  # fail fast on typos
    return rf"^(?:[a-z][a-z0-9-]*\.)?{re.escape(name)}$"


def dlq_topic_for(topic_name: str) -> str:
    """Dead-letter topic for records consumed from ``topic_name`` (mirrored names accepted)."""
    spec = topic(local_topic_name(topic_name))
    if spec.dlq is None:
        raise UnknownTopicError(
            f"topic {spec.name!r} has no dead-letter topic: add `dlq:` to it in schemas/topics.yaml"
        )
    return spec.dlq


def topics_for_scope(scope: str, regions: Sequence[str] = DEFAULT_REGIONS) -> list[TopicSpec]:
    """Topics replicated with ``scope`` (e.g. to configure MirrorMaker 2), sorted by name."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; expected one of {sorted(SCOPES)}")
    return [s for s in load_registry(regions).values() if s.scope == scope]

"""Home Assistant MQTT discovery: edgetag's entities appear in Home Assistant with no YAML at all.

Frigate declined discovery (it needs its own custom integration); edgetag only publishes retained
config messages, as Viseron does. Everything here is data in, messages out: the daemon publishes
each `DiscoveryMessage` retained at QoS 1, at start and again whenever Home Assistant says `online`
on its status topic (`status_is_online`).

The choices, written down because they must stay stable (a changed id makes new entities and
orphans the old ones):

- Classic per-entity discovery, `<discovery_prefix>/<component>/edgetag_<device>/<object_id>/config`,
  not the newer device-based form, so it works on every Home Assistant with MQTT discovery.
- One Home Assistant device per edgetag device: identifiers `edgetag_<device>`, named
  "edgetag <device>". Entity names do not repeat it (Home Assistant puts the device name first).
- `unique_id` is `edgetag_<device>_<object_id>`. `default_entity_id` (which replaced the deprecated
  `object_id` option in Home Assistant 2025.10) asks for the entity id Home Assistant would derive
  from the names anyway, such as `binary_sensor.edgetag_pi_front_door_person`, so older versions
  that ignore it end up with the same ids. Two entities that would share an id are a ConfigError,
  never one silently replacing the other.
- Nothing here publishes state: the entities read the topics of `edgetag.topics` (the retained
  counts, `last`, `events`, `stats`) and go unavailable with `availability` (the daemon's last will).
- Templates use only what Home Assistant and plain Jinja2 share (`int(0)`, `truncate`, `map`) plus
  Home Assistant's `to_json`. A state holds at most 255 characters, so the template truncates the
  sentence; a null CPU temperature renders "None", which Home Assistant shows as unknown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgetag.config import HomeAssistantConfig
from edgetag.errors import ConfigError
from edgetag.topics import Topics, slug

PROJECT_URL = "https://github.com/edgetag/edgetag"
ONLINE = "online"
OFFLINE = "offline"
EVENT_TYPE = "tagged"
MAX_STATE = 255
"""Home Assistant refuses states longer than this."""

CONCEPT_TEMPLATE = "{{ 'ON' if value | int(0) > 0 else 'OFF' }}"
SENTENCE_TEMPLATE = "{{ value_json.sentence | truncate(255, false, '...', 0) }}"
"""At most MAX_STATE characters, cut at a word."""
EVENT_TEMPLATE = (
    "{{ {'event_type': 'tagged', 'id': value_json.id, 'sentence': value_json.sentence,"
    " 'people': value_json.people, 'concepts': value_json.tags | map(attribute='concept') | list,"
    " 'time': value_json.time} | to_json }}"
)
"""The event entity needs an `event_type` (EVENT_TYPE); the rest become the event's attributes."""


@dataclass(frozen=True)
class DiscoveryMessage:
    """One config message, to publish retained; an empty payload deletes the entity."""

    topic: str
    payload: str


@dataclass(frozen=True)
class Stat:
    """A diagnostic sensor: one key of the stats JSON."""

    key: str
    name: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str = "measurement"


STATS = (
    Stat("photos_per_minute", "Photos per minute", unit="photos/min"),
    Stat("queue_depth", "Queue depth", unit="photos"),
    Stat("errors_total", "Errors", state_class="total_increasing"),
    Stat("outbox_pending", "Outbox pending", unit="events"),
    Stat("cpu_temperature_c", "CPU temperature", unit="°C", device_class="temperature"),
)
"""The keys the daemon publishes on `Topics.stats`; `cpu_temperature_c` may be null."""


@dataclass(frozen=True)
class Entity:
    component: str
    object_id: str
    name: str
    fields: dict[str, Any]
    """What the component needs besides the common keys (state topic, template, classes)."""


def node_id(device: str) -> str:
    return f"edgetag_{device}"


def config_topic(discovery_prefix: str, component: str, device: str, object_id: str) -> str:
    return f"{discovery_prefix}/{component}/{node_id(device)}/{object_id}/config"


def status_topic(config: HomeAssistantConfig) -> str:
    """Where Home Assistant says `online` when it starts (and `offline` when it stops)."""
    return config.status_topic or f"{config.discovery_prefix}/status"


def status_is_online(payload: bytes) -> bool:
    """Whether a status message means Home Assistant (re)started, so discovery must be sent again."""
    return payload.strip() == ONLINE.encode()


def source_entities(source: str, concepts: Sequence[str], topics: Topics) -> list[Entity]:
    """A source's entities: a binary sensor per concept, its last sentence, and an event per photo."""
    entities = [
        Entity(
            "binary_sensor",
            f"{source}_{slug(concept)}",
            f"{source} {concept}",
            {
                "state_topic": topics.concept(source, concept),
                "value_template": CONCEPT_TEMPLATE,
                **({"device_class": "occupancy"} if slug(concept) == "person" else {}),
            },
        )
        for concept in dict.fromkeys(concepts)
    ]
    entities.append(
        Entity(
            "sensor",
            f"{source}_last_photo",
            f"{source} last photo",
            {
                "state_topic": topics.last(source),
                "value_template": SENTENCE_TEMPLATE,
                "json_attributes_topic": topics.last(source),
            },
        )
    )
    entities.append(
        Entity(
            "event",
            f"{source}_photo_tagged",
            f"{source} photo tagged",
            {
                "state_topic": topics.events(source),
                "value_template": EVENT_TEMPLATE,
                "event_types": [EVENT_TYPE],
                "qos": 1,
            },
        )
    )
    return entities


def stat_entity(stat: Stat, topics: Topics) -> Entity:
    fields: dict[str, Any] = {
        "state_topic": topics.stats,
        "value_template": "{{ value_json." + stat.key + " }}",
        "state_class": stat.state_class,
        "entity_category": "diagnostic",
    }
    if stat.unit is not None:
        fields["unit_of_measurement"] = stat.unit
    if stat.device_class is not None:
        fields["device_class"] = stat.device_class
    return Entity("sensor", stat.key, stat.name, fields)


def discovery_messages(
    *,
    device: str,
    sources: Sequence[str],
    concepts: Sequence[str],
    topics: Topics,
    discovery_prefix: str,
    sw_version: str,
    model: str = "edgetag",
) -> list[DiscoveryMessage]:
    """The config of every entity of this device. Raises ConfigError if two would share an id."""
    common: dict[str, Any] = {
        "device": {
            "identifiers": [node_id(device)],
            "name": f"edgetag {device}",
            "manufacturer": "edgetag",
            "model": model,
            "sw_version": sw_version,
        },
        "origin": {"name": "edgetag", "sw_version": sw_version, "support_url": PROJECT_URL},
        "availability": [
            {"topic": topics.availability, "payload_available": ONLINE, "payload_not_available": OFFLINE}
        ],
    }
    entities = [e for source in dict.fromkeys(sources) for e in source_entities(source, concepts, topics)]
    entities += [stat_entity(stat, topics) for stat in STATS]
    messages: list[DiscoveryMessage] = []
    names: dict[str, str] = {}
    for entity in entities:
        unique_id = f"{node_id(device)}_{entity.object_id}"
        if unique_id in names:
            raise ConfigError(
                f"homeassistant: {names[unique_id]!r} and {entity.name!r} would both be {unique_id!r}; "
                "rename a source or drop a concept"
            )
        names[unique_id] = entity.name
        config = {
            "name": entity.name,
            "unique_id": unique_id,
            "default_entity_id": f"{entity.component}.{slug(f'edgetag {device} {entity.name}')}",
            **entity.fields,
            **common,
        }
        topic = config_topic(discovery_prefix, entity.component, device, entity.object_id)
        messages.append(DiscoveryMessage(topic, json.dumps(config, ensure_ascii=False)))
    return messages


def removal_messages(
    *,
    device: str,
    discovery_prefix: str,
    old_sources: Sequence[str],
    old_concepts: Sequence[str],
    new_sources: Sequence[str],
    new_concepts: Sequence[str],
) -> list[DiscoveryMessage]:
    """Empty retained configs that delete the entities of sources and concepts no longer configured.

    The diagnostic sensors stay: they belong to the device, not to a source.
    """

    def config_topics(sources: Sequence[str], concepts: Sequence[str]) -> list[str]:
        placeholder = Topics("", device)  # only the component and object ids matter here
        return [
            config_topic(discovery_prefix, e.component, device, e.object_id)
            for source in dict.fromkeys(sources)
            for e in source_entities(source, concepts, placeholder)
        ]

    kept = set(config_topics(new_sources, new_concepts))
    return [DiscoveryMessage(t, "") for t in config_topics(old_sources, old_concepts) if t not in kept]

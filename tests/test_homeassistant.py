"""Home Assistant discovery as data: the configs, their topics and ids, and their templates rendered.

The templates are rendered with Jinja2's immutable sandbox, as Home Assistant renders them, plus
Home Assistant's `to_json` filter; those tests are skipped when Jinja2 is not installed.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from edgetag.config import HomeAssistantConfig
from edgetag.errors import ConfigError
from edgetag.events import TagEvent
from edgetag.homeassistant import (
    EVENT_TYPE,
    MAX_STATE,
    STATS,
    DiscoveryMessage,
    discovery_messages,
    removal_messages,
    status_is_online,
    status_topic,
)
from edgetag.imaging import Photo
from edgetag.models import Detection, ModelInfo
from edgetag.tagger import Tagger, TagResult
from edgetag.topics import Topics
from edgetag.vocabulary import Description, Tag
from tests.conftest import SAMPLES

TOPICS = Topics("edgetag", "pi")
SOURCES = ("front-door", "garden")
CONCEPTS = ("person", "dog", "teddy bear")
ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
"""Home Assistant's rule for a valid entity id."""
CONFIG_TOPIC = re.compile(r"^homeassistant/(binary_sensor|sensor|event)/edgetag_pi/[a-zA-Z0-9_-]+/config$")


def messages(
    sources: Sequence[str] = SOURCES, concepts: Sequence[str] = CONCEPTS, prefix: str = "homeassistant"
) -> list[DiscoveryMessage]:
    return discovery_messages(
        device="pi",
        sources=sources,
        concepts=concepts,
        topics=TOPICS,
        discovery_prefix=prefix,
        sw_version="0.1.0",
    )


def configs(found: list[DiscoveryMessage] | None = None) -> dict[str, dict[str, Any]]:
    """Each config topic's payload, parsed."""
    return {m.topic: json.loads(m.payload) for m in (found if found is not None else messages())}


def config(component: str, object_id: str) -> dict[str, Any]:
    return configs()[f"homeassistant/{component}/edgetag_pi/{object_id}/config"]


def tag_event(sentence_tags: tuple[Tag, ...], people: int, source: str = "front-door") -> TagEvent:
    faces = tuple(Detection("face", 0.9, (0.1, 0.1, 0.2, 0.2)) for _ in range(people))
    result = TagResult(
        photo=Photo("door-0001.jpg", 1920, 1080, "JPEG", Image.new("RGB", (32, 18))),
        description=Description(sentence_tags, people, faces, ()),
        classes=(("Labrador Retriever", 0.61),),
        models=(ModelInfo("blazeface", "faces", "9" * 64, Path("blazeface.tflite")),),
        timing_ms={"decode": 1.5, "total": 14.25},
    )
    return TagEvent("0123456789abcdef0123", "pi", source, "2026-05-01T08:00:00.000Z", result)


TWO_PEOPLE_AND_DOG = tag_event((Tag("person", 0.93, "people", 2), Tag("dog", 0.71, "animal")), people=2)


# --- the configs as data ---------------------------------------------------------------------------


def test_every_config_is_json_with_ids_device_origin_and_availability() -> None:
    found = configs()
    assert found, "no discovery messages"
    for topic, entity in found.items():
        assert CONFIG_TOPIC.match(topic), topic
        component = topic.split("/")[1]
        assert entity["unique_id"].startswith("edgetag_pi_")
        assert ENTITY_ID.match(entity["default_entity_id"]), entity["default_entity_id"]
        assert entity["default_entity_id"].startswith(f"{component}.edgetag_pi_")
        assert "object_id" not in entity  # deprecated in Home Assistant 2025.10
        assert entity["device"] == {
            "identifiers": ["edgetag_pi"],
            "name": "edgetag pi",
            "manufacturer": "edgetag",
            "model": "edgetag",
            "sw_version": "0.1.0",
        }
        assert entity["origin"]["name"] == "edgetag"
        assert entity["origin"]["sw_version"] == "0.1.0"
        assert entity["origin"]["support_url"].startswith("https://")
        assert entity["availability"] == [
            {
                "topic": "edgetag/pi/availability",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ]
        assert entity["state_topic"].startswith(TOPICS.base + "/")
        assert not entity["name"].startswith("edgetag pi")  # Home Assistant adds the device name itself


def test_ids_are_unique_across_all_entities() -> None:
    found = list(configs().values())
    unique_ids = [entity["unique_id"] for entity in found]
    entity_ids = [entity["default_entity_id"] for entity in found]
    assert len(set(unique_ids)) == len(unique_ids)
    assert len(set(entity_ids)) == len(entity_ids)
    assert len({m.topic for m in messages()}) == len(messages())


def test_entity_list() -> None:
    found = configs()
    per_source = len(CONCEPTS) + 2
    assert len(found) == len(SOURCES) * per_source + len(STATS)
    expected = {
        "homeassistant/binary_sensor/edgetag_pi/front-door_person/config",
        "homeassistant/binary_sensor/edgetag_pi/front-door_dog/config",
        "homeassistant/binary_sensor/edgetag_pi/front-door_teddy_bear/config",
        "homeassistant/sensor/edgetag_pi/front-door_last_photo/config",
        "homeassistant/event/edgetag_pi/front-door_photo_tagged/config",
        "homeassistant/sensor/edgetag_pi/photos_per_minute/config",
        "homeassistant/sensor/edgetag_pi/queue_depth/config",
        "homeassistant/sensor/edgetag_pi/errors_total/config",
        "homeassistant/sensor/edgetag_pi/outbox_pending/config",
        "homeassistant/sensor/edgetag_pi/cpu_temperature_c/config",
    }
    assert expected <= set(found)


def test_concept_binary_sensors_read_the_count_topics() -> None:
    for source in SOURCES:
        for concept in CONCEPTS:
            entity = config("binary_sensor", f"{source}_{concept.replace(' ', '_')}")
            assert entity["name"] == f"{source} {concept}"
            assert entity["state_topic"] == TOPICS.concept(source, concept)
            assert entity.get("device_class") == ("occupancy" if concept == "person" else None)
    person = config("binary_sensor", "front-door_person")
    assert person["default_entity_id"] == "binary_sensor.edgetag_pi_front_door_person"
    assert person["unique_id"] == "edgetag_pi_front-door_person"


def test_last_photo_sensor_and_event_entity_read_the_source_topics() -> None:
    sentence = config("sensor", "garden_last_photo")
    assert sentence["state_topic"] == TOPICS.last("garden")
    assert sentence["json_attributes_topic"] == TOPICS.last("garden")
    assert sentence["default_entity_id"] == "sensor.edgetag_pi_garden_last_photo"
    event = config("event", "garden_photo_tagged")
    assert event["state_topic"] == TOPICS.events("garden")
    assert event["event_types"] == [EVENT_TYPE]
    assert event["default_entity_id"] == "event.edgetag_pi_garden_photo_tagged"


def test_diagnostic_sensors_read_the_stats_topic() -> None:
    for stat in STATS:
        entity = config("sensor", stat.key)
        assert entity["state_topic"] == TOPICS.stats
        assert entity["entity_category"] == "diagnostic"
        assert stat.key in entity["value_template"]
    temperature = config("sensor", "cpu_temperature_c")
    assert temperature["device_class"] == "temperature"
    assert temperature["unit_of_measurement"] == "°C"
    assert config("sensor", "errors_total")["state_class"] == "total_increasing"


def test_discovery_prefix_is_configurable() -> None:
    found = messages(prefix="ha-test")
    assert found
    assert all(m.topic.startswith("ha-test/") and m.topic.endswith("/config") for m in found)


def test_repeated_names_are_one_entity_each() -> None:
    assert messages(["garden", "garden"], ["dog", "dog"]) == messages(["garden"], ["dog"])


def test_colliding_ids_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="edgetag_pi_back_yard_dog"):
        messages(["back", "back_yard"], ["yard dog", "dog"])


def test_no_sources_still_describes_the_device() -> None:
    found = configs(messages([], []))
    assert len(found) == len(STATS)


# --- the templates, rendered -----------------------------------------------------------------------


def render(template: str, payload: str) -> str:
    """Render a value template the way Home Assistant's MQTT entities do (value and value_json)."""
    sandbox = pytest.importorskip("jinja2.sandbox")
    environment = sandbox.ImmutableSandboxedEnvironment()
    environment.filters["to_json"] = lambda value: json.dumps(value, ensure_ascii=False)
    variables: dict[str, Any] = {"value": payload}
    with contextlib.suppress(ValueError):  # Home Assistant sets value_json only for JSON payloads
        variables["value_json"] = json.loads(payload)
    return str(environment.from_string(template).render(**variables))


@pytest.mark.parametrize(
    ("payload", "state"), [("0", "OFF"), ("1", "ON"), ("3", "ON"), ("", "OFF"), ("nonsense", "OFF")]
)
def test_count_template_turns_counts_into_on_off(payload: str, state: str) -> None:
    assert render(config("binary_sensor", "front-door_person")["value_template"], payload) == state


def test_sentence_template_reads_the_last_event() -> None:
    template = config("sensor", "front-door_last_photo")["value_template"]
    assert render(template, TWO_PEOPLE_AND_DOG.to_json().decode()) == "Image may contain: 2 people and dog"


def test_sentence_template_keeps_states_within_home_assistants_limit() -> None:
    many = tuple(Tag(f"concept number {n}", 0.9, "object") for n in range(40))
    event = tag_event(many, people=0)
    assert len(event.result.sentence) > MAX_STATE
    state = render(config("sensor", "front-door_last_photo")["value_template"], event.to_json().decode())
    assert len(state) <= MAX_STATE
    assert state.startswith("Image may contain: concept number 0, concept number 1")
    assert state.endswith("...")


def test_event_template_gives_home_assistant_an_event_type() -> None:
    template = config("event", "front-door_photo_tagged")["value_template"]
    fired = json.loads(render(template, TWO_PEOPLE_AND_DOG.to_json().decode()))
    assert fired == {
        "event_type": "tagged",
        "id": "0123456789abcdef0123",
        "sentence": "Image may contain: 2 people and dog",
        "people": 2,
        "concepts": ["person", "dog"],
        "time": "2026-05-01T08:00:00.000Z",
    }


def test_templates_on_a_real_photos_event(tagger: Tagger) -> None:
    result = tagger.tag_file(SAMPLES / "two_people.jpg")
    payload = TagEvent("e" * 20, "pi", "garden", "2026-05-01T08:00:00.000Z", result).to_json().decode()
    assert render(config("sensor", "garden_last_photo")["value_template"], payload) == result.sentence
    fired = json.loads(render(config("event", "garden_photo_tagged")["value_template"], payload))
    assert fired["event_type"] == "tagged"
    assert fired["people"] == result.description.people == 2
    assert "person" in fired["concepts"]


def test_stats_templates() -> None:
    stats = {
        "photos_per_minute": 12.5,
        "queue_depth": 3,
        "errors_total": 7,
        "outbox_pending": 0,
        "cpu_temperature_c": 51.2,
    }
    for stat in STATS:
        template = config("sensor", stat.key)["value_template"]
        assert render(template, json.dumps(stats)) == str(stats[stat.key])
    no_sensor = render(
        config("sensor", "cpu_temperature_c")["value_template"],
        json.dumps(stats | {"cpu_temperature_c": None}),
    )
    assert no_sensor == "None"  # Home Assistant's "unknown"


# --- removal and Home Assistant's status ----------------------------------------------------------


def test_removal_deletes_only_what_is_no_longer_configured() -> None:
    removed = removal_messages(
        device="pi",
        discovery_prefix="homeassistant",
        old_sources=["front-door", "garden"],
        old_concepts=["person", "dog"],
        new_sources=["front-door", "drive"],
        new_concepts=["person", "car"],
    )
    assert all(m.payload == "" for m in removed)
    assert {m.topic for m in removed} == {
        "homeassistant/binary_sensor/edgetag_pi/front-door_dog/config",
        "homeassistant/binary_sensor/edgetag_pi/garden_person/config",
        "homeassistant/binary_sensor/edgetag_pi/garden_dog/config",
        "homeassistant/sensor/edgetag_pi/garden_last_photo/config",
        "homeassistant/event/edgetag_pi/garden_photo_tagged/config",
    }
    old = {m.topic for m in messages(["front-door", "garden"], ["person", "dog"])}
    new = {m.topic for m in messages(["front-door", "drive"], ["person", "car"])}
    assert {m.topic for m in removed} == old - new


def test_removal_with_nothing_changed_is_empty() -> None:
    unchanged = removal_messages(
        device="pi",
        discovery_prefix="homeassistant",
        old_sources=SOURCES,
        old_concepts=CONCEPTS,
        new_sources=list(SOURCES),
        new_concepts=list(CONCEPTS),
    )
    assert unchanged == []


@pytest.mark.parametrize(
    ("payload", "online"),
    [(b"online", True), (b"online\n", True), (b"offline", False), (b"", False), (b"onl", False)],
)
def test_status_is_online(payload: bytes, online: bool) -> None:
    assert status_is_online(payload) is online


def test_status_topic() -> None:
    assert status_topic(HomeAssistantConfig()) == "homeassistant/status"
    assert status_topic(HomeAssistantConfig(discovery_prefix="ha")) == "ha/status"
    assert status_topic(HomeAssistantConfig(status_topic="hass/status")) == "hass/status"

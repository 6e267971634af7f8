"""The config loader as a user meets it: real TOML files, every rule's exact message, flags, secrets."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edgetag.config
from edgetag.config import (
    CameraSourceConfig,
    Config,
    ConfigFlags,
    DeviceConfig,
    FolderSourceConfig,
    HookConfig,
    HookPublishConfig,
    InvalidConfigError,
    ModelsConfig,
    MqttConfig,
    MqttSourceConfig,
    default_device_name,
    image_limits,
    load_config,
    model_settings,
    mqtt_client_id,
    mqtt_password,
    mqtt_port,
    parse_config,
    render_config,
    state_dir,
)
from edgetag.errors import ConfigError
from edgetag.imaging import ImageLimits
from edgetag.tagger import ModelSettings
from tests.conftest import ROOT

DOC = ROOT / "docs" / "config.md"


def write(tmp_path: Path, text: str, name: str = "edgetag.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, flags: ConfigFlags | None = None) -> Config:
    return load_config(write(tmp_path, text), flags, env={"HOME": str(tmp_path / "home")})


def problems(tmp_path: Path, text: str, flags: ConfigFlags | None = None) -> list[str]:
    with pytest.raises(InvalidConfigError) as caught:
        load(tmp_path, text, flags)
    return list(caught.value.problems)


FOLDER = '[[source]]\ntype = "folder"\nname = "inbox"\npath = "/srv/inbox"\n'


# --- files -------------------------------------------------------------------------------------------


def test_no_file_means_all_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edgetag.config, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    config = load_config(None, env={})
    assert config == Config()
    assert config.sources == [] and config.hooks == []
    assert config.device.name == default_device_name()
    assert config.mqtt.port is None and mqtt_port(config) == 1883
    assert mqtt_client_id(config) == f"edgetag-{config.device.name}"


def test_watch_flag_alone_needs_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edgetag.config, "DEFAULT_CONFIG", tmp_path / "absent.toml")
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    config = load_config(None, ConfigFlags(watch=[Path("photos")]), env={})
    assert config.sources == [FolderSourceConfig(name="photos", path=tmp_path / "photos")]


def test_default_file_is_read_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edgetag.config, "DEFAULT_CONFIG", write(tmp_path, '[mqtt]\nhost = "broker.lan"\n'))
    assert load_config(None, env={}).mqtt.host == "broker.lan"


def test_explicit_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(missing))}: no such config file"):
        load_config(missing, env={})


def test_a_folder_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder; give the path of the TOML file"):
        load_config(tmp_path, env={})


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nhost = "broker.lan"\nport = \n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "(at line 3, column 8)" in message


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[device]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text .*save it as UTF-8"):
        load_config(path, env={})


# --- one rule, one message ---------------------------------------------------------------------------

RULES = [
    # the examples of the brief, verbatim
    ('[mqtt]\nport = "abc"\n', 'mqtt.port: expected an integer from 1 to 65535, got "abc"'),
    (
        FOLDER + '[[source]]\ntype = "folder"\nname = "b"\npath = "/srv/b"\nafter = "trash"\n',
        'source[2].after: "trash" is not one of keep, delete, move',
    ),
    ("[mqtt]\nprot = 1883\n", 'mqtt: unknown key "prot" (did you mean "port"?)'),
    ('[[source]]\ntype = "ftp"\nname = "x"\n', 'source[1]: unknown type "ftp" (folder, camera, mqtt)'),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\nrun = ["/bin/true"]\n[hook.publish]\ntopic = "a/b"\n',
        "hook[1]: give either publish or run, not both",
    ),
    # types
    ("[mqtt]\nport = 0\n", "mqtt.port: expected an integer from 1 to 65535, got 0"),
    ("[mqtt]\nport = 65536\n", "mqtt.port: expected an integer from 1 to 65535, got 65536"),
    ("[mqtt]\nport = 1883.0\n", "mqtt.port: expected an integer from 1 to 65535, got 1883.0"),
    ("[mqtt]\nport = true\n", "mqtt.port: expected an integer from 1 to 65535, got true"),
    ("[mqtt]\ntls = 1\n", "mqtt.tls: expected true or false, got 1"),
    ('[mqtt]\ntls = "yes"\n', 'mqtt.tls: expected true or false, got "yes"'),
    ("[mqtt]\nhost = 5\n", "mqtt.host: expected a string, got 5"),
    ("[mqtt]\nkeepalive = 0\n", "mqtt.keepalive: expected an integer from 1 to 65535, got 0"),
    (
        "[mqtt]\nreconnect_min_seconds = 0\n",
        "mqtt.reconnect_min_seconds: expected a number greater than 0, got 0",
    ),
    ("[mqtt]\nprotocol = 3\n", "mqtt.protocol: 3 is not one of 3.1.1, 5"),
    ('[mqtt]\nprotocol = "4"\n', 'mqtt.protocol: "4" is not one of 3.1.1, 5'),
    ("[models]\nthreads = -1\n", "models.threads: expected an integer from 0 to 64, got -1"),
    ("[models]\nthreads = 65\n", "models.threads: expected an integer from 0 to 64, got 65"),
    ("[models]\nthreads = 100000\n", "models.threads: expected an integer from 0 to 64, got 100000"),
    ("[models]\nthreshold = 0\n", "models.threshold: expected a number greater than 0 and at most 1, got 0"),
    (
        "[models]\nthreshold = 1.5\n",
        "models.threshold: expected a number greater than 0 and at most 1, got 1.5",
    ),
    (
        "[models]\nthreshold = nan\n",
        "models.threshold: expected a number greater than 0 and at most 1, got nan",
    ),
    ("[models]\nmax_megapixels = 0\n", "models.max_megapixels: expected a number greater than 0, got 0"),
    ("[models]\nmax_file_mb = -1.0\n", "models.max_file_mb: expected a number greater than 0, got -1.0"),
    ('[models]\nvocabulary = ""\n', 'models.vocabulary: expected a path, got ""'),
    ("[models]\nvocabulary = 3\n", "models.vocabulary: expected a path, got 3"),
    ("[outbox]\nmax_events = 0\n", "outbox.max_events: expected an integer of 1 or more, got 0"),
    ("[outbox]\nmax_age_hours = 0\n", "outbox.max_age_hours: expected a number greater than 0, got 0"),
    ("[stats]\ninterval_seconds = -5\n", "stats.interval_seconds: expected a number greater than 0, got -5"),
    ('[logging]\nlevel = "verbose"\n', 'logging.level: "verbose" is not one of debug, info, warning, error'),
    (
        '[homeassistant]\nconcepts = "person"\n',
        'homeassistant.concepts: expected an array of strings, got "person"',
    ),
    ('[homeassistant]\nconcepts = ["dog", 5]\n', "homeassistant.concepts[2]: expected a string, got 5"),
    (
        '[homeassistant]\nconcepts = [""]\n',
        'homeassistant.concepts[1]: is empty; give a concept such as "person"',
    ),
    ("mqtt = 5\n", "mqtt: expected a table ([mqtt]), got 5"),
    ('[source]\ntype = "folder"\n', "source: expected an array of tables ([[source]]), got a table"),
    ("source = [1]\n", "source[1]: expected a table, got 1"),
    ('[[source]]\nname = "x"\n', 'source[1]: missing "type" (folder, camera, mqtt)'),
    ('[[source]]\ntype = 5\nname = "x"\n', "source[1]: unknown type 5 (folder, camera, mqtt)"),
    ('[[source]]\ntype = "folder"\nname = "x"\n', 'source[1]: missing required key "path"'),
    ('[[source]]\ntype = "mqtt"\nname = "x"\n', 'source[1]: missing required key "topic"'),
    ('[[hook]]\nname = "h"\nrun = ["/bin/true"]\n', 'hook[1]: missing required key "concept"'),
    # names
    (
        '[device]\nname = "My Pi"\n',
        'device.name: "My Pi" is not a valid name: use up to 64 lowercase letters, digits, "-" and "_", '
        "starting with a letter or digit",
    ),
    (
        '[[source]]\ntype = "camera"\nname = "-cam"\n',
        'source[1].name: "-cam" is not a valid name: use up to 64 lowercase letters, digits, "-" and "_", '
        "starting with a letter or digit",
    ),
    (
        f'[device]\nname = "{"a" * 65}"\n',
        f'device.name: "{"a" * 65}" is not a valid name: use up to 64 lowercase letters, digits, '
        '"-" and "_", starting with a letter or digit',
    ),
    (
        FOLDER + '[[source]]\ntype = "camera"\nname = "inbox"\n',
        'source[2].name: "inbox" is already the name of source[1]; give each its own',
    ),
    # folder sources
    (
        '[[source]]\ntype = "folder"\nname = "a"\npath = "/srv/a"\nafter = "move"\n',
        'source[1].move_to: required with after = "move": the folder to move tagged photos to',
    ),
    (
        '[[source]]\ntype = "folder"\nname = "a"\npath = "/srv/a"\nmove_to = "/srv/done"\n',
        'source[1].move_to: only used with after = "move" (after is "keep"); remove it or set after',
    ),
    (
        '[[source]]\ntype = "folder"\nname = "a"\npath = "/srv/a"\nafter = "move"\nmove_to = "/srv/a/"\n',
        "source[1].move_to: is the watched folder itself, so moved photos would be tagged again; "
        "use a subfolder (subfolders are not watched) or another folder",
    ),
    (
        FOLDER + '[[source]]\ntype = "folder"\nname = "b"\npath = "/srv/inbox/"\n',
        "source[2].path: source[1] already watches /srv/inbox",
    ),
    (
        '[[source]]\ntype = "folder"\nname = "a"\npath = "/srv/a"\nwatch = "fanotify"\n',
        'source[1].watch: "fanotify" is not one of auto, inotify, poll',
    ),
    (
        '[[source]]\ntype = "folder"\nname = "a"\npath = "/srv/a"\npoll_seconds = 0\n',
        "source[1].poll_seconds: expected a number greater than 0, got 0",
    ),
    (
        '[[source]]\ntype = "folder"\nname = "a"\npath = "/srv/a"\nsettle_seconds = -1\n',
        "source[1].settle_seconds: expected a number of 0 or more, got -1",
    ),
    # camera sources
    (
        '[[source]]\ntype = "camera"\nname = "c"\ninterval_seconds = -1\n',
        "source[1].interval_seconds: expected a number of 0 or more, got -1",
    ),
    (
        '[[source]]\ntype = "camera"\nname = "c"\nwidth = 0\n',
        "source[1].width: expected an integer of 1 or more, got 0",
    ),
    (
        '[[source]]\ntype = "camera"\nname = "a"\n[[source]]\ntype = "camera"\nname = "b"\n',
        "source[2].camera: camera 0 is already used by source[1]",
    ),
    # mqtt sources
    (
        '[[source]]\ntype = "mqtt"\nname = "m"\ntopic = "cam/+"\nqos = 2\n',
        "source[1].qos: 2 is not one of 0, 1",
    ),
    (
        '[[source]]\ntype = "mqtt"\nname = "m"\ntopic = "cam/+"\nqos = true\n',
        "source[1].qos: true is not one of 0, 1",
    ),
    (
        '[[source]]\ntype = "mqtt"\nname = "m"\ntopic = ""\n',
        "source[1].topic: is empty; give the topic the images arrive on",
    ),
    (
        '[[source]]\ntype = "mqtt"\nname = "m"\ntopic = "$share/g/cam"\n',
        'source[1].topic: give the plain topic and the group in share_group, not "$share/..."',
    ),
    (
        '[[source]]\ntype = "mqtt"\nname = "m"\ntopic = "cam"\nshare_group = "a/b"\n',
        'source[1].share_group: "a/b" must be non-empty, without "/", "+" or "#"',
    ),
    (
        '[[source]]\ntype = "mqtt"\nname = "m"\ntopic = "cam"\nmax_bytes = 0\n',
        "source[1].max_bytes: expected an integer of 1 or more, got 0",
    ),
    # mqtt
    ('[mqtt]\nhost = " "\n', "mqtt.host: is empty; give the broker's host name or IP address"),
    ('[mqtt]\nclient_id = ""\n', "mqtt.client_id: is empty; leave it out for the default edgetag-<device>"),
    (
        '[mqtt]\ntopic_prefix = "home/#"\n',
        'mqtt.topic_prefix: "home/#" contains an MQTT wildcard (+ or #); give a plain topic',
    ),
    ('[mqtt]\ntopic_prefix = "home/"\n', 'mqtt.topic_prefix: "home/" must not start or end with "/"'),
    ('[mqtt]\npassword = "x"\n', "mqtt.username: required with a password; give the MQTT user name"),
    (
        "[mqtt]\nreconnect_min_seconds = 120\nreconnect_max_seconds = 60\n",
        "mqtt.reconnect_min_seconds: 120 is more than reconnect_max_seconds (60); make it smaller or equal",
    ),
    (
        '[mqtt]\ntls = true\nca_file = "/nonexistent/ca.pem"\n',
        "mqtt.ca_file: /nonexistent/ca.pem does not exist",
    ),
    # models
    (
        '[models]\nclassifier = "none"\ndetector = "none"\nfaces = "NONE"\n',
        'models: classifier, detector and faces are all "none"; choose at least one model',
    ),
    # home assistant
    (
        '[homeassistant]\ndiscovery_prefix = ""\n',
        "homeassistant.discovery_prefix: is empty; give an MQTT topic",
    ),
    # hooks
    (
        '[[hook]]\nname = "h"\nconcept = "person"\n',
        "hook[1]: give publish (a message to send) or run (a program to start)",
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\nrun = []\n',
        'hook[1].run: is empty; give the program and its arguments, e.g. ["/usr/local/bin/notify", "door"]',
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\nrun = ["/bin/true"]\nmin_count = 0\n',
        "hook[1].min_count: expected an integer of 1 or more, got 0",
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\nrun = ["/bin/true"]\nmin_score = 1.1\n',
        "hook[1].min_score: expected a number from 0 to 1, got 1.1",
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\nrun = ["/bin/true"]\ntimeout_seconds = 0\n',
        "hook[1].timeout_seconds: expected a number greater than 0, got 0",
    ),
    (
        '[[hook]]\nname = "h"\nconcept = ""\nrun = ["/bin/true"]\n',
        'hook[1].concept: is empty; give a concept such as "person"',
    ),
    (
        FOLDER + '[[hook]]\nname = "h"\nconcept = "person"\nsource = "gate"\nrun = ["/bin/true"]\n',
        'hook[1].source: no source is named "gate" (sources: inbox)',
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\nsource = "gate"\nrun = ["/bin/true"]\n',
        'hook[1].source: no source is named "gate" (no sources are configured)',
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\n[hook.publish]\ntopic = "a/+"\n',
        'hook[1].publish.topic: "a/+" contains an MQTT wildcard (+ or #); give a plain topic',
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\npublish = "a/b"\n',
        'hook[1].publish: expected a table, got "a/b"',
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "person"\n[hook.publish]\n',
        'hook[1].publish: missing required key "topic"',
    ),
]


@pytest.mark.parametrize(("text", "expected"), RULES, ids=[expected.split(":")[0] for _, expected in RULES])
def test_each_rule_has_its_message(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


UNKNOWN_KEYS = [
    ('mqt = "x"\n', 'unknown key "mqt" (did you mean "mqtt"?)'),
    ("[[sources]]\n", 'unknown key "sources" (did you mean "source"?)'),
    ('[device]\nnmae = "x"\n', 'device: unknown key "nmae" (did you mean "name"?)'),
    ("[models]\nthread = 2\n", 'models: unknown key "thread" (did you mean "threads"?)'),
    ("[homeassistant]\nenable = true\n", 'homeassistant: unknown key "enable" (did you mean "enabled"?)'),
    ("[outbox]\nmax_event = 5\n", 'outbox: unknown key "max_event" (did you mean "max_events"?)'),
    ("[stats]\ninterval = 5\n", 'stats: unknown key "interval" (did you mean "interval_seconds"?)'),
    ('[logging]\nlevels = "info"\n', 'logging: unknown key "levels" (did you mean "level"?)'),
    (FOLDER + 'afetr = "keep"\n', 'source[1]: unknown key "afetr" (did you mean "after"?)'),
    (
        FOLDER + 'topic = "x"\n',
        'source[1]: unknown key "topic" for type = "folder" (it belongs to type = "mqtt")',
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "c"\nrun = ["x"]\ncooldown = 5\n',
        'hook[1]: unknown key "cooldown" (did you mean "cooldown_seconds"?)',
    ),
    (
        '[[hook]]\nname = "h"\nconcept = "c"\n[hook.publish]\ntopic = "t"\nretained = true\n',
        'hook[1].publish: unknown key "retained" (did you mean "retain"?)',
    ),
    ("[mqtt]\nzzz = 1\n", 'mqtt: unknown key "zzz" (docs/config.md lists the keys)'),
]


@pytest.mark.parametrize(("text", "expected"), UNKNOWN_KEYS)
def test_unknown_keys_are_errors_at_every_level(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(tmp_path, text) == [expected]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """
[mqtt]
port = "abc"
prot = 1

[device]
name = "My Pi"

[[source]]
type = "ftp"
name = "a"

[[source]]
type = "folder"
name = "b"
path = "/srv/b"
after = "trash"

[[hook]]
name = "h"
concept = "person"
run = ["/bin/true"]
publish = { topic = "x" }
"""
    found = problems(tmp_path, text)
    assert found == [
        'mqtt.port: expected an integer from 1 to 65535, got "abc"',
        'mqtt: unknown key "prot" (did you mean "port"?)',
        'device.name: "My Pi" is not a valid name: use up to 64 lowercase letters, digits, "-" and "_", '
        "starting with a letter or digit",
        'source[1]: unknown type "ftp" (folder, camera, mqtt)',
        'source[2].after: "trash" is not one of keep, delete, move',
        "hook[1]: give either publish or run, not both",
    ]
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{tmp_path / 'edgetag.toml'}: 6 problems:"
    assert lines[1:] == [f"  {problem}" for problem in found]


def test_a_source_with_a_problem_still_counts_as_a_name(tmp_path: Path) -> None:
    """No knock-on "no source named" for a source whose problem is elsewhere."""
    text = (
        '[[source]]\ntype = "folder"\nname = "inbox"\npath = "/srv/a"\nafter = "trash"\n'
        '[[hook]]\nname = "h"\nconcept = "person"\nsource = "inbox"\nrun = ["/bin/true"]\n'
    )
    assert problems(tmp_path, text) == ['source[1].after: "trash" is not one of keep, delete, move']


# --- what is accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(("written", "protocol"), [('"3.1.1"', "3.1.1"), ('"5"', "5"), ("5", "5")])
def test_protocol_accepts_both_spellings(tmp_path: Path, written: str, protocol: str) -> None:
    config = load(tmp_path, f'[mqtt]\nprotocol = {written}\nusername = "u"\n')
    assert config.mqtt.protocol == protocol


def test_numbers_accept_integers_and_limits_are_inclusive(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "[mqtt]\nport = 65535\nreconnect_min_seconds = 2\nreconnect_max_seconds = 2\n"
        "[models]\nthreshold = 1\nthreads = 0\n"
        '[[source]]\ntype = "camera"\nname = "cam"\ninterval_seconds = 0\n',
    )
    assert config.mqtt.port == 65535
    assert config.mqtt.reconnect_min_seconds == 2.0
    assert isinstance(config.mqtt.reconnect_min_seconds, float)
    assert config.models.threshold == 1.0 and isinstance(config.models.threshold, float)
    assert config.sources == [CameraSourceConfig(name="cam", interval_seconds=0.0)]


def test_move_to_may_be_a_subfolder_of_the_watched_folder(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        '[[source]]\ntype = "folder"\nname = "a"\npath = "/srv/a"\nafter = "move"\nmove_to = "/srv/a/done"\n',
    )
    assert config.sources == [
        FolderSourceConfig(name="a", path=Path("/srv/a"), after="move", move_to=Path("/srv/a/done"))
    ]


SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")  # real PEM certificates: ca_file is loaded


def test_tls_files_that_exist(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("PEM", encoding="utf-8")
    (tmp_path / "ca.pem").write_bytes(SYSTEM_CAS.read_bytes())
    config = load(
        tmp_path, '[mqtt]\ntls = true\nca_file = "ca.pem"\ncert_file = "cert.pem"\nkey_file = "key.pem"\n'
    )
    assert config.mqtt.ca_file == tmp_path / "ca.pem"
    assert config.mqtt.key_file == tmp_path / "key.pem"
    assert mqtt_port(config) == 8883


def test_tls_pairs_and_existence(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("PEM", encoding="utf-8")
    assert problems(tmp_path, '[mqtt]\ntls = true\ncert_file = "cert.pem"\n') == [
        "mqtt.key_file: required with cert_file: a client certificate needs both"
    ]
    assert problems(tmp_path, '[mqtt]\ntls = true\nkey_file = "cert.pem"\n') == [
        "mqtt.cert_file: required with key_file: a client certificate needs both"
    ]
    assert problems(tmp_path, '[mqtt]\ncert_file = "cert.pem"\nkey_file = "cert.pem"\n') == [
        "mqtt.cert_file: only used with tls = true; set tls = true or remove it",
        "mqtt.key_file: only used with tls = true; set tls = true or remove it",
    ]


def test_password_and_password_file_not_both(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\n", encoding="utf-8")
    text = '[mqtt]\nusername = "u"\npassword = "x"\npassword_file = "secret"\n'
    assert problems(tmp_path, text) == ["mqtt: give either password or password_file, not both"]
    missing = '[mqtt]\nusername = "u"\npassword_file = "nope"\n'
    assert problems(tmp_path, missing) == [f"mqtt.password_file: {tmp_path / 'nope'} does not exist"]


def test_paths_are_relative_to_the_file_and_tilde_is_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = load(
        tmp_path,
        '[device]\nstate_dir = "~/state"\n'
        '[models]\nvocabulary = "words.toml"\nclassifier = "mine.tflite"\n'
        'classifier_labels = "/abs/labels.txt"\n'
        '[[source]]\ntype = "folder"\nname = "a"\npath = "photos"\n',
    )
    assert config.device.state_dir == home / "state"
    assert config.models.vocabulary == tmp_path / "words.toml"
    assert config.models.classifier == str(tmp_path / "mine.tflite")
    assert config.models.classifier_labels == Path("/abs/labels.txt")
    assert config.models.detector == "nanodet-g"  # a pack name is not a path
    assert config.sources == [FolderSourceConfig(name="a", path=tmp_path / "photos")]


def test_parse_config_takes_a_dict_and_names_its_source() -> None:
    assert parse_config({"mqtt": {"host": "b"}}).mqtt.host == "b"
    with pytest.raises(InvalidConfigError, match=r"^from-test: mqtt\.host: expected a string, got 5$"):
        parse_config({"mqtt": {"host": 5}}, "from-test")


# --- flags -------------------------------------------------------------------------------------------

FILE_WITH_EVERYTHING_FLAGS_SET = """
[device]
name = "from-file"
state_dir = "/var/lib/from-file"
[mqtt]
host = "file.lan"
port = 1884
username = "file-user"
password = "inline"
[logging]
level = "warning"
"""


def test_flags_override_the_file(tmp_path: Path) -> None:
    secret = write(tmp_path, "s3cret\n", "secret")
    flags = ConfigFlags(
        mqtt_host="flag.lan",
        mqtt_port=8884,
        mqtt_username="flag-user",
        mqtt_password_file=secret,
        device="from-flag",
        state_dir=tmp_path / "state",
        log_level="debug",
    )
    config = load(tmp_path, FILE_WITH_EVERYTHING_FLAGS_SET, flags)
    assert config.device == DeviceConfig(name="from-flag", state_dir=tmp_path / "state")
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.username) == ("flag.lan", 8884, "flag-user")
    assert config.mqtt.password is None  # the flag's file replaces the inline password
    assert config.mqtt.password_file == secret
    assert mqtt_password(config, env={}) == "s3cret"
    assert config.logging.level == "debug"
    untouched = load(tmp_path, FILE_WITH_EVERYTHING_FLAGS_SET, ConfigFlags())
    assert (untouched.mqtt.host, untouched.mqtt.port, untouched.device.name) == (
        "file.lan",
        1884,
        "from-file",
    )


def test_problems_from_flags_name_the_flag(tmp_path: Path) -> None:
    found = problems(tmp_path, "", ConfigFlags(mqtt_port=0, device="Bad Name", log_level="loud"))
    assert found == [
        'device.name (--device): "Bad Name" is not a valid name: use up to 64 lowercase letters, digits, '
        '"-" and "_", starting with a letter or digit',
        "mqtt.port (--mqtt-port): expected an integer from 1 to 65535, got 0",
        'logging.level (--log-level): "loud" is not one of debug, info, warning, error',
    ]


def test_relative_flag_paths_are_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load(tmp_path, "", ConfigFlags(state_dir=Path("state")))
    assert config.device.state_dir == tmp_path / "state"


def test_watch_names_folders_uniquely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for folder in ("a/photos", "b/photos", "c/photos", "My Holiday Photos!", "x" * 70):
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    text = '[[source]]\ntype = "camera"\nname = "photos"\n'
    flags = ConfigFlags(
        watch=[
            Path("a/photos"),
            tmp_path / "b/photos",
            Path("c/photos/"),
            Path("My Holiday Photos!"),
            Path("x" * 70),
        ]
    )
    config = load(tmp_path, text, flags)
    assert config.sources == [
        CameraSourceConfig(name="photos"),
        FolderSourceConfig(name="photos-2", path=tmp_path / "a/photos"),
        FolderSourceConfig(name="photos-3", path=tmp_path / "b/photos"),
        FolderSourceConfig(name="photos-4", path=tmp_path / "c/photos"),
        FolderSourceConfig(name="my-holiday-photos", path=tmp_path / "My Holiday Photos!"),
        FolderSourceConfig(name="x" * 64, path=tmp_path / ("x" * 70)),
    ]


def test_watching_a_folder_twice_names_the_flag(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    flags = ConfigFlags(watch=[tmp_path / "photos", tmp_path / "photos"])
    assert problems(tmp_path, "", flags) == [
        f"source[2].path (--watch {tmp_path / 'photos'}): source[1] already watches {tmp_path / 'photos'}"
    ]


# --- secrets -----------------------------------------------------------------------------------------


def with_mqtt(**settings: Any) -> Config:
    return Config(mqtt=MqttConfig(username="u", **settings))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("123456", "a number"),
        ("0x1e240", "a number"),
        ("123456.789", "a number"),
        ("1979-05-27T07:32:00", "a date or time"),
        ("07:32:00", "a date or time"),
        ("true", "true or false"),
        ('["hunter2"]', "an array"),
        ('{ value = "hunter2" }', "a table"),
    ],
)
def test_a_wrong_password_value_is_never_shown(tmp_path: Path, value: str, kind: str) -> None:
    """`password = 123456` (unquoted) is still a password: the message names the key, not the value."""
    text = f'[mqtt]\nusername = "u"\npassword = {value}\n'
    with pytest.raises(InvalidConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value).replace(str(tmp_path), "<tmp>")
    assert list(caught.value.problems) == [
        f"mqtt.password: expected a string in quotes, got {kind} (not shown: it is a secret)"
    ]
    for secret in ("123456", "1979", "07:32", "hunter2"):
        assert secret not in message
    run = subprocess.run(
        [sys.executable, "-m", "edgetag", "check-config", "--config", str(tmp_path / "edgetag.toml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 2 and "mqtt.password: expected a string in quotes" in run.stderr
    for secret in ("123456", "1979", "07:32", "hunter2"):
        assert secret not in (run.stdout + run.stderr).replace(str(tmp_path), "<tmp>")


def test_password_inline_wins(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("from-systemd", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert mqtt_password(with_mqtt(password="inline"), env) == "inline"
    assert mqtt_password(with_mqtt(password_file=write(tmp_path, "from-file\n", "pw")), env) == "from-file"
    assert mqtt_password(with_mqtt(), env) == "from-systemd"
    assert mqtt_password(with_mqtt(), {}) is None
    assert mqtt_password(with_mqtt(), {"CREDENTIALS_DIRECTORY": str(tmp_path / "empty")}) is None


@pytest.mark.parametrize(
    ("content", "password"),
    [
        ("s3cret\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret\n\n", "s3cret\n"),
        (" s 3 ", " s 3 "),
    ],
)
def test_password_file_loses_one_trailing_newline(tmp_path: Path, content: str, password: str) -> None:
    assert mqtt_password(with_mqtt(password_file=write(tmp_path, content, "pw")), {}) == password


def test_unreadable_password_file_names_the_key_and_the_reason(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=rf"^mqtt\.password_file: cannot read {re.escape(str(tmp_path))}: Is a directory"
    ):
        mqtt_password(with_mqtt(password_file=tmp_path), {})
    gone = tmp_path / "gone"
    with pytest.raises(
        ConfigError, match=r"^mqtt\.password_file: cannot read .*gone: No such file or directory"
    ):
        mqtt_password(with_mqtt(password_file=gone), {})
    latin = tmp_path / "latin"
    latin.write_bytes(b"caf\xe9")
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: .*latin is not UTF-8 text$"):
        mqtt_password(with_mqtt(password_file=latin), {})
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: .*empty is empty; put the password in it$"):
        mqtt_password(with_mqtt(password_file=write(tmp_path, "\n", "empty")), {})


def test_an_empty_credential_means_no_password_and_a_set_one_needs_a_username(tmp_path: Path) -> None:
    """The unit always loads /etc/edgetag/mqtt-password, which the installer creates empty."""
    credential = tmp_path / "mqtt-password"
    credential.write_text("", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert mqtt_password(Config(), env) is None
    credential.write_text("s3cret\n", encoding="utf-8")
    assert mqtt_password(with_mqtt(), env) == "s3cret"
    with pytest.raises(ConfigError, match=r"mqtt-password: a password is set but mqtt.username is not"):
        mqtt_password(Config(), env)


def test_unreadable_credential_names_the_credential(tmp_path: Path) -> None:
    (tmp_path / "mqtt-password").mkdir()
    with pytest.raises(ConfigError, match=r"^\$CREDENTIALS_DIRECTORY/mqtt-password: cannot read"):
        mqtt_password(with_mqtt(), {"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_render_masks_the_password(tmp_path: Path) -> None:
    secret_file = write(tmp_path, "file-secret\n", "pw")
    shown = render_config(with_mqtt(password="hunter2"))
    assert 'password = "***"' in shown.splitlines()
    assert "hunter2" not in shown
    assert tomllib.loads(shown)["mqtt"]["password"] == "***"
    from_file = render_config(with_mqtt(password_file=secret_file))
    assert f'password_file = "{secret_file}"' in from_file.splitlines()
    assert "file-secret" not in from_file
    assert "password =" not in from_file
    assert (
        'password = "hunter2"'
        in render_config(with_mqtt(password="hunter2"), mask_secrets=False).splitlines()
    )


def test_render_shows_computed_defaults_as_comments() -> None:
    shown = render_config(Config(device=DeviceConfig(name="pi"), mqtt=MqttConfig(tls=True)))
    assert "# port = 8883  (the default)" in shown.splitlines()
    assert '# client_id = "edgetag-pi"  (the default)' in shown.splitlines()
    assert '# status_topic = "homeassistant/status"  (the default)' in shown.splitlines()
    assert "port" not in tomllib.loads(shown)["mqtt"]


# --- round trip --------------------------------------------------------------------------------------


def full_config_text(tmp_path: Path) -> str:
    """Every section, every key away from its default, two sources of each type and two hooks."""
    for name in ("cert.pem", "key.pem", "labels.txt"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    (tmp_path / "ca.pem").write_bytes(SYSTEM_CAS.read_bytes())
    return f"""
[device]
name = "garage-pi"
state_dir = "{tmp_path / "state"}"

[models]
classifier = "{tmp_path / "mine.tflite"}"
classifier_labels = "labels.txt"
detector = "none"
detector_labels = "labels.txt"
faces = "blazeface"
threads = 2
vocabulary = "words.toml"
threshold = 0.45
max_megapixels = 12.5
max_file_mb = 20

[mqtt]
host = "broker.lan"
port = 8884
protocol = "3.1.1"
client_id = "garage"
username = "edgetag"
password = "pa\\"ss\\\\word\\n\\u0001é"
keepalive = 30
topic_prefix = "home/tags"
tls = true
ca_file = "ca.pem"
cert_file = "cert.pem"
key_file = "key.pem"
reconnect_min_seconds = 0.5
reconnect_max_seconds = 30

[homeassistant]
enabled = false
discovery_prefix = "ha"
status_topic = "ha/state"
concepts = ["person", "dog", "teddy bear"]

[outbox]
max_events = 500
max_age_hours = 1.5

[stats]
interval_seconds = 15

[logging]
level = "debug"

[[source]]
type = "folder"
name = "inbox"
path = "/srv/inbox"
after = "move"
move_to = "/srv/inbox/done"
watch = "poll"
poll_seconds = 5
settle_seconds = 0
rescan_seconds = 600

[[source]]
type = "folder"
name = "nas"
path = "/mnt/nas"
after = "delete"
watch = "inotify"

[[source]]
type = "camera"
name = "garage"
interval_seconds = 0
width = 4056
height = 3040
camera = 0

[[source]]
type = "camera"
name = "yard"
camera = 1

[[source]]
type = "mqtt"
name = "front-door"
topic = "cameras/front/jpeg"
share_group = "taggers"
max_bytes = 2000000
qos = 0

[[source]]
type = "mqtt"
name = "esp32"
topic = "esp/+/jpeg"

[[hook]]
name = "visitor"
concept = "person"
min_score = 0.7
min_count = 2
source = "front-door"
cooldown_seconds = 0
timeout_seconds = 3

[hook.publish]
topic = "home/visitor"
payload = "{{\\"who\\": \\"someone\\"}}"
qos = 0
retain = true

[[hook]]
name = "dog"
concept = "dog"
run = ["/usr/local/bin/notify", "--title", "Dog's here", ""]
"""


def test_full_config_round_trips_through_render(tmp_path: Path) -> None:
    config = load(tmp_path, full_config_text(tmp_path))
    for f in dataclasses.fields(Config):  # the file really sets every section
        assert getattr(config, f.name) != getattr(Config(), f.name), f.name
    assert [type(s).__name__ for s in config.sources] == ["FolderSourceConfig"] * 2 + [
        "CameraSourceConfig"
    ] * 2 + ["MqttSourceConfig"] * 2
    assert config.mqtt.password == 'pa"ss\\word\n\x01é'
    assert config.hooks[0].publish == HookPublishConfig(
        topic="home/visitor", payload='{"who": "someone"}', qos=0, retain=True
    )
    text = render_config(config, mask_secrets=False)
    assert parse_config(tomllib.loads(text)) == config
    # and again from a file in another folder: rendered paths are absolute
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert load_config(write(elsewhere, text), env={}) == config


def test_defaults_round_trip() -> None:
    config = Config(sources=[FolderSourceConfig(name="a", path=Path("/a"))])
    assert parse_config(tomllib.loads(render_config(config, mask_secrets=False))) == config


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(min_size=1))
def test_any_string_survives_rendering(payload: str, password: str) -> None:
    config = Config(
        mqtt=MqttConfig(username="u", password=password),
        hooks=[HookConfig(name="h", concept="c", publish=HookPublishConfig(topic="t", payload=payload))],
    )
    assert parse_config(tomllib.loads(render_config(config, mask_secrets=False))) == config


# --- what the daemon asks ----------------------------------------------------------------------------


def test_state_dir_resolution_order(tmp_path: Path) -> None:
    chosen = Config(device=DeviceConfig(name="pi", state_dir=tmp_path / "chosen"))
    plain = Config(device=DeviceConfig(name="pi"))
    env = {
        "STATE_DIRECTORY": "/var/lib/edgetag:/var/lib/other",
        "XDG_STATE_HOME": "/home/u/.state",
        "HOME": "/home/u",
    }
    assert state_dir(chosen, env) == tmp_path / "chosen"
    assert state_dir(plain, env) == Path("/var/lib/edgetag")
    del env["STATE_DIRECTORY"]
    assert state_dir(plain, env) == Path("/home/u/.state/edgetag")
    env["XDG_STATE_HOME"] = "relative/is/ignored"
    assert state_dir(plain, env) == Path("/home/u/.local/state/edgetag")
    del env["XDG_STATE_HOME"]
    assert state_dir(plain, env) == Path("/home/u/.local/state/edgetag")
    assert state_dir(plain, {"STATE_DIRECTORY": ":/var/lib/x", "HOME": "/h"}) == Path("/var/lib/x")


def test_model_settings_and_image_limits() -> None:
    assert model_settings(Config()) == ModelSettings()
    assert image_limits(Config()) == ImageLimits()
    models = ModelsConfig(
        classifier="/m/c.tflite",
        classifier_labels=Path("/m/c.txt"),
        detector="none",
        detector_labels=Path("/m/d.txt"),
        faces="blazeface",
        threads=3,
        vocabulary=Path("/m/v.toml"),
        threshold=0.5,
        max_megapixels=12.5,
        max_file_mb=2.5,
    )
    assert model_settings(Config(models=models)) == ModelSettings(
        classifier="/m/c.tflite",
        classifier_labels=Path("/m/c.txt"),
        detector="none",
        detector_labels=Path("/m/d.txt"),
        faces="blazeface",
        threads=3,
        vocabulary=Path("/m/v.toml"),
    )
    assert image_limits(Config(models=models)) == ImageLimits(max_bytes=2_621_440, max_pixels=12_500_000)


def test_mqtt_port_and_client_id() -> None:
    device = DeviceConfig(name="pi")
    assert mqtt_port(Config(device=device)) == 1883
    assert mqtt_port(Config(device=device, mqtt=MqttConfig(tls=True))) == 8883
    assert mqtt_port(Config(device=device, mqtt=MqttConfig(tls=True, port=1883))) == 1883
    assert mqtt_client_id(Config(device=device)) == "edgetag-pi"
    assert mqtt_client_id(Config(device=device, mqtt=MqttConfig(client_id="mine"))) == "mine"


# --- the reference stays complete ---------------------------------------------------------------------


def doc_sections() -> dict[type[Any], str]:
    """Each config dataclass -> the heading of its section in docs/config.md."""
    sections: dict[type[Any], str] = {}
    for f in dataclasses.fields(Config):
        key = f.metadata.get("toml", f.name)
        hint = typing.get_type_hints(Config)[f.name]
        if typing.get_origin(hint) is list:
            variants = typing.get_args(typing.get_args(hint)[0]) or typing.get_args(hint)
            if len(variants) == 1:
                sections[variants[0]] = f"`[[{key}]]`"
            else:
                for variant in variants:
                    sections[variant] = f'`type = "{variant.type}"`'
        else:
            sections[hint] = f"`[{key}]`"
    sections[HookPublishConfig] = "`[hook.publish]`"
    return sections


def every_config_class() -> set[type[Any]]:
    """Every dataclass reachable from Config, so a new one cannot be forgotten by doc_sections."""
    found: set[type[Any]] = set()
    pending: list[Any] = [Config]
    while pending:
        hint = pending.pop()
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if hint not in found:
                found.add(hint)
                pending += typing.get_type_hints(hint).values()
        else:
            pending += typing.get_args(hint)
    return found - {Config}


def section_text(doc: str, heading: str) -> str:
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and line.endswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start:end])


def test_docs_list_every_key_in_its_section() -> None:
    doc = DOC.read_text(encoding="utf-8")
    sections = doc_sections()
    assert set(sections) == every_config_class()
    missing = [
        f"{heading} {f.name}"
        for cls, heading in sections.items()
        for f in dataclasses.fields(cls)
        if f"| `{f.metadata.get('toml', f.name)}` |" not in section_text(doc, heading)
    ]
    assert missing == []


def test_docs_example_is_a_valid_config() -> None:
    doc = DOC.read_text(encoding="utf-8")
    examples = re.findall(r"```toml\n(.*?)```", doc, re.DOTALL)
    assert len(examples) == 1
    config = parse_config(tomllib.loads(examples[0]), "docs/config.md")
    assert {type(source) for source in config.sources} == {
        FolderSourceConfig,
        CameraSourceConfig,
        MqttSourceConfig,
    }
    assert config.hooks[0].publish is not None and config.hooks[1].run is not None


def test_docs_list_every_flag() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for f in dataclasses.fields(ConfigFlags):
        assert f"`--{f.name.replace('_', '-')} " in doc, f.name


MQTT_SOURCE = '[[source]]\ntype = "mqtt"\nname = "cams"\ntopic = "{}"\n'


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("cams/#/jpeg", '"#" is allowed only as the last level'),
        ("cams/a+", '"+" must be a whole level'),
        ("cams/#a", '"#" is allowed only as the last level'),
        ("cams/\\u0000", "contains a NUL character"),
    ],
)
def test_an_invalid_subscription_filter_is_refused(tmp_path: Path, topic: str, why: str) -> None:
    """Issue 11, item 9: each of these killed a paho thread silently at run time."""
    (problem,) = problems(tmp_path, MQTT_SOURCE.format(topic))
    assert problem.startswith("source[1].topic: ") and why in problem


@pytest.mark.parametrize("topic", ["cams/+/jpeg", "cams/#", "+", "#", "a/+/b/#"])
def test_valid_subscription_filters_pass(tmp_path: Path, topic: str) -> None:
    load(tmp_path, MQTT_SOURCE.format(topic))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('[mqtt]\ntopic_prefix = "$SYS"\n', "mqtt.topic_prefix: "),
        ('[mqtt]\ntopic_prefix = "edge\\u0000tag"\n', "mqtt.topic_prefix: "),
        ('[homeassistant]\ndiscovery_prefix = "$SYS/ha"\n', "homeassistant.discovery_prefix: "),
    ],
)
def test_broker_topics_and_nul_are_refused_where_edgetag_publishes(
    tmp_path: Path, text: str, why: str
) -> None:
    (problem,) = problems(tmp_path, text)
    assert problem.startswith(why) and ("$" in problem or "NUL" in problem)


def test_a_ca_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("this is not a certificate\n", encoding="utf-8")
    (problem,) = problems(tmp_path, f'[mqtt]\ntls = true\nca_file = "{ca}"\n')
    assert problem.startswith("mqtt.ca_file: ") and "not a PEM certificate" in problem

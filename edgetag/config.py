"""The daemon's configuration: one TOML file, validated at start with messages that name the key.

The schema is the dataclasses below (defaults included); docs/config.md is the reference for users.
Unknown keys are errors. The common settings also work as command-line flags, so
`edgetag run --watch ./photos` needs no file at all.

Validation is driven by the dataclasses' type hints (plus the `range` in a field's metadata), so a
new setting is validated, rendered and round-tripped by adding a field; the semantic checks that
types cannot express (names, files, pairs of keys) are the `_check_*` functions. Every problem is
collected and reported at once: someone fixing a config file wants the whole list.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import socket
import ssl
import tomllib
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

from edgetag.errors import ConfigError
from edgetag.topics import NAME, filter_problem, slug

if TYPE_CHECKING:  # tagger and imaging pull in NumPy and Pillow; `check-config` needs neither
    from edgetag.imaging import ImageLimits
    from edgetag.tagger import ModelSettings

DEFAULT_CONFIG = Path("/etc/edgetag/edgetag.toml")
PASSWORD_CREDENTIAL = "mqtt-password"  # noqa: S105 (a name, not a password)
"""systemd credential name: `LoadCredential=mqtt-password:/etc/edgetag/mqtt-password`."""
MASK = "***"
MAX_THREADS = 64
"""Inference threads at most: more than a board's cores only costs memory (a Pi has 4)."""


def default_device_name() -> str:
    """The host name, made safe for topics and Home Assistant ids."""
    return slug(socket.gethostname()).replace("_", "-")[:64] or "edgetag"


@dataclass(frozen=True)
class Range:
    """The numbers a setting accepts; `words()` goes into the error message."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """True: `low` itself is not allowed (a threshold of 0 would keep everything)."""

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def words(self) -> str:
        low = "" if self.low is None else f"{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}"
        if low and high:
            return f"greater than {low} and at most {high}" if self.low_open else f"from {low} to {high}"
        if low:
            return f"greater than {low}" if self.low_open else f"of {low} or more"
        return f"of at most {high}"


def _at_least(low: float) -> dict[str, Any]:
    return {"range": Range(low)}


def _above(low: float, at_most: float | None = None) -> dict[str, Any]:
    return {"range": Range(low, at_most, low_open=True)}


def _between(low: float, high: float) -> dict[str, Any]:
    return {"range": Range(low, high)}


# --- the schema -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceConfig:
    name: str = field(default_factory=default_device_name)
    """Names this edgetag in topics and in Home Assistant: lowercase letters, digits, - and _."""
    state_dir: Path | None = None
    """Outbox and folder state. Default: $STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/edgetag,
    else ~/.local/state/edgetag."""


@dataclass(frozen=True)
class ModelsConfig:
    classifier: str = field(default="efficientnet-lite0", metadata={"model": True})
    """A pack model's name, a path to your own .tflite, or "none"."""
    classifier_labels: Path | None = None
    detector: str = field(default="nanodet-g", metadata={"model": True})
    detector_labels: Path | None = None
    faces: str = "blazeface"
    expressions: str = "emotion-fer"
    """The pack's expression model (only its "smiling" is used; needs faces), or "none"."""
    threads: int = field(default=0, metadata=_between(0, MAX_THREADS))
    """Inference threads; 0 means all cores."""
    vocabulary: Path | None = None
    """Your own concept table (TOML); default: the one edgetag ships."""
    threshold: float | None = field(default=None, metadata=_above(0, at_most=1))
    """One threshold for every concept instead of each concept's own (0 < threshold <= 1)."""
    max_megapixels: float = field(default=50.0, metadata=_above(0))
    """Photos with more pixels are refused before decoding (decompression bombs)."""
    max_file_mb: float = field(default=50.0, metadata=_above(0))
    """Larger files are refused unread; MB here is 1024 x 1024 bytes."""
    max_decode_mb: float = field(default=192.0, metadata=_above(0))
    """Photos that would take more memory to decode are refused from their header (MiB)."""


@dataclass(frozen=True)
class MqttConfig:
    host: str = "localhost"
    port: int | None = field(default=None, metadata=_between(1, 65535))
    """Default 1883, or 8883 with TLS."""
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None
    """Default edgetag-<device>. Must be stable: the broker keeps edgetag's session under it."""
    username: str | None = None
    password: str | None = field(default=None, metadata={"secret": True})
    password_file: Path | None = None
    """Or put the password in the systemd credential `mqtt-password`."""
    keepalive: int = field(default=60, metadata=_between(1, 65535))
    topic_prefix: str = "edgetag"
    tls: bool = False
    ca_file: Path | None = None
    """With tls: the CA that signed the broker's certificate. Default: the system's CAs."""
    cert_file: Path | None = None
    key_file: Path | None = None
    reconnect_min_seconds: float = field(default=1.0, metadata=_above(0))
    reconnect_max_seconds: float = field(default=60.0, metadata=_above(0))


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = True
    discovery_prefix: str = "homeassistant"
    status_topic: str | None = None
    """Default <discovery_prefix>/status; discovery is re-sent when Home Assistant says `online` there."""
    concepts: list[str] = field(default_factory=lambda: ["person"])
    """One binary sensor per concept per source (for example "front door person")."""


@dataclass(frozen=True)
class OutboxConfig:
    max_events: int = field(default=10_000, metadata=_at_least(1))
    max_age_hours: float = field(default=168.0, metadata=_above(0))


@dataclass(frozen=True)
class StatsConfig:
    interval_seconds: float = field(default=60.0, metadata=_above(0))


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True)
class FolderSourceConfig:
    """New files in a folder (not its subfolders)."""

    name: str
    path: Path
    type: Literal["folder"] = "folder"
    after: Literal["keep", "delete", "move"] = "keep"
    """What to do with a photo once its event is safely stored."""
    move_to: Path | None = None
    watch: Literal["auto", "inotify", "poll"] = "auto"
    poll_seconds: float = field(default=2.0, metadata=_above(0))
    settle_seconds: float = field(default=1.0, metadata=_at_least(0))
    """When polling: a file is complete once its size and time have not changed for this long."""
    rescan_seconds: float = field(default=60.0, metadata=_above(0))
    """Also look at the whole folder this often, in case a change notification was missed."""
    xmp: bool = False
    """Write each tagged photo's sentence and keywords into its XMP sidecar (a photo library folder)."""
    xmp_name: Literal["ext", "stem"] = "ext"
    """Sidecar name: photo.jpg.xmp (ext) or photo.xmp (stem)."""
    xmp_overwrite_description: bool = False
    """Replace a description or alt text the user wrote (kept by default)."""


@dataclass(frozen=True)
class CameraSourceConfig:
    """A Raspberry Pi camera through picamera2 (edgetag[camera], or Raspberry Pi OS's python3-picamera2)."""

    name: str
    type: Literal["camera"] = "camera"
    interval_seconds: float = field(default=60.0, metadata=_at_least(0))
    """Seconds between stills; 0 takes photos only on demand (the capture command topic)."""
    width: int = field(default=2028, metadata=_at_least(1))
    height: int = field(default=1520, metadata=_at_least(1))
    camera: int = field(default=0, metadata=_at_least(0))


@dataclass(frozen=True)
class MqttSourceConfig:
    """JPEG (or PNG, WebP) payloads on a topic: ESP32-CAMs, a Home Assistant automation, a script."""

    name: str
    topic: str
    type: Literal["mqtt"] = "mqtt"
    share_group: str | None = None
    """Subscribe as $share/<group>/<topic>: several edgetag devices split one stream, each image once."""
    max_bytes: int = field(default=10_000_000, metadata=_at_least(1))
    qos: Literal[0, 1] = 1


SourceConfig = FolderSourceConfig | CameraSourceConfig | MqttSourceConfig


@dataclass(frozen=True)
class HookPublishConfig:
    topic: str
    payload: str | None = None
    """Default: the tag event's JSON."""
    qos: Literal[0, 1] = 1
    retain: bool = False


@dataclass(frozen=True)
class HookConfig:
    """A rule: when a photo has a concept (with a score and count), publish something or run a program."""

    name: str
    concept: str
    min_score: float = field(default=0.0, metadata=_between(0, 1))
    """0 means "the concept is among the photo's tags" (its own threshold applies)."""
    min_count: int = field(default=1, metadata=_at_least(1))
    source: str | None = None
    """Only photos from this source; default: every source."""
    cooldown_seconds: float = field(default=60.0, metadata=_at_least(0))
    publish: HookPublishConfig | None = None
    run: list[str] | None = None
    """A program and its arguments (never a shell); the event JSON arrives on its stdin."""
    timeout_seconds: float = field(default=10.0, metadata=_above(0))


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    sources: list[SourceConfig] = field(default_factory=list, metadata={"toml": "source"})
    hooks: list[HookConfig] = field(default_factory=list, metadata={"toml": "hook"})


# --- loading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigFlags:
    """Command-line values that override the file; None (or an empty list) means "not given"."""

    watch: list[Path] = field(default_factory=list)
    """--watch DIR (repeatable): each adds a folder source named after the folder."""
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    mqtt_username: str | None = None
    mqtt_password_file: Path | None = None
    device: str | None = None
    state_dir: Path | None = None
    log_level: str | None = None


class InvalidConfigError(ConfigError):
    """Every problem found in one configuration, one `key.path: problem` line each."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = f"{source}: {self.problems[0]}"
        else:
            listed = "\n".join(f"  {problem}" for problem in self.problems)
            message = f"{source}: {len(self.problems)} problems:\n{listed}"
        super().__init__(message)


def load_config(
    path: Path | None, flags: ConfigFlags | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """The file (DEFAULT_CONFIG if there is one and no path is given), then the flags, validated.

    Relative paths in the file are relative to the file's folder (a service's working directory is
    `/`); relative paths in flags are relative to the current directory. `env` gives HOME for `~`.
    """
    env = os.environ if env is None else env
    file = path if path is not None else _default_file()
    data: dict[str, Any] = {}
    source, base_dir = "settings", None
    if file is not None:
        data = _read_toml(file)
        source, base_dir = str(file), file.absolute().parent
    origins = _apply_flags(data, flags or ConfigFlags(), env)
    return _parse(data, source, base_dir, env, origins)


def parse_config(
    data: Mapping[str, Any],
    source: str = "<config>",
    *,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate a TOML document (as tomllib returns it); raises InvalidConfigError listing every problem.

    `base_dir` anchors relative paths (load_config passes the file's folder); `env` gives HOME for `~`.
    """
    return _parse(data, source, base_dir, os.environ if env is None else env, {})


def _default_file() -> Path | None:
    try:
        DEFAULT_CONFIG.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        pass  # there but unreadable: reading it says why
    return DEFAULT_CONFIG


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no such config file; check the path (docs/config.md has an example to start from)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: is a folder; give the path of the TOML file") from None
    except OSError as error:
        raise ConfigError(
            f"{file}: cannot read the config file: {error.strerror or error}; "
            "check that edgetag's user may read it"
        ) from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{file}: not UTF-8 text (bad byte at offset {error.start}); save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as error:  # its message ends with "(at line L, column C)"
        raise ConfigError(f"{file}: not valid TOML: {error}") from None


def _apply_flags(data: dict[str, Any], flags: ConfigFlags, env: Mapping[str, str]) -> dict[str, str]:
    """Write the flags into the document (so they are validated like the file); returns key -> flag."""
    origins: dict[str, str] = {}

    def put(section: str, key: str, value: object, flag: str) -> None:
        table = data.setdefault(section, {})
        if isinstance(table, dict):  # else the file's own error is reported
            table[key] = value
            origins[f"{section}.{key}"] = flag

    def absolute(path: Path) -> str:
        return str(_expand_user(str(path), env).absolute())

    if flags.device is not None:
        put("device", "name", flags.device, "--device")
    if flags.state_dir is not None:
        put("device", "state_dir", absolute(flags.state_dir), "--state-dir")
    if flags.mqtt_host is not None:
        put("mqtt", "host", flags.mqtt_host, "--mqtt-host")
    if flags.mqtt_port is not None:
        put("mqtt", "port", flags.mqtt_port, "--mqtt-port")
    if flags.mqtt_username is not None:
        put("mqtt", "username", flags.mqtt_username, "--mqtt-username")
    if flags.mqtt_password_file is not None:
        put("mqtt", "password_file", absolute(flags.mqtt_password_file), "--mqtt-password-file")
        if isinstance(data.get("mqtt"), dict):
            data["mqtt"].pop("password", None)  # the flag wins over the file's inline password
    if flags.log_level is not None:
        put("logging", "level", flags.log_level, "--log-level")
    if flags.watch:
        sources = data.setdefault("source", [])
        if isinstance(sources, list):
            taken = {entry.get("name") for entry in sources if isinstance(entry, dict)}
            for folder in flags.watch:
                resolved = _expand_user(str(folder), env).resolve()
                name = _unique_name(slug(resolved.name).replace("_", "-") or "folder", taken)
                taken.add(name)
                sources.append({"type": "folder", "name": name, "path": str(resolved)})
                origins[f"source[{len(sources)}]"] = f"--watch {folder}"
    return origins


def _unique_name(base: str, taken: set[Any]) -> str:
    """`photos`, then `photos-2`, `photos-3`...; at most 64 characters (topics.NAME)."""
    name, number = base[:64], 2
    while name in taken:
        suffix = f"-{number}"
        name, number = base[: 64 - len(suffix)] + suffix, number + 1
    return name


def _expand_user(text: str, env: Mapping[str, str]) -> Path:
    """`~` and `~/x` from env's HOME; `~user/x` from the password database."""
    if text == "~" or text.startswith("~/"):
        return _home(env) / text[2:]
    return Path(text).expanduser()


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


# --- the generic validator --------------------------------------------------------------------------

_INVALID: Any = object()
"""What a conversion returns once it has reported its problem."""


_SCHEMAS: dict[type[Any], dict[str, tuple[dataclasses.Field[Any], Any]]] = {}


def _schema(cls: type[Any]) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """A dataclass's TOML key -> (field, resolved type hint), in field order."""
    if cls not in _SCHEMAS:
        hints = get_type_hints(cls)
        _SCHEMAS[cls] = {f.metadata.get("toml", f.name): (f, hints[f.name]) for f in dataclasses.fields(cls)}
    return _SCHEMAS[cls]


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _variants(tp: Any) -> dict[str, type[Any]]:
    """For a union of dataclasses told apart by their `type` field: type value -> class."""
    if not _is_union(tp) or not all(dataclasses.is_dataclass(arg) for arg in get_args(tp)):
        return {}
    variants: dict[str, type[Any]] = {}
    for cls in get_args(tp):
        (value,) = get_args(get_type_hints(cls)["type"])
        variants[value] = cls
    return variants


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _show(value: object) -> str:
    """A value as the user wrote it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 100 else f'{text[:96]}..."'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _kind(value: object) -> str:
    """What a value is, without the value: for messages about secrets."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return "a date or time"  # the only other TOML values


def threads_problem(threads: int) -> str | None:
    """Why a thread count cannot be used, or None; for `--threads` and the Tagger (the file's key
    is checked by its range)."""
    if 0 <= threads <= MAX_THREADS:
        return None
    return f"{threads} is not a thread count: give 0 (all cores) up to {MAX_THREADS}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Parser:
    """One validation run: converts the document and collects (key path, problem) pairs."""

    def __init__(self, base_dir: Path | None, env: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.env = env
        self.problems: list[tuple[str, str]] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def table(self, cls: type[Any], raw: object, path: str, siblings: Sequence[type[Any]] = ()) -> Any:
        if not isinstance(raw, dict):
            hint = f" ([{path}])" if path.isidentifier() else ""
            self.problem(path, f"expected a table{hint}, got {_show(raw)}")
            return _INVALID
        before = len(self.problems)
        schema = _schema(cls)
        values: dict[str, Any] = {}
        for key, item in raw.items():  # in file order, so the problems are too
            if key not in schema:
                self.problem(path, _unknown_key(key, cls, siblings))
                continue
            f, tp = schema[key]
            value = self.value(tp, item, _join(path, key), f.metadata)
            if value is not _INVALID:
                values[f.name] = value
        for key, (f, _) in schema.items():
            if key not in raw and _required(f):
                self.problem(path, f'missing required key "{key}"')
        if cls is Config:
            _check_across(raw, path, self)
        if len(self.problems) > before:
            return _INVALID
        result = cls(**values)
        check = _CHECKS.get(cls)
        if check is not None:
            check(result, path, self)
        return result

    def value(self, tp: Any, raw: object, path: str, meta: Mapping[str, Any]) -> Any:  # noqa: PLR0911
        if meta.get("secret"):
            return self.secret(tp, raw, path)
        if _is_union(tp) and not _variants(tp):  # X | None: None is "key left out" in TOML
            (inner,) = [arg for arg in get_args(tp) if arg is not type(None)]
            return self.value(inner, raw, path, meta)
        if get_origin(tp) is Literal:
            return self.literal(get_args(tp), raw, path)
        if get_origin(tp) is list:
            return self.array(get_args(tp)[0], raw, path)
        if dataclasses.is_dataclass(tp):
            return self.table(tp, raw, path)  # type: ignore[arg-type]
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            return self.expected(path, "true or false", raw)
        if tp is int or tp is float:
            return self.number(tp, raw, path, meta.get("range"))
        if tp is str:
            if not isinstance(raw, str):
                return self.expected(path, "a string", raw)
            return self.model(raw, path) if meta.get("model") else raw
        if tp is Path:
            if not isinstance(raw, str) or not raw.strip():
                return self.expected(path, "a path", raw)
            return self.path(raw, path)
        raise TypeError(f"config schema: {path} has a type the validator does not know: {tp!r}")

    def secret(self, tp: Any, raw: object, path: str) -> Any:
        """A secret is a string, and a problem with it never shows its value: `password = 123456`
        is a password, unquoted."""
        if tp not in (str, str | None):
            raise TypeError(f"config schema: secret {path} must be a string")
        if isinstance(raw, str):
            return raw
        self.problem(path, f"expected a string in quotes, got {_kind(raw)} (not shown: it is a secret)")
        return _INVALID

    def expected(self, path: str, what: str, raw: object) -> Any:
        self.problem(path, f"expected {what}, got {_show(raw)}")
        return _INVALID

    def number(self, tp: type[Any], raw: object, path: str, limits: Range | None) -> Any:
        kind = "an integer" if tp is int else "a number"
        wanted = f"{kind} {limits.words()}" if limits else kind
        accepted = (int,) if tp is int else (int, float)
        finite = not isinstance(raw, float) or math.isfinite(raw)
        if not isinstance(raw, accepted) or isinstance(raw, bool) or not finite:
            return self.expected(path, wanted, raw)
        if limits is not None and raw not in limits:
            return self.expected(path, wanted, raw)
        return tp(raw)

    def literal(self, options: tuple[Any, ...], raw: object, path: str) -> Any:
        for option in options:
            if type(raw) is type(option) and raw == option:  # type(): true must not pass for 1
                return option
            if isinstance(option, str) and type(raw) is int and str(raw) == option:
                return option  # protocol = 5 means "5"
        self.problem(path, f"{_show(raw)} is not one of {', '.join(str(o) for o in options)}")
        return _INVALID

    def array(self, item: Any, raw: object, path: str) -> Any:
        variants = _variants(item)
        if not isinstance(raw, list):
            if variants or dataclasses.is_dataclass(item):
                what = f"an array of tables ([[{path}]])"
            else:
                what = "an array of strings" if item is str else "an array"
            return self.expected(path, what, raw)
        before = len(self.problems)
        values = []
        for number, entry in enumerate(raw, start=1):
            where = f"{path}[{number}]"
            values.append(
                self.variant(variants, entry, where) if variants else self.value(item, entry, where, {})
            )
        return _INVALID if len(self.problems) > before else values

    def variant(self, variants: Mapping[str, type[Any]], raw: object, path: str) -> Any:
        kinds = ", ".join(variants)
        if not isinstance(raw, dict):
            return self.expected(path, "a table", raw)
        kind = raw.get("type")
        if kind is None:
            self.problem(path, f'missing "type" ({kinds})')
        elif not isinstance(kind, str) or kind not in variants:
            self.problem(path, f"unknown type {_show(kind)} ({kinds})")
        else:
            cls = variants[kind]
            return self.table(cls, raw, path, [c for c in variants.values() if c is not cls])
        return _INVALID

    def path(self, text: str, key: str) -> Any:
        try:
            path = _expand_user(text, self.env)
        except RuntimeError:
            self.problem(key, f"cannot expand {_show(text)}: no such user")
            return _INVALID
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path

    def model(self, text: str, key: str) -> Any:
        """A model is a pack name or a .tflite file; a file's path is resolved like other paths."""
        if not text.endswith(".tflite"):
            return text
        path = self.path(text, key)
        return path if path is _INVALID else str(path)


def _unknown_key(key: str, cls: type[Any], siblings: Sequence[type[Any]]) -> str:
    close = difflib.get_close_matches(key, list(_schema(cls)), n=1)
    if close:
        return f'unknown key "{key}" (did you mean "{close[0]}"?)'
    owners = [_variant_name(other) for other in siblings if key in _schema(other)]
    if owners:
        return f'unknown key "{key}" for type = "{_variant_name(cls)}" (it belongs to type = "{owners[0]}")'
    return f'unknown key "{key}" (docs/config.md lists the keys)'


def _variant_name(cls: type[Any]) -> str:
    return str(get_args(get_type_hints(cls)["type"])[0])


def _parse(
    data: Mapping[str, Any],
    source: str,
    base_dir: Path | None,
    env: Mapping[str, str],
    origins: Mapping[str, str],
) -> Config:
    parser = _Parser(base_dir, env)
    config = parser.table(Config, dict(data), "")
    if parser.problems:
        raise InvalidConfigError(source, [_line(path, message, origins) for path, message in parser.problems])
    assert isinstance(config, Config)
    return config


def _line(path: str, message: str, origins: Mapping[str, str]) -> str:
    """`mqtt.port (--mqtt-port): ...` when the value came from a flag."""
    for key, flag in origins.items():
        if path == key or path.startswith((f"{key}.", f"{key}[")):
            path = f"{path} ({flag})"
            break
    return f"{path}: {message}" if path else message


# --- semantic checks: what the types cannot say ------------------------------------------------------

Check = Callable[[Any, str, _Parser], None]
NAME_RULE = 'use up to 64 lowercase letters, digits, "-" and "_", starting with a letter or digit'


def _check_name(name: str, path: str, parser: _Parser) -> None:
    if not NAME.fullmatch(name):
        parser.problem(path, f"{_show(name)} is not a valid name: {NAME_RULE}")


def _check_topic(topic: str, path: str, parser: _Parser, *, prefix: bool = False) -> None:
    if not topic:
        parser.problem(path, "is empty; give an MQTT topic")
    elif "+" in topic or "#" in topic:
        parser.problem(path, f"{_show(topic)} contains an MQTT wildcard (+ or #); give a plain topic")
    elif "\0" in topic:
        parser.problem(path, "contains a NUL character; give a plain topic")
    elif topic.startswith("$"):
        parser.problem(path, f"{_show(topic)} starts with $, which brokers keep for themselves ($SYS)")
    elif prefix and (topic.startswith("/") or topic.endswith("/")):
        parser.problem(path, f'{_show(topic)} must not start or end with "/"')


def _not_pem_ca(file: Path) -> str | None:
    """Why OpenSSL cannot load `file` as CA certificates, or None (found now, not by a connect thread)."""
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(file))
    except (ssl.SSLError, OSError) as error:
        return getattr(error, "reason", None) or getattr(error, "strerror", None) or str(error)
    return None


def _check_device(device: DeviceConfig, path: str, parser: _Parser) -> None:
    _check_name(device.name, f"{path}.name", parser)


def _check_models(models: ModelsConfig, path: str, parser: _Parser) -> None:
    if all(
        choice.strip().lower() in ("", "none")
        for choice in (models.classifier, models.detector, models.faces)
    ):
        parser.problem(path, 'classifier, detector and faces are all "none"; choose at least one model')


def _check_mqtt(mqtt: MqttConfig, path: str, parser: _Parser) -> None:
    if not mqtt.host.strip():
        parser.problem(f"{path}.host", "is empty; give the broker's host name or IP address")
    if mqtt.client_id is not None and not mqtt.client_id.strip():
        parser.problem(f"{path}.client_id", "is empty; leave it out for the default edgetag-<device>")
    _check_topic(mqtt.topic_prefix, f"{path}.topic_prefix", parser, prefix=True)
    if mqtt.password is not None and mqtt.password_file is not None:
        parser.problem(path, "give either password or password_file, not both")
    if (mqtt.password is not None or mqtt.password_file is not None) and mqtt.username is None:
        parser.problem(f"{path}.username", "required with a password; give the MQTT user name")
    if mqtt.password_file is not None and not mqtt.password_file.exists():
        parser.problem(f"{path}.password_file", f"{mqtt.password_file} does not exist")
    if (mqtt.cert_file is None) != (mqtt.key_file is None):
        given, missing = ("cert_file", "key_file") if mqtt.key_file is None else ("key_file", "cert_file")
        parser.problem(f"{path}.{missing}", f"required with {given}: a client certificate needs both")
    for key in ("ca_file", "cert_file", "key_file"):
        file: Path | None = getattr(mqtt, key)
        if file is None:
            continue
        if not mqtt.tls:
            parser.problem(f"{path}.{key}", "only used with tls = true; set tls = true or remove it")
        elif not file.exists():
            parser.problem(f"{path}.{key}", f"{file} does not exist")
        elif key == "ca_file" and (why := _not_pem_ca(file)):
            parser.problem(f"{path}.{key}", f"{file} is not a PEM certificate file ({why})")
    if mqtt.reconnect_min_seconds > mqtt.reconnect_max_seconds:
        parser.problem(
            f"{path}.reconnect_min_seconds",
            f"{mqtt.reconnect_min_seconds:g} is more than reconnect_max_seconds "
            f"({mqtt.reconnect_max_seconds:g}); make it smaller or equal",
        )


def _check_homeassistant(ha: HomeAssistantConfig, path: str, parser: _Parser) -> None:
    _check_topic(ha.discovery_prefix, f"{path}.discovery_prefix", parser, prefix=True)
    if ha.status_topic is not None:
        _check_topic(ha.status_topic, f"{path}.status_topic", parser)
    for number, concept in enumerate(ha.concepts, start=1):
        if not concept.strip():
            parser.problem(f"{path}.concepts[{number}]", 'is empty; give a concept such as "person"')


def _check_folder(folder: FolderSourceConfig, path: str, parser: _Parser) -> None:
    _check_name(folder.name, f"{path}.name", parser)
    if folder.after == "move" and folder.move_to is None:
        parser.problem(f"{path}.move_to", 'required with after = "move": the folder to move tagged photos to')
    elif folder.after != "move" and folder.move_to is not None:
        parser.problem(
            f"{path}.move_to",
            f'only used with after = "move" (after is "{folder.after}"); remove it or set after',
        )
    elif folder.move_to is not None and _same_folder(folder.move_to, folder.path):
        parser.problem(
            f"{path}.move_to",
            "is the watched folder itself, so moved photos would be tagged again; "
            "use a subfolder (subfolders are not watched) or another folder",
        )
    if folder.xmp and folder.after != "keep":
        fate = "deleted, leaving" if folder.after == "delete" else "moved away from"
        parser.problem(
            f"{path}.xmp",
            f'cannot be used with after = "{folder.after}": each photo would be {fate} its sidecar; '
            'a library folder keeps its photos (after = "keep", the default), or turn xmp off',
        )
    for key in ("xmp_name", "xmp_overwrite_description"):
        if not folder.xmp and getattr(folder, key) != getattr(_FOLDER_DEFAULTS, key):
            parser.problem(f"{path}.{key}", "only used with xmp = true; set xmp = true or remove it")


_FOLDER_DEFAULTS = FolderSourceConfig(name="", path=Path())


def _check_camera(camera: CameraSourceConfig, path: str, parser: _Parser) -> None:
    _check_name(camera.name, f"{path}.name", parser)


def _check_mqtt_source(source: MqttSourceConfig, path: str, parser: _Parser) -> None:
    _check_name(source.name, f"{path}.name", parser)
    if not source.topic:
        parser.problem(f"{path}.topic", "is empty; give the topic the images arrive on")
    elif source.topic.startswith("$share/"):
        parser.problem(f"{path}.topic", 'give the plain topic and the group in share_group, not "$share/..."')
    elif problem := filter_problem(source.topic):
        parser.problem(f"{path}.topic", f"not a valid MQTT subscription filter: {problem}")
    if source.share_group is not None and (
        not source.share_group or any(c in source.share_group for c in "/+#")
    ):
        parser.problem(
            f"{path}.share_group", f'{_show(source.share_group)} must be non-empty, without "/", "+" or "#"'
        )


def _check_hook_publish(publish: HookPublishConfig, path: str, parser: _Parser) -> None:
    _check_topic(publish.topic, f"{path}.topic", parser)


def _check_hook(hook: HookConfig, path: str, parser: _Parser) -> None:
    if not hook.name.strip():
        parser.problem(f"{path}.name", "is empty; give the hook a name (the logs use it)")
    if not hook.concept.strip():
        parser.problem(f"{path}.concept", 'is empty; give a concept such as "person"')
    if hook.publish is not None and hook.run is not None:
        parser.problem(path, "give either publish or run, not both")
    elif hook.publish is None and hook.run is None:
        parser.problem(path, "give publish (a message to send) or run (a program to start)")
    if hook.run is not None and (not hook.run or not hook.run[0].strip()):
        parser.problem(
            f"{path}.run",
            'is empty; give the program and its arguments, e.g. ["/usr/local/bin/notify", "door"]',
        )


def _check_across(raw: Mapping[str, Any], path: str, parser: _Parser) -> None:
    """Checks between sources and hooks. They read the document itself, so a source with a problem
    of its own still counts (no knock-on "no source named" for a source that has a typo elsewhere)."""
    names: dict[str, int] = {}
    folders: dict[Path, int] = {}
    cameras: dict[int, int] = {}
    for number, entry in _entries(raw, "source"):
        where = _join(path, f"source[{number}]")
        name, kind, folder, camera = (
            entry.get("name"),
            entry.get("type"),
            entry.get("path"),
            entry.get("camera", 0),
        )
        if isinstance(name, str):
            if name in names:
                parser.problem(
                    f"{where}.name",
                    f'"{name}" is already the name of source[{names[name]}]; give each its own',
                )
            names.setdefault(name, number)
        if kind == "folder" and isinstance(folder, str) and folder.strip():
            watched = parser.path(folder, f"{where}.path")
            if watched is not _INVALID:
                watched = _real(watched)
                if watched in folders:
                    parser.problem(f"{where}.path", f"source[{folders[watched]}] already watches {watched}")
                folders.setdefault(watched, number)
        if kind == "camera" and type(camera) is int:
            if camera in cameras:
                parser.problem(
                    f"{where}.camera", f"camera {camera} is already used by source[{cameras[camera]}]"
                )
            cameras.setdefault(camera, number)
    for number, entry in _entries(raw, "hook"):
        wanted = entry.get("source")
        if isinstance(wanted, str) and wanted not in names:
            known = f"sources: {', '.join(names)}" if names else "no sources are configured"
            parser.problem(_join(path, f"hook[{number}].source"), f'no source is named "{wanted}" ({known})')


def _entries(raw: Mapping[str, Any], key: str) -> list[tuple[int, dict[str, Any]]]:
    items = raw.get(key)
    if not isinstance(items, list):
        return []
    return [(number, entry) for number, entry in enumerate(items, start=1) if isinstance(entry, dict)]


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def _same_folder(one: Path, other: Path) -> bool:
    return _real(one) == _real(other)


_CHECKS: dict[type[Any], Check] = {
    DeviceConfig: _check_device,
    ModelsConfig: _check_models,
    MqttConfig: _check_mqtt,
    HomeAssistantConfig: _check_homeassistant,
    FolderSourceConfig: _check_folder,
    CameraSourceConfig: _check_camera,
    MqttSourceConfig: _check_mqtt_source,
    HookPublishConfig: _check_hook_publish,
    HookConfig: _check_hook,
}


# --- what the rest of edgetag asks of a Config -------------------------------------------------------


def mqtt_port(config: Config) -> int:
    """The broker port: the configured one, else MQTT's default (8883 over TLS)."""
    if config.mqtt.port is not None:
        return config.mqtt.port
    return 8883 if config.mqtt.tls else 1883


def mqtt_client_id(config: Config) -> str:
    return config.mqtt.client_id or f"edgetag-{config.device.name}"


INCOMING_HEADROOM_BYTES = 1024 * 1024
"""Above the largest source's max_bytes: a payload a little too big still gets its too-large event."""


def max_incoming_bytes(config: Config) -> int:
    """The largest MQTT packet edgetag takes (v5 Maximum Packet Size; the broker drops bigger ones).

    Over an MQTT source's max_bytes a payload gets a too-large error event; over this it never
    reaches edgetag's memory at all. Commands, Home Assistant's status and echoes of edgetag's
    own events are small, so 1 MiB covers them when there is no MQTT source.
    """
    largest = max((s.max_bytes for s in config.sources if isinstance(s, MqttSourceConfig)), default=0)
    return largest + INCOMING_HEADROOM_BYTES


def mqtt_password(config: Config, env: Mapping[str, str] | None = None) -> str | None:
    """The inline password, else password_file's content, else the systemd credential, else None."""
    mqtt = config.mqtt
    if mqtt.password is not None:
        return mqtt.password
    if mqtt.password_file is not None:
        return _read_secret(mqtt.password_file, "mqtt.password_file")
    credentials = (os.environ if env is None else env).get("CREDENTIALS_DIRECTORY")
    if credentials:
        file = Path(credentials) / PASSWORD_CREDENTIAL
        if file.exists():
            # The service always loads this credential; the installer creates the file empty,
            # which means "no password".
            key = f"$CREDENTIALS_DIRECTORY/{PASSWORD_CREDENTIAL}"
            password = _read_secret(file, key, allow_empty=True)
            if password and mqtt.username is None:
                raise ConfigError(f"{key}: a password is set but mqtt.username is not; set both")
            return password or None
    return None


def _read_secret(file: Path, key: str, *, allow_empty: bool = False) -> str:
    """A password file's text minus one trailing newline (what `echo secret > file` adds)."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"{key}: cannot read {file}: {error.strerror or error}; "
            "check the path and that edgetag's user may read it"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {file} is not UTF-8 text") from None
    if text.endswith("\n"):
        text = text[:-1].removesuffix("\r")
    if not text and not allow_empty:
        raise ConfigError(f"{key}: {file} is empty; put the password in it")
    return text


def state_dir(config: Config, env: Mapping[str, str] | None = None) -> Path:
    """Where the outbox and folder state live (see DeviceConfig.state_dir for the order)."""
    env = os.environ if env is None else env
    if config.device.state_dir is not None:
        return config.device.state_dir
    systemd = [part for part in env.get("STATE_DIRECTORY", "").split(":") if part]
    if systemd:  # StateDirectory=a b gives "/var/lib/a:/var/lib/b"; edgetag's is the first
        return Path(systemd[0])
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "edgetag"
    return _home(env) / ".local" / "state" / "edgetag"


def model_settings(config: Config) -> ModelSettings:
    from edgetag.tagger import ModelSettings  # noqa: PLC0415

    models = config.models
    return ModelSettings(
        classifier=models.classifier,
        classifier_labels=models.classifier_labels,
        detector=models.detector,
        detector_labels=models.detector_labels,
        faces=models.faces,
        expressions=models.expressions,
        threads=models.threads,
        vocabulary=models.vocabulary,
    )


def image_limits(config: Config) -> ImageLimits:
    """max_megapixels is millions of pixels; max_file_mb is MiB, so the defaults equal ImageLimits()'s."""
    from edgetag.imaging import ImageLimits  # noqa: PLC0415

    return ImageLimits(
        max_bytes=round(config.models.max_file_mb * 1024 * 1024),
        max_pixels=round(config.models.max_megapixels * 1_000_000),
        max_decode_bytes=round(config.models.max_decode_mb * 1024 * 1024),
    )


# --- rendering ---------------------------------------------------------------------------------------


def render_config(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective configuration as TOML: what `edgetag check-config` prints.

    Unmasked, it parses back to an equal Config. Unset keys with a computed default are shown as
    comments with the value edgetag will use.
    """
    notes = {
        ("mqtt", "port"): _toml(mqtt_port(config)),
        ("mqtt", "client_id"): _toml(mqtt_client_id(config)),
        ("homeassistant", "status_topic"): _toml(
            config.homeassistant.status_topic or f"{config.homeassistant.discovery_prefix}/status"
        ),
    }
    lines = ["# edgetag's effective configuration: the file, then the command-line flags, then the defaults."]
    if mask_secrets:
        lines.append(f'# Secrets are shown as "{MASK}".')
    for key, (f, _) in _schema(Config).items():
        value = getattr(config, f.name)
        for item in value if isinstance(value, list) else [value]:
            header = f"[[{key}]]" if isinstance(value, list) else f"[{key}]"
            lines += ["", header, *_render_table(item, key, notes, mask_secrets)]
    return "\n".join(lines) + "\n"


def _render_table(obj: Any, prefix: str, notes: Mapping[tuple[str, str], str], mask: bool) -> list[str]:
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    keys = sorted(_schema(type(obj)).items(), key=lambda item: item[0] != "type")  # type first
    for key, (f, _) in keys:
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            tables.append((key, value))
        elif value is None:
            if (prefix, key) in notes:
                lines.append(f"# {key} = {notes[prefix, key]}  (the default)")
        else:
            lines.append(f"{key} = {_toml(MASK if mask and f.metadata.get('secret') else value)}")
    for key, value in tables:
        lines += ["", f"[{prefix}.{key}]", *_render_table(value, f"{prefix}.{key}", notes, mask)]
    return lines


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # TOML spells floats as Python's repr does, inf and nan included
    if isinstance(value, str | Path):
        return _toml_string(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_string(text: str) -> str:
    escaped = (
        _ESCAPES.get(char) or (f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char)
        for char in text
    )
    return '"' + "".join(escaped) + '"'

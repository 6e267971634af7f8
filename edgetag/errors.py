"""The errors edgetag reports to people, each with a message that says what to do.

Every error a user can cause (a bad photo, a bad model file, a bad setting) is one of these, so the
CLI and the daemon can print the message instead of a traceback and carry on with the next photo.
"""


class EdgetagError(Exception):
    """Base class: the message is meant for the user, not for a developer."""


class PhotoError(EdgetagError):
    """One photo cannot be tagged (missing, empty, truncated, not an image, too large...).

    `reason` is a short machine-friendly code (for error events and stats); the message says it in words.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ModelError(EdgetagError):
    """A model cannot be used: missing, corrupt, wrong checksum, labels that do not fit. Fatal at start-up."""


class ConfigError(EdgetagError):
    """A setting is wrong; the message names the key and the problem."""


class SidecarError(EdgetagError):
    """A photo's XMP sidecar cannot be written: not valid XMP (left untouched), or not writable.

    The photo itself is still tagged; only its sidecar is missing or unchanged.
    """

    def __init__(self, path: object, message: str) -> None:
        super().__init__(f"sidecar {path}: {message}")
        self.path = path

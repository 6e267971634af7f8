"""A Raspberry Pi camera through picamera2: a still every `interval_seconds`, and one on demand.

The adapter is thin on purpose: it configures a still mode, captures arrays and closes the camera,
through the few Picamera2 methods in `PicameraLike`. Tests drive this same code with an object that
behaves like Picamera2 (there is no camera on a build machine). picamera2 is optional: it is only
imported when a camera source is configured.

Frames are requested as "BGR888", which picamera2 delivers in R, G, B byte order (its format names
follow libcamera's little-endian convention), so they go straight to the models without a copy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from PIL import Image

from edgetag.config import CameraSourceConfig
from edgetag.events import event_id
from edgetag.sources.base import PhotoJob, ReportError, Submit

log = logging.getLogger(__name__)

FRAME_FORMAT = "BGR888"
RETRY_SECONDS = 30.0


class PicameraLike(Protocol):
    """The part of picamera2.Picamera2 edgetag uses."""

    def create_still_configuration(self, main: dict[str, Any]) -> Any: ...

    def configure(self, config: Any) -> None: ...

    def start(self) -> None: ...

    def capture_array(self, name: str = "main") -> Any: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


CameraFactory = Callable[[int], PicameraLike]


def open_picamera2(index: int) -> PicameraLike:
    """The real camera. Raises ImportError without picamera2, RuntimeError/IndexError without a camera."""
    from picamera2 import Picamera2  # noqa: PLC0415  (optional dependency, Raspberry Pi only)

    camera: PicameraLike = Picamera2(index)
    return camera


class CameraSource:
    def __init__(self, config: CameraSourceConfig, open_camera: CameraFactory = open_picamera2) -> None:
        self.config = config
        self.name = config.name
        self._open_camera = open_camera
        self._camera: PicameraLike | None = None
        self._trigger = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.present = False

    def start(self, submit: Submit, report_error: ReportError) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(submit, report_error), name=f"camera-{self.name}", daemon=True
        )
        self._thread.start()

    def capture_now(self) -> None:
        """Take a photo as soon as possible (the capture command topic)."""
        self._trigger.set()

    def stop(self) -> None:
        self._stopping.set()
        self._trigger.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self, submit: Submit, report_error: ReportError) -> None:
        while not self._stopping.is_set():
            try:
                self._open()
                self._capture_loop(submit)
            except Exception as error:  # noqa: BLE001  (any camera failure: report, close, retry)
                message = f"camera {self.config.camera}: {type(error).__name__}: {error}"
                log.error("%s: %s; retrying in %.0f s", self.name, message, RETRY_SECONDS)
                report_error(self.name, "camera-failed", message)
            finally:
                self._close()
            self._stopping.wait(RETRY_SECONDS)

    def _open(self) -> None:
        camera = self._open_camera(self.config.camera)
        self._camera = camera
        size = (self.config.width, self.config.height)
        camera.configure(camera.create_still_configuration(main={"size": size, "format": FRAME_FORMAT}))
        camera.start()
        self.present = True
        log.info("%s: camera %d started at %dx%d", self.name, self.config.camera, *size)

    def _capture_loop(self, submit: Submit) -> None:
        interval = self.config.interval_seconds
        while not self._stopping.is_set():
            triggered = self._trigger.wait(interval if interval > 0 else None)
            if self._stopping.is_set():
                return
            self._trigger.clear()
            if triggered or interval > 0:
                submit(self._capture())

    def _capture(self) -> PhotoJob:
        assert self._camera is not None
        taken = time.time_ns()
        frame = np.asarray(self._camera.capture_array("main"))
        if frame.ndim != 3 or frame.shape[2] < 3 or frame.dtype != np.uint8:
            raise RuntimeError(f"unexpected frame {frame.shape} {frame.dtype} from the camera")
        image = Image.fromarray(np.ascontiguousarray(frame[:, :, :3]), "RGB")
        when = datetime.fromtimestamp(taken / 1e9, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        return PhotoJob(
            source=self.name, name=f"{self.name}-{when}", id=event_id(self.name, taken), image=image
        )

    def _close(self) -> None:
        camera, self._camera = self._camera, None
        self.present = False
        if camera is None:
            return
        for action in (camera.stop, camera.close):
            try:
                action()
            except Exception as error:  # noqa: BLE001  (closing a failed camera may fail too)
                log.debug("%s: closing the camera: %s", self.name, error)

"""`python -m tests.system` (what `make system-test` runs): edgetag.service for real, in a container.

Builds or reuses a Debian bookworm image, boots it with systemd-nspawn, installs edgetag with
systemd/install.sh as a person would, and checks the running service against a Mosquitto broker on this
machine (see tests/system/scenario.py for the steps and docs/systemd.md for what they show). Needs root.
Exit status: 0 all checks passed, 1 a check failed, 2 it could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tests.broker import Broker, Subscriber
from tests.system.container import CommandFailed, Container
from tests.system.image import ImageError, Recipe, debian_mirror, ensure_host_tools, ensure_image
from tests.system.scenario import DEVICE, UNIT, SystemTest, timings_table

DEFAULT_CACHE = Path(os.environ.get("EDGETAG_SYSTEM_CACHE", "/var/tmp/edgetag-system"))
MACHINE = "edgetag-system-test"


def say(text: str) -> None:
    print(f"system-test: {text}" if not text.startswith(("-->", "    ")) else text, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.system", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help="the image and the apt and pip caches (default: $EDGETAG_SYSTEM_CACHE or %(default)s)",
    )
    parser.add_argument("--rebuild-image", action="store_true", help="make the image again with debootstrap")
    parser.add_argument("--mirror", help="the Debian mirror (default: the one this machine's apt uses)")
    return parser


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the container is powered off and unmounted."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        say("needs root (debootstrap, mount, systemd-nspawn): sudo make system-test")
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    cache: Path = args.cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another system test is using {cache}")
            return 2
        return _run(cache, args)


def _run(cache: Path, args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        ensure_host_tools(say)
        recipe = Recipe(mirror=args.mirror or debian_mirror())
        image = ensure_image(cache, recipe, rebuild=args.rebuild_image, say=say)
    except ImageError as error:
        say(str(error))
        return 2
    image_seconds = time.monotonic() - started
    binds = {cache / "apt-archives": "/var/cache/apt/archives", cache / "pip-cache": "/root/.cache/pip"}
    for host in binds:
        (host / "partial" if "apt" in host.name else host).mkdir(parents=True, exist_ok=True)
    container = Container(image, cache / "run", name=MACHINE, binds=binds, say=say)
    test: SystemTest | None = None
    with contextlib.ExitStack() as stack:
        try:
            say("booting the container")
            stack.enter_context(container)  # powered off and unmounted on the way out, whatever happens
            container.start()
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgetag-system-broker-")))
            broker = Broker(folder, auth=True)  # the credential is tested too: the broker wants a password
            stack.callback(broker.close)
            broker.start()
            say(f"broker on this machine: {broker.host}:{broker.port} (user {broker.username})")
            subscriber = Subscriber(broker, f"edgetag/{DEVICE}/#")
            stack.callback(subscriber.close)
            test = SystemTest(container, broker, subscriber, say)
            test.run()
        except (AssertionError, CommandFailed) as failure:
            say("FAILED")
            traceback.print_exc()
            print(f"\n{failure}\n", flush=True)
            if container.root.is_dir():
                print(container.diagnostics(UNIT), flush=True)
                with contextlib.suppress(CommandFailed, RuntimeError):  # power-off need not wait for it
                    container.run("systemctl", "kill", "--signal=KILL", UNIT, check=False)
            if test is not None:
                print(f"\nbroker log (end):\n{broker.log()[-3000:]}", flush=True)
            say(f"the container's changes are kept in {container.run_dir / 'upper'} until the next run")
            raise SystemExit(1) from None
    assert test is not None
    say(f"all checks passed in {time.monotonic() - started:.0f} s (image: {image_seconds:.0f} s)")
    print("\n".join(timings_table(test.timings)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

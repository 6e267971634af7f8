"""The whole daemon, measured: throughput, latency and memory, next to `edgetag tag` in the same run.

- Throughput: bursts of photos dropped into a watched folder; photos per second from the first event
  to the last as a subscriber receives them (folder -> decode -> infer -> outbox -> broker ->
  subscriber), alternating with the `edgetag tag --json` command over as many photos, from its first
  result line to its last (so neither counts its start-up), and with Tagger.tag_files() in this process
  (the same tagging with no output at all, a stricter reference); medians over the rounds, so all three
  see the same machine.
- Latency: photos dropped one at a time, slower than the daemon can tag them; from the moment a photo
  appears in the folder (its rename) to its event arriving at the subscriber: median and p95.
- Memory: the daemon's peak RSS (VmHWM) after a burst of 1000 photos.

Run: `.venv/bin/python benchmarks/bench_daemon.py [--burst 1000] [--paced 60]`. It starts its own
Mosquitto on a free port (the tests' fixture) and a real `edgetag run` process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from edgetag.tagger import ModelSettings, Tagger
from tests.broker import Broker
from tests.daemon_process import DaemonProcess, daemon_config

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.jpg"))


def make_photos(folder: Path, count: int) -> list[Path]:
    """`count` photos (the samples, round robin) with distinct names, ready to be moved in."""
    folder.mkdir(parents=True)
    photos = []
    for index in range(count):
        sample = SAMPLES[index % len(SAMPLES)]
        path = folder / f"{folder.name}-{index:05d}-{sample.name}"  # unique across batches
        path.write_bytes(sample.read_bytes())
        photos.append(path)
    return photos


def tagger_rate(tagger: Tagger, photos: list[Path]) -> float:
    started = time.perf_counter()
    for _ in tagger.tag_files(photos):
        pass
    return len(photos) / (time.perf_counter() - started)


def command_rate(folder: Path) -> float:
    """`edgetag tag --json FOLDER` as a user runs it: results per second, first line to last."""
    command = [sys.executable, "-m", "edgetag", "tag", "--json", str(folder)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        arrived = [time.perf_counter() for _ in process.stdout]  # the command flushes every line
    if process.returncode != 0 or len(arrived) < 2:
        raise RuntimeError(f"edgetag tag failed (exit {process.returncode}, {len(arrived)} results)")
    return (len(arrived) - 1) / (arrived[-1] - arrived[0])


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Arrivals:
    """Subscribes to the daemon's events and records when each photo's event arrived."""

    def __init__(self, broker: Broker) -> None:
        self.times: dict[str, float] = {}
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = broker.client("bench-subscriber")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.subscribe("edgetag/bench/events/#", qos=1)
        subscribed.wait(10)

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        name = json.loads(message.payload)["photo"]["name"]
        with self._cond:
            self.times.setdefault(name, time.perf_counter())
            self._cond.notify_all()

    def wait(self, count: int, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.times) >= count, timeout):
                raise TimeoutError(f"{len(self.times)} of {count} events after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=7, help="throughput rounds (daemon, edgetag tag, tag_files)"
    )
    parser.add_argument("--burst", type=int, default=300, help="photos per throughput round")
    parser.add_argument("--big-burst", type=int, default=1000, help="photos in the burst for peak memory")
    parser.add_argument("--paced", type=int, default=60, help="photos in the latency run")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between paced photos")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgetag-bench-") as scratch:
        work = Path(scratch)
        rounds = [make_photos(work / f"round{n}", args.burst) for n in range(args.rounds)]
        big = make_photos(work / "big", args.big_burst)
        paced = make_photos(work / "paced", args.paced)
        same_photos = make_photos(work / "tag", args.burst)  # what tag_files reads each round
        tagger = Tagger.from_settings(ModelSettings())
        list(tagger.tag_files(paced[:10]))  # warm-up
        inbox = work / "inbox"
        inbox.mkdir()
        broker = Broker(work / "broker")
        broker.start()
        try:
            arrivals = Arrivals(broker)
            config = daemon_config(
                broker, work / "state", device="bench",
                sources=[{"type": "folder", "name": "inbox", "path": str(inbox), "after": "delete"}],
            )  # fmt: skip
            daemon = DaemonProcess(work, config, name="bench").start()
            daemon.wait_log("MQTT connected", timeout=60)
            assert daemon.process is not None
            pid = daemon.process.pid
            rss_idle = peak_rss_mb(pid)

            # Latency: one photo at a time, slower than the daemon tags them.
            appeared: dict[str, float] = {}
            for photo in paced:
                appeared[photo.name] = time.perf_counter()
                photo.rename(inbox / photo.name)
                time.sleep(args.interval)
            arrivals.wait(len(paced), timeout=300)
            latencies = sorted((arrivals.times[n] - t) * 1000 for n, t in appeared.items())

            # Throughput: a burst into the daemon, then as many photos through Tagger.tag_files, in turn.
            daemon_rates, command_rates, tag_rates = [], [], []
            expected = len(paced)
            for batch in rounds:
                for photo in batch:
                    photo.rename(inbox / photo.name)
                expected += len(batch)
                arrivals.wait(expected, timeout=1800)
                times = sorted(arrivals.times[p.name] for p in batch)
                daemon_rates.append((len(times) - 1) / (times[-1] - times[0]))
                command_rates.append(command_rate(work / "tag"))
                tag_rates.append(tagger_rate(tagger, same_photos))

            # Memory: a big burst at once.
            for photo in big:
                photo.rename(inbox / photo.name)
            arrivals.wait(expected + len(big), timeout=1800)
            rss_burst = peak_rss_mb(pid)
            daemon.stop()
        finally:
            broker.close()
        daemon_rate, tag_rate = statistics.median(daemon_rates), statistics.median(tag_rates)
        command = statistics.median(command_rates)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"edgetag daemon benchmark: {machine}")
    print(f"throughput: {args.rounds} rounds of {args.burst} photos (samples, 300x451 to 965x512), medians")
    print(f"  daemon, folder -> broker -> subscriber: {daemon_rate:6.1f} photos/s")
    print(f"  edgetag tag --json DIR (the command):  {command:6.1f} photos/s")
    print(f"  Tagger.tag_files (no output):          {tag_rate:6.1f} photos/s")
    print(f"  daemon / edgetag tag:                  {daemon_rate / command:6.2f}x (goal >= 0.9x)")
    print(f"  daemon / Tagger.tag_files:             {daemon_rate / tag_rate:6.2f}x")
    ratios = sorted(d / c for d, c in zip(daemon_rates, command_rates, strict=True))
    print(f"  daemon / edgetag tag, each round:      {' '.join(f'{r:.2f}' for r in ratios)}")
    print(f"latency, {args.paced} photos {args.interval:.2f} s apart: file appears -> event arrives")
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"  median {statistics.median(latencies):6.1f} ms, p95 {p95:6.1f} ms")
    print(
        f"memory: peak RSS {rss_idle:.0f} MB after start, {rss_burst:.0f} MB after the burst (goal < 220 MB)"
    )


if __name__ == "__main__":
    main()

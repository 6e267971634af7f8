"""The fault-injection suite shares the daemon fixtures of tests/test_daemon.py."""

from tests.test_daemon import small_disk, start_daemon  # noqa: F401 (fixtures, found by pytest by name)

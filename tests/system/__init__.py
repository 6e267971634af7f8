"""The system test: edgetag.service installed by systemd/install.sh in a booted Debian, checked for real.

Run it with `make system-test` (root; see docs/systemd.md). Nothing here is collected by pytest.
"""

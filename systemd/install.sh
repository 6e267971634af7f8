#!/bin/sh
# Install edgetag as a systemd service on Raspberry Pi OS or Debian Bookworm (64-bit or 32-bit),
# from this source tree. Run as root:
#
#   sudo systemd/install.sh                      install (or upgrade) and start the service
#   sudo systemd/install.sh --no-start           install and enable, but do not start it now
#   sudo systemd/install.sh --uninstall          remove the service and /opt/edgetag; keep your
#                                                config (/etc/edgetag) and data (/var/lib/edgetag)
#   sudo systemd/install.sh --uninstall --purge  remove those too
#
# What it does: installs Python's venv and pip, procps (and, on 32-bit Pi OS, NumPy and Pillow, which
# have no wheels there) with apt; makes a venv in /opt/edgetag/venv that also sees the system's packages
# (so Raspberry Pi OS's picamera2 is visible); installs edgetag and its models into it; writes a commented
# /etc/edgetag/edgetag.toml (never over yours); installs, enables and starts edgetag.service.
# EDGETAG_SKIP_APT=1 skips the apt step (for images that already have the packages).
set -eu

PREFIX=/opt/edgetag
CONFIG_DIR=/etc/edgetag
UNIT=/etc/systemd/system/edgetag.service
SOURCE=$(cd "$(dirname "$0")/.." && pwd)

say() { printf 'edgetag install: %s\n' "$*"; }
fail() { printf 'edgetag install: %s\n' "$*" >&2; exit 1; }
systemd_running() { [ -d /run/systemd/system ]; }
# The userland's architecture, not the kernel's: 32-bit Raspberry Pi OS on a Pi 4 or 5 boots a 64-bit
# kernel, so there uname -m says aarch64 while Python, NumPy and every package are 32-bit (armhf).
userland() { dpkg --print-architecture 2>/dev/null || uname -m; }

uninstall() {
    purge=$1
    if systemd_running; then
        systemctl disable --now edgetag.service 2>/dev/null || true
    fi
    rm -f "$UNIT"
    if systemd_running; then systemctl daemon-reload; fi
    rm -rf "$PREFIX"
    if [ "$purge" = yes ]; then
        rm -rf "$CONFIG_DIR" /var/lib/edgetag /var/lib/private/edgetag
        say "removed edgetag, its config and its data"
    else
        say "removed edgetag; kept $CONFIG_DIR and /var/lib/edgetag (--purge removes them)"
    fi
}

install_packages() {
    [ "${EDGETAG_SKIP_APT:-0}" = 1 ] && return
    command -v apt-get >/dev/null || fail "apt-get not found: this installer is for Debian and Raspberry Pi OS"
    # procps: /bin/kill, which the unit's ExecReload runs (systemctl reload); minimal images lack it
    packages="python3 python3-venv python3-pip procps"
    case $(userland) in
        armhf|armv6l|armv7l) packages="$packages python3-numpy python3-pil" ;;  # no armhf wheels on PyPI
    esac
    missing=""
    for package in $packages; do
        dpkg-query --show --showformat='${db:Status-Status}' "$package" 2>/dev/null | grep -qx installed \
            || missing="$missing $package"
    done
    [ -n "$missing" ] || return 0
    say "installing$missing"
    # The package lists of a fresh image may be missing (Debian's cloud and container images) or
    # older than the mirror: apt-get install alone then fails with "Unable to locate package" or a 404.
    DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >/dev/null
}

venv_pip() {
    if [ "$(userland)" = armhf ] && [ "$(uname -m)" = aarch64 ]; then
        # A 32-bit userland on a 64-bit kernel: pip would read pyproject.toml's environment markers with
        # the kernel's aarch64 and ask for LiteRT, which has no 32-bit wheel. Let it see the armv7l
        # system it installs into (its wheel tags already say armv7l for a 32-bit Python).
        "$PREFIX/venv/bin/python" -c 'import platform, runpy, sys
platform.machine = lambda: "armv7l"
sys.argv[0] = "pip"
runpy.run_module("pip", run_name="__main__", alter_sys=True)' "$@"
    else
        "$PREFIX/venv/bin/pip" "$@"
    fi
}

install_edgetag() {
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "edgetag needs Python 3.11 or newer"
    if [ ! -x "$PREFIX/venv/bin/python" ]; then
        say "creating $PREFIX/venv (with the system's packages visible, for picamera2)"
        python3 -m venv --system-site-packages "$PREFIX/venv"
    fi
    say "installing edgetag from $SOURCE (this takes a while on a Pi)"
    venv_pip install --quiet --disable-pip-version-check --upgrade "$SOURCE"
    install -m 644 "$SOURCE/README.md" "$PREFIX/README.md"
}

install_config() {
    install -d -m 755 "$CONFIG_DIR"
    if [ ! -e "$CONFIG_DIR/edgetag.toml" ]; then
        install -m 644 "$SOURCE/systemd/edgetag.toml" "$CONFIG_DIR/edgetag.toml"
        say "wrote $CONFIG_DIR/edgetag.toml: edit it (broker, sources; a password goes in $CONFIG_DIR/mqtt-password), then: sudo systemctl restart edgetag"
    fi
    if [ ! -e "$CONFIG_DIR/mqtt-password" ]; then
        install -m 600 /dev/null "$CONFIG_DIR/mqtt-password"  # empty: no password
    fi
    "$PREFIX/venv/bin/edgetag" check-config --config "$CONFIG_DIR/edgetag.toml" >/dev/null
}

install_service() {
    start=$1
    install -m 644 "$SOURCE/systemd/edgetag.service" "$UNIT"
    if ! systemd_running; then
        say "systemd is not running here: the unit is in $UNIT; enable it with systemctl enable --now edgetag"
        return
    fi
    systemctl daemon-reload
    systemctl enable edgetag.service >/dev/null 2>&1
    if [ "$start" = yes ]; then
        systemctl restart edgetag.service
        say "edgetag is running: systemctl status edgetag; journalctl -u edgetag -f"
    else
        say "edgetag is enabled; it starts at the next boot (or: systemctl start edgetag)"
    fi
}

action=install start=yes purge=no
for argument in "$@"; do
    case $argument in
        --uninstall) action=uninstall ;;
        --purge) purge=yes ;;
        --no-start) start=no ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) fail "unknown option $argument (see --help)" ;;
    esac
done
[ "$(id -u)" = 0 ] || fail "run it as root (sudo $0 $*)"

if [ "$action" = uninstall ]; then
    uninstall "$purge"
else
    install_packages
    install_edgetag
    install_config
    install_service "$start"
fi

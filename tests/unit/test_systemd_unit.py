"""systemd/edgepose.service: the settings the daemon and install.sh rely on."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgepose.errors import ExitCode

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIT_PATH = REPO_ROOT / "systemd" / "edgepose.service"
UDEV_RULES = REPO_ROOT / "systemd" / "99-edgepose-coral.rules"
INSTALL_SH = REPO_ROOT / "install.sh"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (systemd keys repeat, e.g. DeviceAllow=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT_PATH.read_text())


@pytest.fixture(scope="module")
def service(unit) -> dict[str, list[str]]:
    return unit["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}= set {len(values)} times"
    return values[0]


def install_sh_value(name: str) -> str:
    """install.sh's `readonly NAME=value`, with the $NAMEs in it expanded."""
    match = re.search(rf"^readonly {name}=(\S+)$", INSTALL_SH.read_text(), re.MULTILINE)
    assert match, f"install.sh has no readonly {name}="
    return re.sub(r"\$(\w+)", lambda m: install_sh_value(m.group(1)), match.group(1))


def test_is_a_notify_service_with_a_frame_fed_watchdog(service):
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "WatchdogSec") == "30"
    assert int(one(service, "TimeoutStartSec")) >= 60  # model load on a Pi
    assert one(service, "TimeoutStopSec") == "10"


def test_runs_the_venv_entry_point_with_the_etc_config(service):
    assert one(service, "ExecStart") == (
        "/opt/edgepose/venv/bin/edgepose run --config /etc/edgepose/edgepose.toml"
    )
    assert one(service, "ExecStart") == (
        f"{install_sh_value('SYS_VENV')}/bin/edgepose run --config {install_sh_value('CONF_FILE')}"
    )


def test_restart_prevent_exit_status_matches_exit_codes(service):
    assert one(service, "Restart") == "on-failure"
    assert one(service, "RestartSec") == "5"
    codes = {int(code) for code in one(service, "RestartPreventExitStatus").split()}
    assert codes == {ExitCode.USAGE, ExitCode.CONFIG}
    assert ExitCode.UNAVAILABLE not in codes  # a camera or USB TPU may come back


def test_models_dir_matches_install_sh(service):
    env = dict(value.split("=", 1) for value in service["Environment"])
    assert env["EDGEPOSE_MODELS_DIR"] == install_sh_value("SYS_MODELS") == "/opt/edgepose/models"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_runs_as_the_user_install_sh_creates(service):
    assert one(service, "User") == install_sh_value("SERVICE_USER") == "edgepose"
    assert "DynamicUser" not in service
    # A missing group fails the unit: list only groups static in Debian's base-passwd.
    assert one(service, "SupplementaryGroups").split() == ["video"]


def test_state_and_config_directories(service):
    assert one(service, "StateDirectory") == "edgepose"
    assert one(service, "ConfigurationDirectory") == "edgepose"
    # The folders install.sh fills and --purge removes are the ones systemd sets up.
    assert install_sh_value("STATE_DIR") == "/var/lib/edgepose"
    assert install_sh_value("CONF_DIR") == "/etc/edgepose"
    assert install_sh_value("UNIT_FILE").endswith("/" + UNIT_PATH.name)


def test_hardening_that_keeps_the_camera_visible(service):
    assert "PrivateDevices" not in service
    assert "PrivateUsers" not in service
    for key, value in {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "LockPersonality": "yes", "RestrictRealtime": "yes",
    }.items():
        assert one(service, key) == value, key
    families = set(one(service, "RestrictAddressFamilies").split())
    assert {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} == families  # AF_UNIX: sd_notify


def test_device_allow_list_covers_camera_and_coral(service):
    assert one(service, "DevicePolicy") == "closed"
    allowed = {spec: access for spec, access in (value.split() for value in service["DeviceAllow"])}
    for spec in ("char-video4linux", "char-media", "char-dma_heap", "char-usb_device", "char-apex",
                 "/dev/vchiq"):
        assert allowed.get(spec) == "rw", spec


def test_device_paths_have_no_globs(service):
    """systemd globs char-/block- group names only; /dev/x* would match nothing."""
    for value in service["DeviceAllow"]:
        spec = value.split()[0]
        if spec.startswith("/dev/"):
            assert not set(spec) & set("*?["), spec


def test_no_credential_in_the_unit(service):
    """LoadCredential= fails the unit when the file is missing: install.sh adds it in a drop-in."""
    assert "LoadCredential" not in service


def test_installs_into_multi_user_target(unit):
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_udev_rules_cover_both_coral_usb_ids_and_apex():
    rules = UDEV_RULES.read_text()
    assert re.search(r'ATTR\{idVendor\}=="1a6e", ATTR\{idProduct\}=="089a".*GROUP="plugdev"', rules)
    assert re.search(r'ATTR\{idVendor\}=="18d1", ATTR\{idProduct\}=="9302".*GROUP="plugdev"', rules)
    assert 'SUBSYSTEM=="apex", GROUP="apex"' in rules


def analyzable_unit(tmp_path: Path) -> tuple[str, Path]:
    """systemd-analyze (the test skips without it) and a copy of the unit it can load:
    the venv does not exist here, so ExecStart points at a binary that does."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", UNIT_PATH.read_text(), flags=re.MULTILINE)
    copy = tmp_path / "edgepose.service"
    copy.write_text(text)
    return analyze, copy


def test_systemd_analyze_verify(tmp_path):
    analyze, copy = analyzable_unit(tmp_path)
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Unknown key" not in output and "Unknown section" not in output, output


def test_a_crash_loop_ends_in_a_failed_unit(unit):
    """With RestartSec=5 the default limit (5 starts in 10 s) never triggers."""
    unit_section = unit["Unit"]
    interval = int(one(unit_section, "StartLimitIntervalSec"))
    burst = int(one(unit_section, "StartLimitBurst"))
    restart_s = int(one(unit["Service"], "RestartSec"))
    assert burst >= 2 and interval > burst * restart_s * 4  # room for a slow model load each time
    assert "StartLimitIntervalSec" not in unit["Service"]  # [Unit] is where systemd reads it


def test_memory_is_capped_for_a_1gb_pi(service):
    value = one(service, "MemoryMax")
    match = re.fullmatch(r"(\d+)([KMG])", value)
    assert match, value
    mib = int(match[1]) * {"K": 1 / 1024, "M": 1, "G": 1024}[match[2]]
    assert 256 <= mib <= 768


def test_syscall_filter_drops_privileged_calls_and_mounts_are_private(service):
    filters = service["SystemCallFilter"]
    assert "@system-service" in filters
    assert any(f.startswith("~") and "@privileged" in f for f in filters)
    assert one(service, "PrivateMounts") == "yes"


def test_watchdog_policy_is_written_down_in_the_unit():
    text = UNIT_PATH.read_text()
    for phrase in ("Watchdog policy", "source retrying", "stuck inference", "STATUS="):
        assert phrase in text, phrase


def test_systemd_analyze_security_score(tmp_path):
    """`systemd-analyze security --offline=yes` (systemd >= 250): 1.6 at the time of writing."""
    analyze, copy = analyzable_unit(tmp_path)
    result = subprocess.run([analyze, "security", "--offline=yes", str(copy)],
                            capture_output=True, text=True, timeout=60)
    if "--offline" in result.stderr and result.returncode != 0:
        pytest.skip("this systemd-analyze has no --offline")
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 1.6

"""install.sh: the printed --dry-run plan, and the --demo orchestration with a stand-in daemon.

The plans run on a made-up machine (os-release, device-tree model, /etc/group
given through install.sh's hidden EDGEPOSE_* test overrides) so they read the
same on a laptop, in CI and on a Pi where edgepose is already installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO_ROOT / "install.sh"
RUN_TIMEOUT_S = 60

BOOKWORM = 'PRETTY_NAME="Raspberry Pi OS GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_CODENAME=bookworm\n'
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\nVERSION_CODENAME=trixie\n'
PI_MODEL = "Raspberry Pi 4 Model B Rev 1.5\0"
GROUPS_WITHOUT_APEX = "root:x:0:\nvideo:x:44:\nplugdev:x:46:\n"
GROUPS_WITH_APEX = GROUPS_WITHOUT_APEX + "apex:x:998:\n"

#: Commands that change a system or reach the network; on PATH as recorders
#: during dry runs, which must never call them.
SYSTEM_CHANGING = (
    "apt-get", "apt", "dpkg", "systemctl", "useradd", "usermod", "userdel", "groupadd",
    "curl", "wget", "gpg", "install", "udevadm", "journalctl", "sudo", "pip", "pip3",
    "debconf-set-selections", "chmod", "chown", "mosquitto", "rm", "mv", "mkdir", "cp",
    "ln", "apt-mark", "dkms", "modprobe",
)


@pytest.fixture()
def machine(tmp_path):
    """Environment for a dry run on a fresh Raspberry Pi 4 with 64-bit Raspberry Pi OS
    Bookworm and Python 3.11."""
    os_release = tmp_path / "os-release"
    os_release.write_text(BOOKWORM)
    model = tmp_path / "model"
    model.write_bytes(PI_MODEL.encode())
    group = tmp_path / "group"
    group.write_text(GROUPS_WITHOUT_APEX)
    rpi_issue = tmp_path / "rpi-issue"
    rpi_issue.write_text("Raspberry Pi reference 2024-11-19\n")
    apt_sources = tmp_path / "apt"
    (apt_sources / "sources.list.d").mkdir(parents=True)
    env = dict(os.environ)
    env.update(
        EDGEPOSE_OS_RELEASE=str(os_release),
        EDGEPOSE_DEVICE_MODEL=str(model),
        EDGEPOSE_RPI_ISSUE=str(rpi_issue),
        EDGEPOSE_APT_SOURCES_DIR=str(apt_sources),
        EDGEPOSE_GROUP_FILE=str(group),
        EDGEPOSE_PYTHON_VERSION="3.11",
        EDGEPOSE_ARCH="arm64",
        EDGEPOSE_KERNEL_RELEASE="6.6.51+rpt-rpi-v8",
        EDGEPOSE_PAGE_SIZE="4096",
        EDGEPOSE_ASSUME_FRESH="1",
        EDGEPOSE_SYSTEMD="yes",
        EDGEPOSE_POLICY_RC_D=str(tmp_path / "policy-rc.d"),
        EDGEPOSE_VENV=str(tmp_path / "dev-venv"),
        EDGEPOSE_CORAL_RECORD=str(tmp_path / "coral.sha256"),  # none yet: a first install
    )
    for name in ("NOTIFY_SOCKET", "SUDO_USER", "EDGEPOSE_MOSQUITTO_ENABLED"):
        env.pop(name, None)
    return env


def os_release(tmp_path: Path, text: str, name: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def not_a_pi(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    model = tmp_path / "model-x86"
    model.write_bytes(b"QEMU Standard PC\0")
    return {**env, "EDGEPOSE_DEVICE_MODEL": str(model)}


def install_sh(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["bash", str(INSTALL_SH), *args],
        env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO_ROOT,
    )
    if check:
        assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def plan(*args: str, env: dict[str, str]) -> list[str]:
    """The commands a dry run prints, without the "+ " prefix."""
    out = install_sh("--dry-run", *args, env=env).stdout
    return [line[2:] for line in out.splitlines() if line.startswith("+ ")]


def commands_with(lines: list[str], *words: str) -> list[str]:
    return [line for line in lines if all(word in line for word in words)]


# --- the script itself ---------------------------------------------------------


def test_script_is_executable():
    """README and .ci/run call ./install.sh, which a clean clone can run only with the x bit."""
    assert INSTALL_SH.stat().st_mode & stat.S_IXUSR


def test_script_parses():
    subprocess.run(["bash", "-n", str(INSTALL_SH)], check=True, timeout=RUN_TIMEOUT_S)


def test_shellcheck_is_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt install shellcheck)")
    result = subprocess.run([shellcheck, str(INSTALL_SH)], capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout


def test_help_names_every_mode(machine):
    out = install_sh("--help", env=machine).stdout
    for flag in ("--demo", "--test", "--uninstall", "--coral", "--coral-max", "--coral-pcie", "--coral-strict",
                 "--coral-sha256", "--with-mosquitto", "--purge", "--broker", "--duration", "--dry-run"):
        assert flag in out


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--demo", "--test"],
        ["--broker", "127.0.0.1:1883"],
        ["--demo", "--broker", "no-port"],
        ["--demo", "--duration", "soon"],
        ["--demo", "--duration", "0"],
        ["--demo", "--duration", "0.0"],
        ["--test", "--coral"],
        ["--demo", "--coral-pcie"],
        ["--coral-strict"],
        ["--purge"],
        ["--", "-x"],
        ["--demo", "--duration"],
    ],
)
def test_rejects_bad_arguments_with_usage_exit_code(machine, args):
    result = install_sh("--dry-run", *args, env=machine, check=False)
    assert result.returncode == 2, result.stderr
    assert "--help" in result.stderr


def test_only_overwrites_files_never_appends():
    """Re-running must not pile up lines (apt sources, drop-ins): no `>>` and no `tee -a`."""
    code = [line for line in INSTALL_SH.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if ">>" in line or "tee -a" in line]


# --- service install -------------------------------------------------------------


def test_pi_bookworm_installs_picamera2_and_a_system_site_packages_venv(machine):
    lines = plan(env=machine)
    apt = commands_with(lines, "apt-get install")
    assert apt and "python3-picamera2" in apt[0] and "python3-venv" in apt[0]
    assert "--no-install-recommends" in apt[0]
    assert commands_with(lines, "-m venv", "--system-site-packages", "/opt/edgepose/venv")
    pip = commands_with(lines, "pip install")
    assert len(pip) == 1 and "ai-edge-litert" in pip[0] and str(REPO_ROOT) in pip[0]
    assert "tflite-runtime" not in pip[0]
    assert commands_with(lines, "pip uninstall", "tflite-runtime")


def test_service_user_joins_only_groups_that_exist(machine):
    lines = plan(env=machine)
    assert commands_with(lines, "useradd", "--system", "edgepose")
    usermod = commands_with(lines, "usermod")
    assert usermod == ["usermod --append --groups video,plugdev edgepose"]


def test_installs_models_config_unit_and_starts_the_service(machine):
    lines = plan(env=machine)
    for model in sorted((REPO_ROOT / "models").glob("*.tflite")):
        assert f"install -m 0644 {model} /opt/edgepose/models/" in lines
    assert commands_with(lines, "config/edgepose.toml", "/etc/edgepose/edgepose.toml")
    assert commands_with(lines, "systemd/edgepose.service", "/etc/systemd/system/edgepose.service")
    tail = lines[-3:]
    assert tail == ["systemctl daemon-reload", "systemctl enable edgepose.service",
                    "systemctl restart edgepose.service"]


def test_existing_config_is_kept(machine):
    """Only ASSUME_FRESH=0 consults the real /etc; here the config exists on the made-up machine."""
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0"}
    out = install_sh("--dry-run", env=env).stdout
    if Path("/etc/edgepose/edgepose.toml").exists():
        assert "keeping your /etc/edgepose/edgepose.toml" in out
    else:
        assert "install -m 0640 -o root -g edgepose" in out
    # The example copy is refreshed either way, never the live config.
    assert "/etc/edgepose/edgepose.toml.example" in out


def test_not_a_pi_skips_picamera2(machine, tmp_path):
    lines = plan(env=not_a_pi(machine, tmp_path))
    assert not commands_with(lines, "picamera2")
    assert commands_with(lines, "apt-get install", "python3-venv")


def test_with_mosquitto_installs_the_broker(machine):
    apt = commands_with(plan("--with-mosquitto", env=machine), "apt-get install")
    assert "mosquitto" in apt[0].split() and "mosquitto-clients" in apt[0].split()


def test_without_systemd_only_enables_for_next_boot(machine):
    result = install_sh("--dry-run", env={**machine, "EDGEPOSE_SYSTEMD": "no"})
    lines = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert "systemctl enable edgepose.service" in lines
    assert not commands_with(lines, "systemctl restart")
    assert "systemd is not running" in result.stderr


def test_edgepose_is_on_path_through_a_wrapper_that_finds_the_models(machine):
    out = install_sh("--dry-run", env=machine).stdout
    assert "+ write /usr/local/bin/edgepose (mode 0755, root:root):" in out
    wrapper = [line[len("    | "):] for line in out.split("+ write /usr/local/bin/edgepose", 1)[1].splitlines()[1:6]]
    assert wrapper[0] == "#!/bin/sh"
    assert ': "${EDGEPOSE_MODELS_DIR:=/opt/edgepose/models}"' in wrapper
    assert 'exec /opt/edgepose/venv/bin/edgepose "$@"' in wrapper


def test_the_installing_admin_joins_group_edgepose_to_read_the_config(machine):
    """The config is root:edgepose 0640; the user behind sudo joins the group (not root)."""
    lines = plan(env={**machine, "SUDO_USER": "pi"})
    assert commands_with(lines, "install -m 0640 -o root -g edgepose", "/etc/edgepose/edgepose.toml")
    assert "usermod --append --groups edgepose pi" in lines
    assert not commands_with(plan(env=machine), "--groups edgepose")
    assert not commands_with(plan(env={**machine, "SUDO_USER": "root"}), "--groups edgepose")


def test_the_closing_hint_checks_as_the_service_user(machine):
    out = install_sh("--dry-run", env=machine).stdout
    assert "sudo -u edgepose edgepose check --config /etc/edgepose/edgepose.toml" in out


def test_ubuntu_on_a_pi_gets_no_picamera2_and_a_warning(machine, tmp_path):
    ubuntu = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n'
    env = {**machine, "EDGEPOSE_OS_RELEASE": os_release(tmp_path, ubuntu, "os-release-ubuntu"),
           "EDGEPOSE_RPI_ISSUE": str(tmp_path / "absent"), "EDGEPOSE_PYTHON_VERSION": "3.12"}
    result = install_sh("--dry-run", env=env)
    assert "picamera2" not in " ".join(commands_with(result.stdout.splitlines(), "apt-get install"))
    assert "not Raspberry Pi OS" in result.stderr


def test_raspberry_pi_os_is_also_recognised_by_its_apt_source(machine, tmp_path):
    sources = tmp_path / "apt-rpi"
    (sources / "sources.list.d").mkdir(parents=True)
    (sources / "sources.list.d" / "raspi.list").write_text(
        "deb http://archive.raspberrypi.com/debian/ bookworm main\n")
    env = {**machine, "EDGEPOSE_RPI_ISSUE": str(tmp_path / "absent"), "EDGEPOSE_APT_SOURCES_DIR": str(sources)}
    assert commands_with(plan(env=env), "apt-get install", "python3-picamera2")


# --- Coral -----------------------------------------------------------------------------

LIBEDGETPU_TF = re.compile(r"libedgetpu1-(std|max)_16\.0tf([0-9.]+)-\d+\.(\w+)_arm64\.deb")
WHEEL_TF = re.compile(r"tflite_runtime-([0-9.]+)-cp3(\d+)-cp3\d+-linux_aarch64\.whl")


def coral_plan(*args: str, env: dict[str, str]) -> tuple[list[str], str, str]:
    result = install_sh("--dry-run", *args, env=env)
    lines = [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]
    return lines, result.stdout, result.stderr


def tf_versions(lines: list[str]) -> tuple[str, str]:
    """The TensorFlow version of the libedgetpu .deb and of the wheel the plan downloads."""
    debs = {m.group(2) for line in commands_with(lines, "curl") for m in LIBEDGETPU_TF.finditer(line)}
    wheels = {m.group(1) for line in commands_with(lines, "curl") for m in WHEEL_TF.finditer(line)}
    assert len(debs) == 1 and len(wheels) == 1, lines
    return debs.pop(), wheels.pop()


def pins_table() -> list[list[str]]:
    """CORAL_PINS rows as install.sh holds them."""
    text = INSTALL_SH.read_text()
    body = text.split("CORAL_PINS='", 1)[1].split("'", 1)[0]
    return [line.split() for line in body.splitlines() if line.strip() and not line.startswith("#")]


def test_every_pinned_coral_pair_comes_from_one_tensorflow_version():
    """The table itself: per OS and Python, the .deb and the wheel name the same TF version
    in their file names as in the tf column, and the wheel matches the Python version."""
    pairs: dict[tuple[str, str], set[str]] = {}
    for codename, python, tf, kind, evidence, sha, url in pins_table():
        assert evidence in ("shipped", "unverified")
        assert sha == "-" or re.fullmatch(r"[0-9a-f]{64}", sha), sha
        assert url.startswith("https://github.com/")
        assert "pycoral" not in url
        if kind.startswith("libedgetpu1-"):
            m = LIBEDGETPU_TF.search(url)
            assert m and m.group(1) == kind.split("-")[1] and m.group(2) == tf and m.group(3) == codename
        elif kind == "tflite-runtime":
            m = WHEEL_TF.search(url)
            assert m and m.group(1) == tf and f"3.{m.group(2)}" == python
        else:
            assert kind == "gasket-dkms" and codename == "any"
            continue
        pairs.setdefault((codename, python), set()).add(tf)
    assert {("bookworm", "3.11"), ("trixie", "3.13")} <= set(pairs)
    assert all(len(tfs) == 1 for tfs in pairs.values()), pairs


def test_coral_bookworm_installs_a_matching_libedgetpu_and_runtime(machine):
    lines, out, err = coral_plan("--coral", env=machine)
    deb_tf, wheel_tf = tf_versions(lines)
    assert deb_tf == wheel_tf == "2.17.1"
    assert "TensorFlow 2.17.1 on both sides" in out
    assert commands_with(lines, "curl", "--proto =https --proto-redir =https",
                         "https://github.com/feranick/libedgetpu/releases/download/",
                         "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb")
    # Checked before use: against a pin, or (none yet) its sha256 shown and recorded.
    assert (commands_with(lines, "verify sha256", "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb.part")
            or commands_with(lines, "sha256", "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb.part",
                             "recorded in"))
    apt_local = commands_with(lines, "apt-get install", "/var/cache/edgepose/coral/libedgetpu1-std_")
    assert len(apt_local) == 1
    pip = commands_with(lines, "pip install")
    assert len(pip) == 1
    assert "/var/cache/edgepose/coral/tflite_runtime-2.17.1-cp311-cp311-linux_aarch64.whl" in pip[0]
    assert "'numpy<2'" in pip[0] and "ai-edge-litert" not in pip[0]
    assert commands_with(lines, "pip uninstall", "ai-edge-litert")
    assert commands_with(lines, "python -c", "import tflite_runtime")
    assert commands_with(lines, "99-edgepose-coral.rules", "/etc/udev/rules.d/")
    # USB only: no PCIe driver, no apex group created.
    assert not commands_with(lines, "gasket") and not commands_with(lines, "groupadd")
    assert "usermod --append --groups video,plugdev edgepose" in lines
    assert "packages.cloud.google.com" not in out
    assert "pycoral" not in out + err


def bookworm_unpinned() -> list[str]:
    """File names of the Bookworm USB pair that CORAL_PINS has no sha256 for."""
    return [row[6].rsplit("/", 1)[1] for row in pins_table()
            if row[0] == "bookworm" and row[3] != "libedgetpu1-max" and row[5] == "-"]


def test_coral_without_digests_trusts_the_first_download_and_records_it(machine):
    """The README's `sudo ./install.sh --coral`: files nobody pinned are downloaded over
    HTTPS from their release, their sha256 shown and recorded, and a real run goes on."""
    unpinned = bookworm_unpinned()
    if not unpinned:
        pytest.skip("CORAL_PINS pins the whole Bookworm pair now")
    lines, _, err = coral_plan("--coral", env=machine)
    assert "trust on first use for: " + " ".join(unpinned) in err
    assert "a real run stops here" not in err
    record = machine["EDGEPOSE_CORAL_RECORD"]
    for name in unpinned:
        part = f"/var/cache/edgepose/coral/{name}.part"
        curl = commands_with(lines, "curl", f"-o {part} https://github.com/")
        shown = commands_with(lines, f"sha256 {part}: shown and recorded in {record} as {name}")
        assert len(curl) == len(shown) == 1
        assert lines.index(curl[0]) < lines.index(shown[0]) < lines.index(f"mv -f {part} {part[:-5]}")


def test_coral_strict_refuses_unpinned_files(machine):
    """--coral-strict: no file without a pinned or given sha256 (the dry run says a real
    run would stop; the real-run check itself is tested on its own below)."""
    unpinned = bookworm_unpinned()
    if not unpinned:
        pytest.skip("CORAL_PINS pins the whole Bookworm pair now")
    _, _, err = coral_plan("--coral", "--coral-strict", env=machine)
    assert "no sha256 pinned" in err and "Strict mode" in err and "a real run stops here" in err
    assert "trust on first use" not in err


def test_coral_reruns_accept_only_the_bytes_recorded_at_the_first_download(machine, tmp_path):
    """A second `install.sh --coral` verifies each file against its recorded sha256."""
    record = Path(machine["EDGEPOSE_CORAL_RECORD"])
    names = bookworm_unpinned()
    if not names:
        pytest.skip("CORAL_PINS pins the whole Bookworm pair now")
    record.write_text("# recorded\n" + "".join(f"{str(k) * 64}  {name}\n" for k, name in enumerate(names, 1)))
    lines, out, err = coral_plan("--coral", env=machine)
    assert "trust on first use" not in err
    for k, name in enumerate(names, 1):
        assert f"verify sha256 /var/cache/edgepose/coral/{name}.part = {str(k) * 64} (recorded at its first download" \
            in "\n".join(lines)
        assert f"sha256 of {name}: {str(k) * 64}, recorded at its first download" in out


def test_coral_a_recorded_digest_that_disagrees_with_yours_stops_the_install(machine, tmp_path):
    name = "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb"
    if name not in bookworm_unpinned():
        pytest.skip("CORAL_PINS pins it now")
    Path(machine["EDGEPOSE_CORAL_RECORD"]).write_text(f"{'a' * 64}  {name}\n")
    sums = tmp_path / "mine.sha256"
    sums.write_text(f"{'b' * 64}  {name}\n")
    err = refused(["--coral", "--coral-sha256", str(sums)], machine)
    assert f"its first download had sha256 {'a' * 64}" in err and "b" * 64 in err and "Nothing was changed" in err


def test_coral_dry_run_on_a_pc_prints_the_plan_for_a_64_bit_raspberry_pi(machine, tmp_path):
    """README: `./install.sh --dry-run --coral` shows the download URLs, wherever it runs."""
    ubuntu = 'PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n'
    env = {**not_a_pi(machine, tmp_path), "EDGEPOSE_ARCH": "amd64", "EDGEPOSE_PYTHON_VERSION": "3.12",
           "EDGEPOSE_OS_RELEASE": os_release(tmp_path, ubuntu, "os-release-pc")}
    lines, out, err = coral_plan("--coral", env=env)
    assert "this is the plan for a 64-bit Raspberry Pi (arm64)" in err and "'amd64'" in err
    assert "a real --coral run here stops before changing anything" in err
    assert "Debian bookworm and Python 3.11" in out  # no pair for this PC's OS: the Pi default
    assert tf_versions(lines) == ("2.17.1", "2.17.1")
    assert commands_with(lines, "curl", "https://github.com/feranick/libedgetpu/releases/download/16.0TF2.17.1-1/")
    assert commands_with(lines, "curl", "https://github.com/feranick/TFlite-builds/releases/download/v2.17.1/")
    assert commands_with(lines, "apt-get install", "python3-picamera2"), "the rest of the plan is the Pi's too"
    pcie, _, _ = coral_plan("--coral-pcie", env=env)
    assert commands_with(pcie, "curl", "gasket-dkms_1.0-18.2_all.deb")


def test_coral_dry_run_on_a_bookworm_pc_plans_its_own_release(machine, tmp_path):
    env = {**not_a_pi(machine, tmp_path), "EDGEPOSE_ARCH": "amd64", "EDGEPOSE_PYTHON_VERSION": "3.13",
           "EDGEPOSE_OS_RELEASE": os_release(tmp_path, TRIXIE, "os-release-trixie")}
    lines, out, _ = coral_plan("--coral", env=env)
    assert "Debian trixie and Python 3.13" in out and commands_with(lines, "curl", ".trixie_arm64.deb")


def test_coral_trixie_installs_a_matching_pair_and_says_it_is_unverified(machine, tmp_path):
    env = {**machine, "EDGEPOSE_PYTHON_VERSION": "3.13",
           "EDGEPOSE_OS_RELEASE": os_release(tmp_path, TRIXIE, "os-release-trixie")}
    lines, _, err = coral_plan("--coral", env=env)
    deb_tf, wheel_tf = tf_versions(lines)
    assert deb_tf == wheel_tf
    assert commands_with(lines, "curl", ".trixie_arm64.deb")
    pip = commands_with(lines, "pip install")
    assert "cp313-cp313-linux_aarch64.whl" in pip[0] and "numpy<2" not in pip[0]
    assert "nobody is known to have run" in err


def test_coral_max_preseeds_and_installs_libedgetpu1_max(machine):
    lines, _, _ = coral_plan("--coral-max", env=machine)
    assert commands_with(lines, "apt-get install", "/libedgetpu1-max_16.0tf2.17.1-1.bookworm_arm64.deb")
    assert not commands_with(lines, "libedgetpu1-std")
    assert commands_with(lines, "libedgetpu1-max", "debconf-set-selections")
    assert tf_versions(lines)[0] == tf_versions(lines)[1]


def test_coral_pcie_adds_the_gasket_driver_and_group_apex(machine):
    lines, out, _ = coral_plan("--coral-pcie", env=machine)
    assert tf_versions(lines)[0] == tf_versions(lines)[1]
    assert commands_with(lines, "apt-get install", "dkms", "linux-headers-6.6.51+rpt-rpi-v8")
    assert commands_with(lines, "curl", "gasket-dkms_1.0-18.2_all.deb")
    assert commands_with(lines, "apt-get install", "/var/cache/edgepose/coral/gasket-dkms_1.0-18.2_all.deb")
    assert "groupadd --system apex" in lines
    assert "usermod --append --groups apex,video,plugdev edgepose" in lines
    assert commands_with(lines, "udevadm trigger", "apex")
    assert "reboot" in out


def test_coral_pcie_uses_an_existing_apex_group(machine, tmp_path):
    group = tmp_path / "group-apex"
    group.write_text(GROUPS_WITH_APEX)
    lines, _, _ = coral_plan("--coral", "--coral-pcie", env={**machine, "EDGEPOSE_GROUP_FILE": str(group)})
    assert not commands_with(lines, "groupadd")
    assert "usermod --append --groups video,plugdev,apex edgepose" in lines


def refused(args: list[str], env: dict[str, str]) -> str:
    """A dry run that stops: exit 1, and not one command planned."""
    result = install_sh("--dry-run", *args, env=env, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    return result.stderr


def test_coral_pcie_refuses_a_16k_page_kernel_before_changing_anything(machine):
    err = refused(["--coral-pcie"], {**machine, "EDGEPOSE_PAGE_SIZE": "16384",
                                      "EDGEPOSE_KERNEL_RELEASE": "6.6.51+rpt-rpi-2712"})
    assert "4 KB pages" in err and "kernel=kernel8.img" in err and "Nothing was changed" in err


@pytest.mark.parametrize("arch", ["armhf", "armel"])
@pytest.mark.parametrize("args", [["--coral"], []])
def test_32_bit_arm_is_refused_with_a_clear_message(machine, arch, args):
    err = refused(args, {**machine, "EDGEPOSE_ARCH": arch})
    assert "32-bit" in err and arch in err and "64-bit" in err


def test_a_real_coral_run_refuses_x86_64(machine):
    """Only the dry run plans for a Pi elsewhere; the real-run check (sourced, it only reads)."""
    result = sourced("DRY_RUN=0 CORAL=std CORAL_PCIE=0\ncoral_preflight\necho REACHED-THE-END",
                     {**machine, "EDGEPOSE_ARCH": "amd64"})
    assert result.returncode == 1 and "REACHED-THE-END" not in result.stdout
    assert "arm64" in result.stderr and "Nothing was changed" in result.stderr


@pytest.mark.parametrize(
    ("release", "version"),
    [(BOOKWORM, "3.12"), (TRIXIE, "3.11"),
     ('PRETTY_NAME="Ubuntu 24.04 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n', "3.12")],
)
def test_coral_refuses_an_os_and_python_without_a_pinned_pair(machine, tmp_path, release, version):
    env = {**machine, "EDGEPOSE_PYTHON_VERSION": version,
           "EDGEPOSE_OS_RELEASE": os_release(tmp_path, release, "os-release-x")}
    err = refused(["--coral"], env)
    assert f"Python {version}" in err and "bookworm (Python 3.11)" in err
    assert "Nothing was changed" in err and "ai-edge-litert" in err


def test_coral_max_on_trixie_is_refused_until_it_is_pinned(machine, tmp_path):
    env = {**machine, "EDGEPOSE_PYTHON_VERSION": "3.13",
           "EDGEPOSE_OS_RELEASE": os_release(tmp_path, TRIXIE, "os-release-trixie")}
    if any(row[0] == "trixie" and row[3] == "libedgetpu1-max" for row in pins_table()):
        pytest.skip("CORAL_PINS now has a trixie libedgetpu1-max row")
    assert "libedgetpu1-max" in refused(["--coral-max"], env)


def sourced(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run bash functions of install.sh (sourced: it defines them and runs nothing)."""
    return subprocess.run(["bash", "-c", f'source "{INSTALL_SH}"\n{script}'], env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO_ROOT)


def test_a_real_strict_run_refuses_unpinned_coral_files_and_a_default_one_trusts_them(machine):
    """The real-run branch of the check (DRY_RUN=0), called on its own: it only reads."""
    script = _unpinned_pair(wheel_sha="a" * 64) + "DRY_RUN=0 CORAL=std CORAL_PCIE=0 CORAL_STRICT={strict}\n" \
        "coral_preflight\necho REACHED-THE-END LIB=$CORAL_LIB_SHA"
    strict = sourced(script.format(strict=1), machine)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "REACHED-THE-END" not in strict.stdout
    assert "no sha256 pinned" in strict.stderr and "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb" in strict.stderr
    assert "Nothing was changed" in strict.stderr
    default = sourced(script.format(strict=0), machine)
    assert default.returncode == 0, default.stderr
    assert "REACHED-THE-END LIB=-" in default.stdout
    assert "trust on first use for: libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb." in default.stderr


def _stand_in_curl(tmp_path: Path, content: bytes) -> str:
    """A `curl` that writes `content` to its -o file and reaches no network."""
    payload = tmp_path / "payload"
    payload.write_bytes(content)
    return f"""curl() {{ local out=""; while (($#)); do [[ $1 == -o ]] && out=$2; shift; done; cp "{payload}" "$out"; }}
chown() {{ :; }}
"""


def test_a_first_download_is_recorded_and_a_rerun_accepts_only_the_same_bytes(machine, tmp_path):
    """fetch_pinned for real (DRY_RUN=0) in a scratch cache, with a stand-in curl: the first
    run shows and records the sha256; a re-run with the same bytes passes; changed bytes
    stop it and the changed file is removed."""
    cache, record = tmp_path / "cache", tmp_path / "etc" / "coral.sha256"
    env = {**machine, "EDGEPOSE_CORAL_CACHE": str(cache), "EDGEPOSE_CORAL_RECORD": str(record)}
    name = "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb"

    def install(content: bytes) -> subprocess.CompletedProcess:
        return sourced(_unpinned_pair() + _stand_in_curl(tmp_path, content)
                       + "DRY_RUN=0 CORAL=std CORAL_PCIE=0\ncoral_preflight\n"
                       'fetch_pinned "$CORAL_LIB_URL" "$CORAL_LIB_SHA"\necho "FETCHED=$FETCHED"', env)

    first = install(b"libedgetpu, first download")
    digest = hashlib.sha256(b"libedgetpu, first download").hexdigest()
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"sha256 of {name}: {digest}" in first.stdout and "trusted on first use" in first.stdout
    assert f"{digest}  {name}" in record.read_text().splitlines()
    assert (cache / name).read_bytes() == b"libedgetpu, first download"

    (cache / name).unlink()
    again = install(b"libedgetpu, first download")
    assert again.returncode == 0, again.stderr
    trusted = [line for line in again.stderr.splitlines() if "trust on first use for:" in line]
    assert not any(name in line for line in trusted), "the wheel is new, the .deb is not"
    assert f"{digest}, recorded at its first download" in again.stdout

    (cache / name).unlink()
    changed = install(b"libedgetpu, other bytes")
    assert changed.returncode == 1 and "sha256 mismatch" in changed.stderr and digest in changed.stderr
    assert not (cache / name).exists() and not (cache / f"{name}.part").exists()
    assert record.read_text().count(name) == 1, "the record keeps the first bytes"


def test_a_real_run_accepts_a_fully_pinned_pair_and_refuses_mixed_tf_versions(machine):
    rows = [
        f"bookworm 3.11 2.17.1 libedgetpu1-std shipped {'b' * 64} {RELEASES}/libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb",
        f"bookworm 3.11 2.18.0 tflite-runtime shipped {'a' * 64} {RELEASES}/tflite_runtime-2.18.0-cp311-cp311-linux_aarch64.whl",
    ]
    mixed = sourced("CORAL_PINS='\n" + "\n".join(rows) + "\n'\nDRY_RUN=0 CORAL=std CORAL_PCIE=0\ncoral_preflight", machine)
    assert mixed.returncode == 1 and "same TensorFlow version" in mixed.stderr
    rows[1] = rows[1].replace("2.18.0", "2.17.1")
    ok = sourced("CORAL_PINS='\n" + "\n".join(rows) + "\n'\nDRY_RUN=0 CORAL=std CORAL_PCIE=0\n"
                 "coral_preflight && echo TF=$CORAL_TF NUMPY=$CORAL_NUMPY", machine)
    assert ok.returncode == 0, ok.stderr
    assert "TF=2.17.1 NUMPY=numpy<2" in ok.stdout


def test_verify_sha256_accepts_the_pinned_file_and_removes_a_changed_one(machine, tmp_path):
    good = tmp_path / "good.deb"
    good.write_bytes(b"libedgetpu")
    digest = hashlib.sha256(b"libedgetpu").hexdigest()
    assert sourced(f'DRY_RUN=0; verify_sha256 "{good}" {digest}', machine).returncode == 0
    assert good.exists()
    bad = sourced(f'DRY_RUN=0; verify_sha256 "{good}" {"0" * 64}', machine)
    assert bad.returncode == 1 and "sha256 mismatch" in bad.stderr
    assert not good.exists()


def test_unknown_os_is_a_warning_not_an_error(machine, tmp_path):
    os_release = tmp_path / "os-release-fedora"
    os_release.write_text('PRETTY_NAME="Fedora Linux 40"\nID=fedora\nVERSION_CODENAME=""\n')
    result = install_sh("--dry-run", env={**machine, "EDGEPOSE_OS_RELEASE": str(os_release)})
    assert "not Debian" in result.stderr


# --- uninstall ------------------------------------------------------------------------


def test_uninstall_removes_the_service_and_keeps_config(machine):
    lines = plan("--uninstall", env=machine)
    assert "systemctl disable --now edgepose.service" in lines
    forget = "/opt/edgepose/venv/bin/edgepose forget --config /etc/edgepose/edgepose.toml"
    assert forget in lines, "the broker forgets the node and Home Assistant its device"
    assert lines.index(forget) > lines.index("systemctl disable --now edgepose.service")
    assert commands_with(lines, "rm -f", "/etc/systemd/system/edgepose.service")
    assert commands_with(lines, "rm -rf", "/opt/edgepose")
    assert "rm -f /usr/local/bin/edgepose" in lines
    assert not commands_with(lines, "rm", "/etc/edgepose"), "the config is kept"
    assert not commands_with(lines, "/var/lib/edgepose")
    assert not commands_with(lines, "userdel")


def test_uninstall_purge_also_removes_config_state_and_user(machine):
    lines = plan("--uninstall", "--purge", env=machine)
    assert commands_with(lines, "rm -rf", "/etc/edgepose", "/var/lib/edgepose")
    assert "userdel edgepose" in lines


# --- demo and test environments -----------------------------------------------------------


def test_demo_plan_starts_a_private_broker_and_runs_the_demo_config(machine):
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0"}
    out = install_sh("--dry-run", "--demo", "--duration", "3", env=env).stdout
    lines = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    assert commands_with(lines, "-m venv", machine["EDGEPOSE_VENV"])
    assert commands_with(lines, "pip install", "-e", "[litert]")
    broker = commands_with(lines, "mosquitto -c")
    assert broker and "127.0.0.1" in broker[0]
    run = lines[-1].split()
    assert run[:4] == [f"{machine['EDGEPOSE_VENV']}/bin/edgepose", "run", "--config", "config/demo.toml"]
    assert run[4] == "--broker" and run[5].startswith("127.0.0.1:")
    assert run[6:] == ["--duration", "3"]
    assert f"mosquitto_sub -h 127.0.0.1 -p {run[5].split(':')[1]} -t 'edgepose/#' -v" in out


def test_demo_with_a_broker_starts_none_and_passes_extra_arguments(machine):
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0"}
    lines = plan("--demo", "--broker", "mqtt.local:1884", "--", "--node-id", "kitchen", env=env)
    assert not commands_with(lines, "mosquitto")
    assert lines[-1].endswith("run --config config/demo.toml --broker mqtt.local:1884 --node-id kitchen")


def test_fresh_machine_gets_apt_packages_for_demo(machine):
    lines = plan("--demo", env=machine)
    apt = commands_with(lines, "apt-get install")
    assert apt and {"python3-venv", "mosquitto", "mosquitto-clients"} <= set(apt[0].split())


def test_installing_mosquitto_for_demo_or_tests_leaves_no_system_broker(machine):
    """Debian's package would start a broker on 1883: a policy-rc.d forbids starts for that
    apt call only, and the unit is left disabled as it was before."""
    for mode in ("--demo", "--test"):
        lines = plan(mode, env=machine)
        policy = machine["EDGEPOSE_POLICY_RC_D"]
        write = lines.index(f"write {policy} (mode 0755, root:root): exit 101 (no service starts)")
        apt = lines.index(commands_with(lines, "apt-get install", "mosquitto")[0])
        remove = lines.index(f"rm -f {policy}")
        disable = lines.index("systemctl disable --quiet mosquitto.service")
        assert write < apt < remove < disable


def test_an_existing_policy_rc_d_and_an_enabled_broker_are_left_alone(machine, tmp_path):
    policy = tmp_path / "policy-existing"
    policy.write_text("#!/bin/sh\nexit 101\n")
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0", "EDGEPOSE_ASSUME_MISSING": "mosquitto",
           "EDGEPOSE_POLICY_RC_D": str(policy), "EDGEPOSE_MOSQUITTO_ENABLED": "yes"}
    lines = plan("--demo", env=env)
    assert commands_with(lines, "apt-get install", "mosquitto")
    assert not commands_with(lines, str(policy))
    assert not commands_with(lines, "systemctl disable")


def test_with_mosquitto_keeps_the_broker_the_user_asked_for(machine):
    lines = plan("--with-mosquitto", env=machine)
    assert not commands_with(lines, "policy-rc.d") and not commands_with(lines, "systemctl disable")


def have_mosquitto() -> bool:
    """The broker as install.sh looks for it: on PATH or in /usr/sbin (not on a user's PATH)."""
    return bool(shutil.which("mosquitto")) or Path("/usr/sbin/mosquitto").exists()


def test_apt_is_skipped_when_everything_is_present(machine):
    if not have_mosquitto() or not shutil.which("mosquitto_sub"):
        pytest.skip("mosquitto is not installed here")
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0", "EDGEPOSE_PYTHON": sys.executable}
    lines = plan("--test", env=env)
    assert not commands_with(lines, "apt-get")


def test_test_mode_runs_pytest_with_the_arguments_after_double_dash(machine):
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0"}
    lines = plan("--test", "--", "-m", "not integration", "tests/unit", env=env)
    assert commands_with(lines, "pip install", "-e", "[litert,test]")
    assert lines[-1] == f"exec {machine['EDGEPOSE_VENV']}/bin/python -m pytest -m 'not integration' tests/unit"


def make_dev_venv(path: Path, extras: str, edgepose_script: str | None = None) -> None:
    """A stand-in .venv: the running interpreter plus a stamp that says it is current."""
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    version = "%d.%d" % sys.version_info[:2]
    digest = hashlib.sha256((REPO_ROOT / "pyproject.toml").read_bytes()).hexdigest()
    (path / ".edgepose-stamp").write_text(f"pyproject={digest}\npython={version}\nextras={extras}\n")
    if edgepose_script is not None:
        script = path / "bin" / "edgepose"
        script.write_text(f"#!{sys.executable}\n{edgepose_script}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_current_venv_is_not_reinstalled(machine, tmp_path):
    venv = tmp_path / "current-venv"
    make_dev_venv(venv, "litert,test")
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0", "EDGEPOSE_VENV": str(venv),
           "EDGEPOSE_PYTHON": sys.executable, "EDGEPOSE_PYTHON_VERSION": ""}
    out = install_sh("--dry-run", "--demo", env=env).stdout
    assert "is up to date" in out
    assert "pip install" not in out


def test_venv_missing_an_extra_is_topped_up(machine, tmp_path):
    venv = tmp_path / "demo-venv"
    make_dev_venv(venv, "litert")
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0", "EDGEPOSE_VENV": str(venv),
           "EDGEPOSE_PYTHON": sys.executable, "EDGEPOSE_PYTHON_VERSION": ""}
    lines = plan("--test", env=env)
    assert not commands_with(lines, "-m venv")
    assert commands_with(lines, "pip install", "[litert,test]")


# --- dry runs change nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--coral", "--with-mosquitto"],
        ["--coral-max"],
        ["--coral-pcie"],
        ["--uninstall", "--purge"],
        ["--demo", "--duration", "1"],
        ["--test", "--", "-q"],
    ],
)
def test_dry_run_never_runs_a_system_changing_command(machine, tmp_path, args):
    shims = tmp_path / "shims"
    shims.mkdir()
    calls = tmp_path / "calls.log"
    for name in SYSTEM_CHANGING:
        shim = shims / name
        shim.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 0\n')
        shim.chmod(0o755)
    env = {**machine, "PATH": f"{shims}{os.pathsep}{machine['PATH']}"}
    install_sh("--dry-run", *args, env=env)
    assert not calls.exists(), calls.read_text()
    assert not Path(machine["EDGEPOSE_VENV"]).exists()


# --- the demo for real, with a stand-in daemon ------------------------------------------------

FAKE_DAEMON = r'''
import signal, socket, sys, time
args = sys.argv[1:]
host, port = args[args.index("--broker") + 1].rsplit(":", 1)
socket.create_connection((host, int(port)), timeout=5).close()  # the broker is up
def stop(signum, frame):
    print("FAKE-DAEMON stopped by", signal.Signals(signum).name, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)  # before announcing itself: the test signals right after
print("FAKE-DAEMON", " ".join(args), flush=True)
if "--duration" in args:
    sys.exit(0)
while True:
    signal.pause()
'''


def demo_env(machine, tmp_path) -> dict[str, str]:
    if not have_mosquitto():
        pytest.fail("mosquitto is missing: `install.sh --test` installs it")
    venv = tmp_path / "fake-venv"
    make_dev_venv(venv, "litert", FAKE_DAEMON)
    env = {**machine, "EDGEPOSE_ASSUME_FRESH": "0", "EDGEPOSE_VENV": str(venv),
           "EDGEPOSE_PYTHON": sys.executable, "EDGEPOSE_PYTHON_VERSION": ""}
    return env


def port_is_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class OutputLines:
    """A pipe's lines, read by a thread: select() on a buffered pipe would miss
    the lines its buffer has already read ahead."""

    def __init__(self, stream):
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)  # end of output

    def wait_for(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if marker in line:
                return line
        raise AssertionError(f"no line with {marker!r} within {timeout} s; got:\n{''.join(self.seen)}")


@pytest.mark.integration
def test_demo_runs_the_daemon_against_a_private_broker_and_stops_it(machine, tmp_path):
    result = install_sh("--demo", "--duration", "1", env=demo_env(machine, tmp_path))
    line = next(l for l in result.stdout.splitlines() if l.startswith("FAKE-DAEMON"))
    args = line.split()[1:]
    assert args[:3] == ["run", "--config", "config/demo.toml"]
    assert args[-2:] == ["--duration", "1"]
    port = int(args[args.index("--broker") + 1].rsplit(":", 1)[1])
    assert "is up to date" in result.stdout
    assert not port_is_open(port), "the private broker outlived install.sh"


@pytest.mark.integration
def test_demo_stops_daemon_and_broker_on_sigterm(machine, tmp_path):
    # Its own process group, so a failed test can kill the daemon along with install.sh.
    proc = subprocess.Popen(
        ["bash", str(INSTALL_SH), "--demo"], env=demo_env(machine, tmp_path), cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    output = OutputLines(proc.stdout)
    try:
        line = output.wait_for("FAKE-DAEMON", RUN_TIMEOUT_S)
        port = int(line.split("--broker", 1)[1].split()[0].rsplit(":", 1)[1])
        proc.send_signal(signal.SIGTERM)
        output.wait_for("stopped by SIGTERM", RUN_TIMEOUT_S)
        assert proc.wait(timeout=RUN_TIMEOUT_S) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()  # its traps stop the daemon and the private broker
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group
            proc.wait()
        output.thread.join(RUN_TIMEOUT_S)  # EOF once every writer is gone
        proc.stdout.close()
    assert not port_is_open(port), "the private broker outlived install.sh"


RELEASES = "https://github.com/example/builds/releases/download/v1"


def _unpinned_pair(lib_sha: str = "-", wheel_sha: str = "-") -> str:
    return ("CORAL_PINS='\n"
            f"bookworm 3.11 2.17.1 libedgetpu1-std shipped {lib_sha} {RELEASES}/libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb\n"
            f"bookworm 3.11 2.17.1 tflite-runtime shipped {wheel_sha} {RELEASES}/tflite_runtime-2.17.1-cp311-cp311-linux_aarch64.whl\n"
            "'\n")


def test_coral_sha256_file_fills_the_unpinned_files_for_a_real_run(machine, tmp_path):
    """Pins the script could not have (no network where it was written) come from the
    user's own sha256sum lines; the real-run check then passes and uses them."""
    sums = tmp_path / "coral.sha256"
    sums.write_text(f"{'c' * 64}  libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb\n"
                    f"{'d' * 64} *downloads/tflite_runtime-2.17.1-cp311-cp311-linux_aarch64.whl\n")
    script = _unpinned_pair() + f"""DRY_RUN=0 CORAL=std CORAL_PCIE=0 CORAL_SHA256_FILE='{sums}'
coral_preflight
echo "LIB=$CORAL_LIB_SHA WHEEL=$CORAL_WHEEL_SHA"
"""
    result = sourced(script, machine)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"LIB={'c' * 64} WHEEL={'d' * 64}" in result.stdout
    assert "from " + str(sums) in result.stdout and "not pinned in this script" in result.stdout


@pytest.mark.parametrize("sums, problem", [
    ("", "no sha256 pinned"),  # names neither file: both still refused
    (f"{'c' * 64}  libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb\n", "no sha256 pinned"),  # one missing
    ("nothex  libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb\n", "is not a sha256"),
    (f"{'c' * 64}  libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb\n"
     f"{'e' * 64}  libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb\n", "two different sha256"),
])
def test_coral_sha256_file_never_lets_an_unverified_file_through(machine, tmp_path, sums, problem):
    path = tmp_path / "coral.sha256"
    path.write_text(sums)
    result = sourced(_unpinned_pair() + f"DRY_RUN=0 CORAL=std CORAL_PCIE=0 CORAL_SHA256_FILE='{path}'\n"
                     "coral_preflight\necho REACHED-THE-END", machine)
    assert result.returncode == 1 and "REACHED-THE-END" not in result.stdout
    assert problem in result.stderr and "Nothing was changed" in result.stderr


def test_coral_sha256_file_cannot_override_a_pin_of_the_script(machine, tmp_path):
    path = tmp_path / "coral.sha256"
    path.write_text(f"{'f' * 64}  tflite_runtime-2.17.1-cp311-cp311-linux_aarch64.whl\n")
    result = sourced(_unpinned_pair(lib_sha="b" * 64, wheel_sha="a" * 64)
                     + f"DRY_RUN=0 CORAL=std CORAL_PCIE=0 CORAL_SHA256_FILE='{path}'\ncoral_preflight", machine)
    assert result.returncode == 1 and "CORAL_PINS pins " + "a" * 64 in result.stderr


def test_coral_sha256_option_is_parsed_and_needs_coral(machine, tmp_path):
    path = tmp_path / "coral.sha256"
    path.write_text("")
    lines, out, err = coral_plan("--coral", "--coral-sha256", str(path), env=machine)
    assert "TensorFlow 2.17.1 on both sides" in out
    alone = install_sh("--dry-run", "--coral-sha256", str(path), env=machine, check=False)
    assert alone.returncode == 2 and "--coral-sha256 goes with --coral" in alone.stderr

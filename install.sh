#!/usr/bin/env bash
# edgepose installer: the systemd service on a Raspberry Pi / Debian node, or a
# demo / test environment in the checkout. Run with --help for the modes.
#
# Every change goes through run() or put_file(), so --dry-run prints the whole
# plan ("+ command") without touching the system or the network.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly REPO_DIR

# --- Layout of an installed node ---------------------------------------------
readonly SERVICE_USER=edgepose
readonly UNIT_NAME=edgepose.service
readonly PREFIX=/opt/edgepose
readonly SYS_VENV=$PREFIX/venv
readonly SYS_MODELS=$PREFIX/models
readonly SYS_CONSTRAINTS=$PREFIX/constraints.txt
readonly CONF_DIR=/etc/edgepose
readonly CONF_FILE=$CONF_DIR/edgepose.toml
readonly PASSWORD_FILE=$CONF_DIR/mqtt_password
readonly STATE_DIR=/var/lib/edgepose
readonly UNIT_FILE=/etc/systemd/system/$UNIT_NAME
readonly DROPIN_DIR=/etc/systemd/system/$UNIT_NAME.d
readonly CREDENTIALS_DROPIN=$DROPIN_DIR/10-credentials.conf
readonly UDEV_RULES=/etc/udev/rules.d/99-edgepose-coral.rules
readonly SYS_PYTHON=/usr/bin/python3

# --- Coral Edge TPU ------------------------------------------------------------
readonly CORAL_KEYRING=/etc/apt/keyrings/coral-edgetpu.gpg
readonly CORAL_KEY_URL=https://packages.cloud.google.com/apt/doc/apt-key.gpg
readonly CORAL_LIST=/etc/apt/sources.list.d/coral-edgetpu.list
readonly CORAL_REPO_LINE="deb [signed-by=$CORAL_KEYRING] https://packages.cloud.google.com/apt coral-edgetpu-stable main"
# libedgetpu was built against TF Lite 2.5; tflite-runtime 2.14.0 (its last
# release, numpy 1 only) is the newest runtime known to work with it.
readonly CORAL_RUNTIME_PIN='tflite-runtime==2.14.0'
readonly CORAL_NUMPY_PIN='numpy<2'
readonly CORAL_MAX_PYTHON_MINOR=11
readonly DEFAULT_RUNTIME='ai-edge-litert'

# --- Overrides ---------------------------------------------------------------
# For the dev modes: which Python makes the venv, and where it lives.
DEV_PYTHON=${EDGEPOSE_PYTHON:-python3}
DEV_VENV=${EDGEPOSE_VENV:-$REPO_DIR/.venv}
# Hidden, for tests (tests/unit/test_install.py); honoured with --dry-run only,
# so they can never make a real run act on a made-up machine.
OS_RELEASE=${EDGEPOSE_OS_RELEASE:-/etc/os-release}
DEVICE_MODEL=${EDGEPOSE_DEVICE_MODEL:-/proc/device-tree/model}
GROUP_FILE=${EDGEPOSE_GROUP_FILE:-}              # look groups up here instead of getent
PYTHON_VERSION_OVERRIDE=${EDGEPOSE_PYTHON_VERSION:-}
ASSUME_MISSING=" ${EDGEPOSE_ASSUME_MISSING:-} "  # apt package names treated as absent
ASSUME_FRESH=${EDGEPOSE_ASSUME_FRESH:-0}         # 1: no packages, user, venv or config yet
SYSTEMD_OVERRIDE=${EDGEPOSE_SYSTEMD:-}           # yes|no: is systemd running?

PROG=${0##*/}

usage() {
	cat <<EOF
Usage: $PROG [MODE] [OPTIONS] [-- ARGS]

Modes:
  (none)            install the edgepose service (Raspberry Pi OS / Debian with systemd;
                    as root or through sudo): user '$SERVICE_USER', venv $SYS_VENV,
                    models $SYS_MODELS, config $CONF_FILE, unit $UNIT_NAME
  --demo            run the demo in this checkout: .venv, a private mosquitto on a free
                    loopback port, 'edgepose run --config config/demo.toml' in the
                    foreground until Ctrl-C (ARGS go to 'edgepose run')
  --test            set up .venv with the test extras and run pytest (ARGS go to pytest)
  --uninstall       stop and remove the service, $PREFIX and the unit; keeps
                    $CONF_DIR and $STATE_DIR unless --purge

Options:
  --coral           Coral Edge TPU: Coral's apt repository, libedgetpu1-std, udev rules,
                    groups plugdev/apex, and $CORAL_RUNTIME_PIN with $CORAL_NUMPY_PIN in
                    the venv instead of $DEFAULT_RUNTIME (Python <= 3.$CORAL_MAX_PYTHON_MINOR only)
  --coral-max       as --coral with libedgetpu1-max (faster, runs hot)
  --with-mosquitto  also install a local mosquitto broker
  --purge           with --uninstall: also remove $CONF_DIR, $STATE_DIR, the user
                    and Coral's apt source
  --broker HOST:PORT  (--demo) use this broker instead of starting a private one
  --duration SECONDS  (--demo) stop after SECONDS (passed to 'edgepose run --duration')
  --dry-run         print every command ("+ ...") instead of running it
  -h, --help        this help

Examples:
  sudo ./$PROG                   install or upgrade the service (idempotent)
  sudo ./$PROG --coral           same, with a Coral USB/PCIe accelerator
  ./$PROG --demo                 try it on a laptop, no camera or root needed
  ./$PROG --test -- -m 'not integration' tests/unit
EOF
}

# --- Output --------------------------------------------------------------------
info() { printf '==> %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}
usage_error() {
	printf '%s: %s (see --help)\n' "$PROG" "$*" >&2
	exit 2
}

# A command line as a shell would read it back (for the dry-run plan).
quote_cmd() {
	local out="" arg
	for arg in "$@"; do
		if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
			out+=" $arg"
		else
			out+=" '${arg//\'/\'\\\'\'}'"
		fi
	done
	printf '%s' "${out# }"
}

# --- Actions (the only places that change anything) ---------------------------
DRY_RUN=0
AS_ROOT=()

run() {
	if ((DRY_RUN)); then
		printf '+ %s\n' "$(quote_cmd "$@")"
	else
		"$@"
	fi
}

run_root() { run "${AS_ROOT[@]}" "$@"; }

# put_file DEST MODE OWNER:GROUP < content. Replaces the file whole (never
# appends), so running the installer again leaves the same file.
put_file() {
	local dest=$1 mode=$2 owner=${3:-root:root} content tmp
	content=$(cat)
	if ((DRY_RUN)); then
		printf '+ write %s (mode %s, %s):\n' "$dest" "$mode" "$owner"
		printf '%s\n' "$content" | sed 's/^/    | /'
		return 0
	fi
	tmp=$(mktemp "$(dirname "$dest")/.edgepose.XXXXXX")
	printf '%s\n' "$content" >"$tmp"
	chmod "$mode" "$tmp"
	chown "$owner" "$tmp"
	mv -f "$tmp" "$dest"
}

# --- Facts about this machine (read-only, also in dry-run) ---------------------
os_field() { # KEY -> value from os-release, unquoted
	[[ -r $OS_RELEASE ]] || return 0
	sed -n "s/^$1=//p" "$OS_RELEASE" | head -n 1 | tr -d '"'"'"
}

is_raspberry_pi() {
	[[ -r $DEVICE_MODEL ]] && tr -d '\0' <"$DEVICE_MODEL" | grep -q 'Raspberry Pi'
}

group_exists() {
	if [[ -n $GROUP_FILE ]]; then
		grep -q "^$1:" "$GROUP_FILE"
	else
		getent group "$1" >/dev/null
	fi
}

user_exists() { [[ $ASSUME_FRESH != 1 ]] && getent passwd "$1" >/dev/null; }

assumed_missing() { [[ $ASSUME_FRESH == 1 || $ASSUME_MISSING == *" $1 "* ]]; }

present() { [[ $ASSUME_FRESH != 1 && -e $1 ]]; } # an installed file, as far as the plan knows

deb_installed() { # PACKAGE
	assumed_missing "$1" && return 1
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

systemd_running() {
	case $SYSTEMD_OVERRIDE in
	yes) return 0 ;;
	no) return 1 ;;
	esac
	[[ -d /run/systemd/system ]]
}

version_of() { # PYTHON -> "3.11"; fails when it does not run
	"$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

python_version() { # PYTHON -> "3.11" (the test override stands in for the system's)
	if [[ -n $PYTHON_VERSION_OVERRIDE ]]; then
		printf '%s\n' "$PYTHON_VERSION_OVERRIDE"
	else
		version_of "$1"
	fi
}

venv_python_version() { # VENV -> "3.11", or nothing when it has no working python
	version_of "$1/bin/python" || true
}

python_minor() { # "3.11" -> 11
	local version=$1
	[[ $version =~ ^3\.([0-9]+)$ ]] || return 1
	printf '%s\n' "${BASH_REMATCH[1]}"
}

# --- apt -----------------------------------------------------------------------
APT_UPDATED=0

apt_update() {
	((APT_UPDATED)) && return 0
	run_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
	APT_UPDATED=1
}

apt_install() { # PACKAGE...: nothing (not even apt-get update) when the list is empty
	(($#)) || return 0
	command -v apt-get >/dev/null || ((DRY_RUN)) ||
		die "apt-get is not available; install these yourself: $*"
	if ((${#AS_ROOT[@]})) && ! command -v sudo >/dev/null && ((!DRY_RUN)); then
		die "need root to install: $* (run as root, or install sudo)"
	fi
	info "installing with apt: $*"
	apt_update
	run_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# ==============================================================================
# System install
# ==============================================================================

check_os() {
	local id codename like
	id=$(os_field ID)
	codename=$(os_field VERSION_CODENAME)
	like=$(os_field ID_LIKE)
	info "system: $(os_field PRETTY_NAME)${PI_MODEL:+ on $PI_MODEL}"
	case "$id $like" in
	*debian* | *raspbian*) ;;
	*) warn "'${id:-unknown}' is not Debian or Raspberry Pi OS: this installer uses apt and may not work" ;;
	esac
	case $codename in
	bookworm | trixie) ;;
	*) warn "made for Debian / Raspberry Pi OS bookworm and trixie, not '${codename:-unknown}'" ;;
	esac
}

check_checkout() {
	local f missing=()
	for f in pyproject.toml systemd/edgepose.service config/edgepose.toml; do
		[[ -e $REPO_DIR/$f ]] || missing+=("$f")
	done
	if [[ $CORAL ]] && [[ ! -e $REPO_DIR/systemd/99-edgepose-coral.rules ]]; then
		missing+=(systemd/99-edgepose-coral.rules)
	fi
	((${#missing[@]} == 0)) && return 0
	if ((DRY_RUN)); then
		warn "missing from the checkout: ${missing[*]}"
	else
		die "missing from the checkout $REPO_DIR: ${missing[*]}"
	fi
}

# tflite-runtime 2.14.0 has wheels for CPython <= 3.11 only: refuse before changing anything.
check_coral_python() {
	local version minor
	version=$(python_version "$SYS_PYTHON") || true
	[[ -n $version ]] || {
		warn "cannot tell the version of $SYS_PYTHON; assuming it suits $CORAL_RUNTIME_PIN"
		return 0
	}
	minor=$(python_minor "$version") || die "unexpected Python version '$version'"
	if ((minor > CORAL_MAX_PYTHON_MINOR)); then
		die "--coral pins $CORAL_RUNTIME_PIN (the runtime known to work with Coral's libedgetpu), \
which has wheels only for Python <= 3.$CORAL_MAX_PYTHON_MINOR; this system's Python is $version.
  Either run Raspberry Pi OS / Debian Bookworm (Python 3.11) for the Coral,
  or install without --coral (uses $DEFAULT_RUNTIME) and add a community libedgetpu
  build made for TF Lite 2.16+ yourself."
	fi
}

system_packages() {
	local wanted=(python3-venv python3-pip) pkg missing=()
	((IS_PI)) && wanted+=(python3-picamera2)
	((WITH_MOSQUITTO)) && wanted+=(mosquitto mosquitto-clients)
	[[ $CORAL ]] && wanted+=(ca-certificates curl gnupg)
	for pkg in "${wanted[@]}"; do
		deb_installed "$pkg" || missing+=("$pkg")
	done
	if ((${#missing[@]})); then
		apt_install "${missing[@]}"
	else
		info "apt packages present: ${wanted[*]}"
	fi
}

coral_repository() {
	local lib=libedgetpu1-$CORAL
	info "Coral apt repository: $CORAL_LIST"
	run install -d -m 0755 /etc/apt/keyrings
	# Fetched on every run: Google has rotated this key before, and a stale one
	# fails every apt-get update. gpg --dearmor turns an ASCII-armoured key into
	# a keyring and passes a binary one through unchanged.
	run curl -fsSL -o "$CORAL_KEYRING.download" "$CORAL_KEY_URL"
	run gpg --dearmor --yes -o "$CORAL_KEYRING" "$CORAL_KEYRING.download"
	run rm -f "$CORAL_KEYRING.download"
	run chmod 0644 "$CORAL_KEYRING"
	put_file "$CORAL_LIST" 0644 root:root <<<"$CORAL_REPO_LINE"
	if [[ $CORAL == max ]]; then
		# libedgetpu1-max asks to confirm it may run hot; answer yes for a non-interactive install.
		local eula='libedgetpu1-max libedgetpu/accepted-eula boolean true'
		if ((DRY_RUN)); then
			printf '+ %s\n' "echo '$eula' | debconf-set-selections"
		else
			debconf-set-selections <<<"$eula"
		fi
	fi
	# Always: the source may be new, and a newer libedgetpu is picked up (std and max conflict, so apt swaps them).
	APT_UPDATED=0
	apt_install "$lib"
}

service_user() {
	local group groups=()
	if user_exists "$SERVICE_USER"; then
		info "user $SERVICE_USER exists"
	else
		run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
			--shell /usr/sbin/nologin --comment 'edgepose service' "$SERVICE_USER"
	fi
	if [[ $CORAL ]] && ! group_exists apex; then
		# The PCIe Coral's udev rule hands /dev/apex_* to group apex (Coral's own set-up creates it too).
		run groupadd --system apex
		groups+=(apex)
	fi
	# Device access goes through these groups: video (camera, dma_heap on Raspberry
	# Pi OS), plugdev (Coral USB), apex (Coral PCIe). Only groups that exist.
	for group in video plugdev apex; do
		if group_exists "$group" && [[ " ${groups[*]} " != *" $group "* ]]; then
			groups+=("$group")
		fi
	done
	if ((${#groups[@]})); then
		run usermod --append --groups "$(
			IFS=,
			echo "${groups[*]}"
		)" "$SERVICE_USER"
	fi
}

# Pin numpy to the apt one when picamera2 (apt) is visible through
# --system-site-packages: its compiled helpers break under a different numpy.
write_constraints() {
	local lines=() system_numpy
	system_numpy=$("$SYS_PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null) || system_numpy=""
	if ((IS_PI)) && [[ -n $system_numpy ]]; then
		lines+=("numpy==$system_numpy")
	fi
	[[ $CORAL ]] && lines+=("$CORAL_NUMPY_PIN")
	printf '%s\n' "# written by install.sh: numpy pins for the venv (see install.sh)" "${lines[@]}" |
		put_file "$SYS_CONSTRAINTS" 0644 root:root
}

system_venv() {
	local runtime remove
	run install -d -m 0755 "$PREFIX" "$SYS_MODELS"
	# Reused unless it is broken or was made by another Python (an OS upgrade).
	if present "$SYS_VENV/bin/python" &&
		[[ $(venv_python_version "$SYS_VENV") == "$(python_version "$SYS_PYTHON")" ]]; then
		info "venv $SYS_VENV exists"
	else
		# --system-site-packages: picamera2 and libcamera come from apt, not PyPI.
		run "$SYS_PYTHON" -m venv --clear --system-site-packages "$SYS_VENV"
	fi
	write_constraints
	if [[ $CORAL ]]; then
		runtime=("$CORAL_RUNTIME_PIN" "$CORAL_NUMPY_PIN")
		remove=ai-edge-litert
	else
		runtime=("$DEFAULT_RUNTIME")
		remove=tflite-runtime
	fi
	info "installing edgepose and ${runtime[*]} into $SYS_VENV"
	run "$SYS_VENV/bin/python" -m pip install --disable-pip-version-check -q \
		--constraint "$SYS_CONSTRAINTS" "$REPO_DIR" "${runtime[@]}"
	# One TF Lite runtime only, so the backend cannot pick the one that does not match libedgetpu.
	run "$SYS_VENV/bin/python" -m pip uninstall --disable-pip-version-check -q -y "$remove"
}

install_models() {
	local models=() model
	shopt -s nullglob
	models=("$REPO_DIR"/models/*.tflite)
	shopt -u nullglob
	if ((${#models[@]} == 0)); then
		warn "no models/*.tflite in the checkout: set [model] path in $CONF_FILE to a .tflite file"
		return 0
	fi
	info "models -> $SYS_MODELS (EDGEPOSE_MODELS_DIR in the unit)"
	for model in "${models[@]}"; do
		run install -m 0644 "$model" "$SYS_MODELS/"
	done
}

install_config() {
	# 0755 root like systemd's ConfigurationDirectory=; the files carry the secrecy.
	run install -d -m 0755 "$CONF_DIR"
	# The example is refreshed every time so new options can be diffed; the real config is never clobbered.
	run install -m 0644 "$REPO_DIR/config/edgepose.toml" "$CONF_DIR/edgepose.toml.example"
	if present "$CONF_FILE"; then
		info "keeping your $CONF_FILE (new defaults: $CONF_FILE.example)"
	else
		run install -m 0640 -o root -g "$SERVICE_USER" "$REPO_DIR/config/edgepose.toml" "$CONF_FILE"
	fi
}

install_unit() {
	run install -m 0644 "$REPO_DIR/systemd/edgepose.service" "$UNIT_FILE"
	# LoadCredential= fails the unit when its file is missing, so it lives in a
	# drop-in that exists only while $PASSWORD_FILE does.
	if present "$PASSWORD_FILE"; then
		info "MQTT password: $PASSWORD_FILE -> credential mqtt_password (root-only file)"
		run chmod 0600 "$PASSWORD_FILE"
		run chown root:root "$PASSWORD_FILE"
		run install -d -m 0755 "$DROPIN_DIR"
		put_file "$CREDENTIALS_DROPIN" 0644 root:root <<EOF
# written by install.sh because $PASSWORD_FILE exists
[Service]
LoadCredential=mqtt_password:$PASSWORD_FILE
EOF
	elif present "$CREDENTIALS_DROPIN"; then
		run rm -f "$CREDENTIALS_DROPIN"
	fi
	if [[ $CORAL ]]; then
		run install -m 0644 "$REPO_DIR/systemd/99-edgepose-coral.rules" "$UDEV_RULES"
		run udevadm control --reload-rules
		run udevadm trigger --subsystem-match=usb --subsystem-match=apex --action=add
	fi
}

start_service() {
	if systemd_running; then
		run systemctl daemon-reload
		run systemctl enable "$UNIT_NAME"
		# Type=notify: this waits for READY=1, so a bad config (exit 78), a missing
		# model or camera shows up here, checked as the service user in its sandbox.
		if ! run systemctl restart "$UNIT_NAME"; then
			run journalctl -u "$UNIT_NAME" -n 30 --no-pager || true
			die "installed, but $UNIT_NAME did not start (log above). Diagnose with:
  sudo -u $SERVICE_USER EDGEPOSE_MODELS_DIR=$SYS_MODELS $SYS_VENV/bin/edgepose check --config $CONF_FILE
then: sudo systemctl restart $UNIT_NAME"
		fi
	elif command -v systemctl >/dev/null || ((DRY_RUN)); then
		warn "systemd is not running (a chroot or container?): enabling $UNIT_NAME for the next boot only"
		run systemctl enable "$UNIT_NAME"
	else
		warn "no systemctl here: $UNIT_FILE is installed but not enabled"
	fi
}

do_install() {
	check_os
	check_checkout
	[[ $CORAL ]] && check_coral_python
	((IS_PI)) || info "not a Raspberry Pi: no picamera2 (file, URL and V4L2 sources still work)"
	system_packages
	[[ $CORAL ]] && coral_repository
	service_user
	system_venv
	install_models
	install_config
	install_unit
	start_service
	info "done. Follow it with:  journalctl -u $UNIT_NAME -f"
	info "config: $CONF_FILE   snapshots: $STATE_DIR   status: systemctl status $UNIT_NAME"
	[[ $CORAL ]] && info "unplug and replug a USB Coral once so the new udev rules apply"
	return 0
}

do_uninstall() {
	if systemd_running; then
		run systemctl disable --now "$UNIT_NAME" || true
	else
		run systemctl disable "$UNIT_NAME" || true
	fi
	run rm -f "$UNIT_FILE" "$UDEV_RULES"
	run rm -rf "$DROPIN_DIR" "$PREFIX"
	systemd_running && run systemctl daemon-reload
	if ((PURGE)); then
		run rm -rf "$CONF_DIR" "$STATE_DIR"
		run rm -f "$CORAL_LIST" "$CORAL_KEYRING"
		if user_exists "$SERVICE_USER" || ((DRY_RUN)); then
			run userdel "$SERVICE_USER"
		fi
		info "purged; apt packages (python3-picamera2, libedgetpu1-*, mosquitto) are left installed"
	else
		info "kept $CONF_DIR (config), $STATE_DIR (snapshots) and user $SERVICE_USER: --purge removes them"
	fi
	return 0
}

# ==============================================================================
# Demo and test environments in the checkout
# ==============================================================================

mosquitto_bin() { # the broker's path; fails when it is not installed
	command -v mosquitto || { [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto; }
}

dev_packages() {
	local missing=()
	if assumed_missing python3-venv || ! "$DEV_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
		missing+=(python3-venv)
	fi
	if assumed_missing mosquitto || ! mosquitto_bin >/dev/null; then
		missing+=(mosquitto)
	fi
	if assumed_missing mosquitto-clients || ! command -v mosquitto_sub >/dev/null; then
		missing+=(mosquitto-clients)
	fi
	apt_install "${missing[@]}"
}

extras_cover() { # HAVE WANT (comma-separated): every wanted extra is installed
	local extra
	for extra in ${2//,/ }; do
		[[ ,$1, == *,"$extra",* ]] || return 1
	done
}

# The venv is reinstalled only when pyproject.toml, the Python or the extras change:
# the package is editable, so source edits need no reinstall.
dev_venv() { # EXTRAS (comma-separated)
	local want=$1 version stamp="$DEV_VENV/.edgepose-stamp" hash have="" extras
	command -v "$DEV_PYTHON" >/dev/null || die "$DEV_PYTHON not found: install Python 3.10 or newer"
	version=$(python_version "$DEV_PYTHON") || die "cannot run $DEV_PYTHON"
	(($(python_minor "$version" || echo 0) >= 10)) || die "edgepose needs Python >= 3.10, $DEV_PYTHON is $version"
	hash=$(sha256sum "$REPO_DIR/pyproject.toml" | cut -d' ' -f1)
	if [[ -r $stamp ]] && [[ $(venv_python_version "$DEV_VENV") == "$version" ]]; then
		if [[ $(sed -n 's/^pyproject=//p' "$stamp") == "$hash" ]] &&
			[[ $(sed -n 's/^python=//p' "$stamp") == "$version" ]]; then
			have=$(sed -n 's/^extras=//p' "$stamp")
		fi
		if [[ -n $have ]] && extras_cover "$have" "$want"; then
			info "venv $DEV_VENV is up to date (pyproject.toml unchanged)"
			return 0
		fi
	fi
	extras=$(printf '%s\n' "${want//,/$'\n'}" "${have//,/$'\n'}" | sed '/^$/d' | sort -u | paste -sd, -)
	# A venv made by another Python (pyenv switch, OS upgrade) is rebuilt, not patched.
	if [[ $(venv_python_version "$DEV_VENV") != "$version" ]]; then
		run "$DEV_PYTHON" -m venv --clear "$DEV_VENV"
	fi
	info "installing edgepose[$extras] into $DEV_VENV (the first time downloads ~150 MB)"
	run "$DEV_VENV/bin/python" -m pip install --disable-pip-version-check -q -e "${REPO_DIR}[${extras}]"
	printf '%s\n' "pyproject=$hash" "python=$version" "extras=$extras" | put_file "$stamp" 0644 "$(id -un):$(id -gn)"
}

do_test() {
	dev_packages
	dev_venv litert,test
	run cd "$REPO_DIR"
	run exec "$DEV_VENV/bin/python" -m pytest "${PASSTHRU[@]}"
}

toml_value() { # FILE TABLE KEY DEFAULT -> value from the demo config (for the hints only)
	"$DEV_VENV/bin/python" - "$@" 2>/dev/null <<'EOF' || printf '%s\n' "$4"
import sys, tomllib
path, table, key, default = sys.argv[1:5]
with open(path, "rb") as f:
    print(tomllib.load(f).get(table, {}).get(key, default))
EOF
}

free_port() {
	"$DEV_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

BROKER_PID=""
APP_PID=""
DEMO_TMP=""
GOT_SIGNAL=0

demo_cleanup() {
	if [[ -n $APP_PID ]] && kill -0 "$APP_PID" 2>/dev/null; then
		kill -TERM "$APP_PID" 2>/dev/null || true
		wait "$APP_PID" 2>/dev/null || true
	fi
	if [[ -n $BROKER_PID ]]; then
		kill -TERM "$BROKER_PID" 2>/dev/null || true
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	[[ -n $DEMO_TMP ]] && rm -rf "$DEMO_TMP"
	return 0
}

# The daemon runs as a background job so these traps fire at once; it stops
# cleanly on SIGTERM (a background job in a script ignores SIGINT).
demo_forward_signal() {
	GOT_SIGNAL=1
	[[ -n $APP_PID ]] && kill -TERM "$APP_PID" 2>/dev/null
	return 0
}

start_private_broker() {
	local port=$1 mosquitto
	mosquitto=$(mosquitto_bin) || mosquitto=/usr/sbin/mosquitto # where apt will put it
	if ((DRY_RUN)); then
		printf '+ %s\n' "$mosquitto -c <tmp>/mosquitto.conf &   # listener $port 127.0.0.1, anonymous, no persistence; stopped on exit"
		return 0
	fi
	DEMO_TMP=$(mktemp -d "${TMPDIR:-/tmp}/edgepose-demo.XXXXXX")
	printf '%s\n' "listener $port 127.0.0.1" "allow_anonymous true" "persistence false" >"$DEMO_TMP/mosquitto.conf"
	# Its own session: Ctrl-C in the terminal must stop the daemon first (it
	# publishes "offline" on the way out), then the broker from demo_cleanup.
	local detach=()
	command -v setsid >/dev/null && detach=(setsid)
	"${detach[@]}" "$mosquitto" -c "$DEMO_TMP/mosquitto.conf" >"$DEMO_TMP/mosquitto.log" 2>&1 &
	BROKER_PID=$!
	# Wait until it accepts connections (or has died), up to 10 s.
	if ! "$DEV_PYTHON" - "$port" "$BROKER_PID" <<'EOF'; then
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(1)
        time.sleep(0.05)
sys.exit(1)
EOF
		die "mosquitto did not start on 127.0.0.1:$port: $(tail -n 5 "$DEMO_TMP/mosquitto.log" 2>/dev/null)"
	fi
}

do_demo() {
	local config=config/demo.toml broker host port prefix node snapdir cmd rc status
	dev_packages
	dev_venv litert
	cd "$REPO_DIR"
	[[ -e $config ]] || ((DRY_RUN)) || die "$config is missing from the checkout"
	if [[ -n $BROKER ]]; then
		broker=$BROKER
	else
		port=$(free_port)
		broker=127.0.0.1:$port
		trap demo_cleanup EXIT
		start_private_broker "$port"
	fi
	host=${broker%:*}
	port=${broker##*:}
	prefix=$(toml_value "$config" mqtt topic_prefix edgepose)
	node=$(toml_value "$config" node id "<hostname>")
	snapdir=$(toml_value "$config" snapshots dir snapshots)
	[[ $snapdir == /* ]] || snapdir=$REPO_DIR/$snapdir
	info "broker:    $broker${BROKER:+ (yours)}${BROKER:- (private mosquitto, stopped on exit)}"
	info "watch:     mosquitto_sub -h $host -p $port -t '$prefix/#' -v"
	info "topics:    $prefix/$node/poses, person_count, stats, availability (retained), snapshot"
	info "snapshots: $snapdir"
	info "stop:      Ctrl-C"
	cmd=("$DEV_VENV/bin/edgepose" run --config "$config" --broker "$broker")
	[[ -n $DURATION ]] && cmd+=(--duration "$DURATION")
	cmd+=("${PASSTHRU[@]}")
	if ((DRY_RUN)); then
		run "${cmd[@]}"
		return 0
	fi
	if [[ -n $BROKER ]]; then
		exec "${cmd[@]}"
	fi
	trap demo_forward_signal INT TERM
	"${cmd[@]}" &
	APP_PID=$!
	rc=0
	while :; do
		GOT_SIGNAL=0
		wait "$APP_PID" && rc=0 || rc=$?
		((GOT_SIGNAL)) || break
		kill -0 "$APP_PID" 2>/dev/null || {
			# The daemon ended while the trap ran: collect its own status if bash still has it.
			wait "$APP_PID" 2>/dev/null && status=0 || status=$?
			((status == 127)) || rc=$status
			break
		}
	done
	APP_PID=""
	return "$rc"
}

# ==============================================================================
# Arguments
# ==============================================================================

MODE=install
CORAL=""
WITH_MOSQUITTO=0
PURGE=0
BROKER=""
DURATION=""
PASSTHRU=()
ORIG_ARGS=("$@")

set_mode() {
	[[ $MODE == install ]] || usage_error "choose one of --demo, --test, --uninstall"
	MODE=$1
}

while (($#)); do
	case $1 in
	--demo) set_mode demo ;;
	--test) set_mode test ;;
	--uninstall) set_mode uninstall ;;
	--coral) CORAL=std ;;
	--coral-max) CORAL=max ;;
	--with-mosquitto) WITH_MOSQUITTO=1 ;;
	--purge) PURGE=1 ;;
	--dry-run) DRY_RUN=1 ;;
	--broker | --duration)
		(($# >= 2)) || usage_error "$1 needs a value"
		if [[ $1 == --broker ]]; then BROKER=$2; else DURATION=$2; fi
		shift
		;;
	--broker=*) BROKER=${1#*=} ;;
	--duration=*) DURATION=${1#*=} ;;
	-h | --help)
		usage
		exit 0
		;;
	--)
		shift
		PASSTHRU=("$@")
		break
		;;
	*) usage_error "unknown argument '$1'" ;;
	esac
	shift
done

case $MODE in
demo) ;;
*) [[ -z $BROKER && -z $DURATION ]] || usage_error "--broker and --duration go with --demo" ;;
esac
[[ $MODE == install ]] || [[ -z $CORAL && $WITH_MOSQUITTO == 0 ]] ||
	usage_error "--coral, --coral-max and --with-mosquitto go with the service install"
[[ $MODE == uninstall ]] || ((!PURGE)) || usage_error "--purge goes with --uninstall"
[[ $MODE == test || $MODE == demo ]] || ((${#PASSTHRU[@]} == 0)) ||
	usage_error "arguments after -- go with --test (pytest) or --demo (edgepose run)"
[[ -z $BROKER ]] || [[ $BROKER =~ ^.+:[0-9]+$ ]] || usage_error "--broker takes HOST:PORT, not '$BROKER'"
[[ -z $DURATION ]] || [[ $DURATION =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "--duration takes seconds, not '$DURATION'"

if ((!DRY_RUN)); then
	OS_RELEASE=/etc/os-release DEVICE_MODEL=/proc/device-tree/model GROUP_FILE="" PYTHON_VERSION_OVERRIDE=""
	ASSUME_MISSING="  " ASSUME_FRESH=0 SYSTEMD_OVERRIDE=""
fi

IS_PI=0
PI_MODEL=""
if is_raspberry_pi; then
	IS_PI=1
	PI_MODEL=$(tr -d '\0' <"$DEVICE_MODEL")
fi

SUDO=(sudo)
[[ -z ${CI:-} ]] || SUDO+=(-n) # in CI nobody can type a password: fail instead of prompting

case $MODE in
install | uninstall)
	# The plan is printed as root would run it; a real run needs root.
	if ((EUID != 0)) && ((!DRY_RUN)); then
		command -v sudo >/dev/null || die "run as root (sudo is not installed)"
		exec "${SUDO[@]}" -- bash "$0" "${ORIG_ARGS[@]}"
	fi
	;;
*)
	((EUID == 0)) || AS_ROOT=("${SUDO[@]}")
	;;
esac

((DRY_RUN)) && info "dry run: printing the plan, changing nothing"
case $MODE in
install) do_install ;;
uninstall) do_uninstall ;;
test) do_test ;;
demo) do_demo ;;
esac

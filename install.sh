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
# Downloads come over HTTPS from the GitHub releases CORAL_PINS names (below) and are
# checked against a sha256: pinned there, given with --coral-sha256, or recorded in
# CORAL_RECORD when the file was first downloaded (trust on first use; README, "Coral").
# Both paths have test overrides (dry runs and sourced functions only, see below).
CORAL_CACHE=${EDGEPOSE_CORAL_CACHE:-/var/cache/edgepose/coral}
# Root's, beside the config: the service cannot change what a re-run trusts (its
# StateDirectory belongs to it); kept by --uninstall, removed by --purge.
CORAL_RECORD=${EDGEPOSE_CORAL_RECORD:-$CONF_DIR/coral.sha256}
# Coral's own apt repository, which older versions of this script added: its
# libedgetpu (TF Lite 2.5) crashes under every runtime we can install, so a
# --coral install removes it.
readonly CORAL_LEGACY_LIST=/etc/apt/sources.list.d/coral-edgetpu.list
readonly CORAL_LEGACY_KEYRING=/etc/apt/keyrings/coral-edgetpu.gpg
readonly DEFAULT_RUNTIME='ai-edge-litert'
# ==============================================================================
# CORAL_PINS: the Coral runtime pairs, pinned (docs/coral.md: "Coral Edge TPU: which
# runtime, and why", with the upstream sources)
# ==============================================================================
# libedgetpu (the Edge TPU delegate) and the TF Lite runtime must be built from
# the same TensorFlow version: Google's last libedgetpu (16.0, TF 2.5) segfaults
# under every runtime after 2.11 (google-coral/edgetpu#812). The rows of one OS
# and Python form one pair; install.sh refuses a pair whose TF columns differ.
#   evidence: "shipped" = the same pair is what a maintained project installs
#             (Frigate, docker/main/install_deps.sh + requirements-wheels.txt);
#             "unverified" = same TF version, but nobody is known to have run
#             this wheel with an Edge TPU (the script says so when it uses it).
#
# sha256 "-" = not pinned yet: the file is trusted on first use (its sha256 is
# shown and recorded in CORAL_RECORD; later runs install only the same bytes), or,
# with --coral-strict / --coral-sha256, refused. To pin one, on a trusted machine:
#   curl -fLO URL && sha256sum FILE
# compare the result with the "sha256:" digest GitHub shows beside the asset
# on its release page (where shown), and paste it in place of the "-"; or,
# without editing this script, put those sha256sum lines in a file and pass it
# with --coral-sha256 FILE (it fills the "-" only, never overrides a pin).
#
# codename python tf     kind            evidence   sha256 url
CORAL_PINS='
bookworm   3.11   2.17.1 libedgetpu1-std shipped    -      https://github.com/feranick/libedgetpu/releases/download/16.0TF2.17.1-1/libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb
bookworm   3.11   2.17.1 libedgetpu1-max shipped    -      https://github.com/feranick/libedgetpu/releases/download/16.0TF2.17.1-1/libedgetpu1-max_16.0tf2.17.1-1.bookworm_arm64.deb
bookworm   3.11   2.17.1 tflite-runtime  shipped    -      https://github.com/feranick/TFlite-builds/releases/download/v2.17.1/tflite_runtime-2.17.1-cp311-cp311-linux_aarch64.whl
trixie     3.13   2.17.1 libedgetpu1-std unverified -      https://github.com/feranick/libedgetpu/releases/download/16.0TF2.17.1-1/libedgetpu1-std_16.0tf2.17.1-1.trixie_arm64.deb
trixie     3.13   2.17.1 tflite-runtime  unverified -      https://github.com/Nachtzuster/BirdNET-Pi/releases/download/v0.1/tflite_runtime-2.17.1-cp313-cp313-linux_aarch64.whl
any        any    any    gasket-dkms     shipped    -      https://github.com/feranick/gasket-driver/releases/download/1.0-18.2/gasket-dkms_1.0-18.2_all.deb
'
# numpy the runtime wheel was compiled against (per codename): feranick's
# cp311 builds use numpy 1.24 (TFlite-builds README), so numpy 2 cannot load them.
CORAL_NUMPY_BOOKWORM='numpy<2'
CORAL_NUMPY_TRIXIE=''

# --- Installed-node conveniences -------------------------------------------------
readonly CLI_WRAPPER=/usr/local/bin/edgepose
readonly CLI_MARKER='# edgepose CLI wrapper, written by install.sh'

# --- Overrides ---------------------------------------------------------------
# For the dev modes: which Python makes the venv, and where it lives.
DEV_PYTHON=${EDGEPOSE_PYTHON:-python3}
DEV_VENV=${EDGEPOSE_VENV:-$REPO_DIR/.venv}
# Hidden, for tests (tests/unit/test_install.py); honoured with --dry-run only,
# so they can never make a real run act on a made-up machine.
OS_RELEASE=${EDGEPOSE_OS_RELEASE:-/etc/os-release}
DEVICE_MODEL=${EDGEPOSE_DEVICE_MODEL:-/proc/device-tree/model}
RPI_ISSUE=${EDGEPOSE_RPI_ISSUE:-/etc/rpi-issue}            # present on Raspberry Pi OS only
APT_SOURCES_DIR=${EDGEPOSE_APT_SOURCES_DIR:-/etc/apt}       # searched for Raspberry Pi's archive
GROUP_FILE=${EDGEPOSE_GROUP_FILE:-}              # look groups up here instead of getent
PYTHON_VERSION_OVERRIDE=${EDGEPOSE_PYTHON_VERSION:-}
ARCH_OVERRIDE=${EDGEPOSE_ARCH:-}                 # dpkg architecture: arm64, armhf, amd64...
KERNEL_OVERRIDE=${EDGEPOSE_KERNEL_RELEASE:-}     # uname -r
PAGE_SIZE_OVERRIDE=${EDGEPOSE_PAGE_SIZE:-}       # getconf PAGESIZE
ASSUME_MISSING=" ${EDGEPOSE_ASSUME_MISSING:-} "  # apt package names treated as absent
ASSUME_FRESH=${EDGEPOSE_ASSUME_FRESH:-0}         # 1: no packages, user, venv or config yet
SYSTEMD_OVERRIDE=${EDGEPOSE_SYSTEMD:-}           # yes|no: is systemd running?
BROKER_ENABLED_OVERRIDE=${EDGEPOSE_MOSQUITTO_ENABLED:-} # yes|no: is mosquitto.service enabled?
POLICY_RC_D=${EDGEPOSE_POLICY_RC_D:-/usr/sbin/policy-rc.d}

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
  --coral           Coral Edge TPU (USB): a community libedgetpu .deb and the tflite_runtime
                    wheel built from the same TensorFlow version, pinned by version (see
                    CORAL_PINS in this script), udev rules, group plugdev;
                    64-bit Raspberry Pi OS / Debian bookworm (Python 3.11) or trixie (3.13).
                    With --dry-run on another machine (a PC): the plan for such a Pi
  --coral-max       as --coral with libedgetpu1-max (faster, runs hot)
  --coral-pcie      with --coral/--coral-max (or alone: implies --coral): also the PCIe /
                    M.2 driver (gasket-dkms, built by DKMS for the running kernel) and
                    group apex
  --coral-sha256 FILE  with --coral*: sha256 of the Coral files not pinned in CORAL_PINS
                    yet, as 'sha256sum' prints them ("<sha256>  <file name>"), checked by
                    you on a trusted machine; strict: a file no line names is refused
  --coral-strict    with --coral*: refuse any Coral file without a sha256 pinned in
                    CORAL_PINS or given with --coral-sha256. Without it (and without
                    --coral-sha256) an unpinned file is trusted on first use: downloaded
                    over HTTPS from its GitHub release, its sha256 shown and recorded in
                    $CORAL_RECORD, and later runs install only those bytes
  --with-mosquitto  also install a local mosquitto broker
  --purge           with --uninstall: also remove $CONF_DIR, $STATE_DIR, the user
                    and the downloaded Coral files
  --broker HOST:PORT  (--demo) use this broker instead of starting a private one
  --duration SECONDS  (--demo) stop after SECONDS (passed to 'edgepose run --duration')
  --dry-run         print every command ("+ ...") instead of running it
  -h, --help        this help

Examples:
  sudo ./$PROG                   install or upgrade the service (idempotent)
  sudo ./$PROG --coral           same, with a Coral USB accelerator
  sudo ./$PROG --coral-pcie      same, with a Coral PCIe / M.2 accelerator
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

machine_arch() { # the userland's dpkg architecture: arm64, armhf, amd64, ...
	# dpkg, not uname -m: a 32-bit Raspberry Pi OS often runs a 64-bit kernel.
	local arch
	if [[ -n $ARCH_OVERRIDE ]]; then
		arch=$ARCH_OVERRIDE
	else
		arch=$(dpkg --print-architecture 2>/dev/null) || arch=$(uname -m)
	fi
	case $arch in
	aarch64) arch=arm64 ;;
	x86_64) arch=amd64 ;;
	armv6l | armv7l) arch=armhf ;;
	i?86) arch=i386 ;;
	esac
	printf '%s\n' "$arch"
}

kernel_release() { if [[ -n $KERNEL_OVERRIDE ]]; then echo "$KERNEL_OVERRIDE"; else uname -r; fi; }

page_size() { if [[ -n $PAGE_SIZE_OVERRIDE ]]; then echo "$PAGE_SIZE_OVERRIDE"; else getconf PAGESIZE; fi; }

# Raspberry Pi OS, not just a Raspberry Pi: Ubuntu or plain Debian on a Pi have no
# python3-picamera2 (it comes from archive.raspberrypi.com).
is_raspberry_pi_os() {
	[[ -e $RPI_ISSUE ]] && return 0
	grep -rqsE 'archive\.raspberrypi\.(com|org)' "$APT_SOURCES_DIR/sources.list" "$APT_SOURCES_DIR/sources.list.d" 2>/dev/null
}

# Neither ai-edge-litert nor tflite-runtime publishes wheels for 32-bit ARM or x86:
# stop before anything is installed that could not run.
check_arch() {
	local arch
	arch=$(machine_arch)
	case $arch in
	arm64 | amd64) ;;
	armhf | armel | i386)
		die "this is a 32-bit system ($arch): neither TF Lite runtime edgepose uses (ai-edge-litert,
  tflite_runtime) publishes wheels for it, so edgepose cannot run here.
  Install Raspberry Pi OS (64-bit) (Bookworm or Trixie) on a Pi 3, 4 or 5 and run this again." ;;
	*) warn "untested architecture '$arch': edgepose is tested on arm64 and amd64" ;;
	esac
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

system_packages() {
	local wanted=(python3-venv python3-pip) pkg missing=()
	((PI_OS)) && wanted+=(python3-picamera2)
	((WITH_MOSQUITTO)) && wanted+=(mosquitto mosquitto-clients)
	[[ $CORAL ]] && wanted+=(ca-certificates curl)
	for pkg in "${wanted[@]}"; do
		deb_installed "$pkg" || missing+=("$pkg")
	done
	if ((${#missing[@]})); then
		apt_install "${missing[@]}"
	else
		info "apt packages present: ${wanted[*]}"
	fi
}

# --- Coral: choose the pair, before anything changes --------------------------------

CORAL_TF=""           # TensorFlow version of the chosen pair
CORAL_LIB_URL=""      # libedgetpu1-std or -max .deb
CORAL_LIB_SHA=""
CORAL_WHEEL_URL=""    # tflite_runtime wheel
CORAL_WHEEL_SHA=""
CORAL_GASKET_URL=""   # gasket-dkms .deb (--coral-pcie)
CORAL_GASKET_SHA=""
CORAL_NUMPY=""        # numpy pin the wheel needs ("" = none)
CORAL_SHA256_FILE=""  # --coral-sha256: the user's sha256 of files CORAL_PINS has not pinned

CORAL_STRICT=0        # --coral-strict (or --coral-sha256): no file without a pinned or given sha256
CORAL_PLAN_ONLY=0     # a dry run on a machine that is not arm64: the plan for a Pi
declare -A CORAL_SHA_FROM=() # file name -> where its expected sha256 comes from, for messages

sha256_in() { # LIST FILE_NAME: the sha256 a sha256sum-style LIST gives for FILE_NAME (nothing when none)
	local list=$1 sha name found=""
	[[ -n $list && -r $list ]] || return 0
	while read -r sha name; do
		[[ -z $sha || $sha == \#* ]] && continue
		name=${name#\*}      # sha256sum's binary-mode marker
		name=${name##*/}     # a path: its file name
		[[ $name == "$2" ]] || continue
		[[ $sha =~ ^[0-9a-f]{64}$ ]] || die "$list: '$sha' for $2 is not a sha256 (64 hex digits). Nothing was changed."
		[[ -z $found || $found == "$sha" ]] || die "$list: two different sha256 for $2. Nothing was changed."
		found=$sha
	done <"$list"
	[[ -z $found ]] || printf '%s\n' "$found"
}

user_sha256() { # FILE_NAME -> the sha256 --coral-sha256 gives for it (nothing when none)
	[[ -n $CORAL_SHA256_FILE ]] || return 0
	sha256_in "$CORAL_SHA256_FILE" "$1"
}

fill_pin() { # VARIABLE URL: the sha256 the download must have: pinned, else yours, else recorded
	local -n pin=$1
	local name user recorded
	name=$(pinned_name "$2")
	[[ $2 == https://github.com/*/releases/download/* ]] ||
		die "CORAL_PINS: $2 is not a GitHub release download over HTTPS. Nothing was changed."
	user=$(user_sha256 "$name") || exit 1
	recorded=$(sha256_in "$CORAL_RECORD" "$name") || exit 1
	[[ $pin == - ]] || CORAL_SHA_FROM[$name]="pinned in CORAL_PINS"
	if [[ -n $user ]]; then
		if [[ $pin == - ]]; then
			pin=$user
			CORAL_SHA_FROM[$name]="yours, from $CORAL_SHA256_FILE"
			info "sha256 of $name from $CORAL_SHA256_FILE (yours, not pinned in this script)"
		elif [[ $pin != "$user" ]]; then
			die "--coral-sha256 gives $user for $name, CORAL_PINS pins $pin: check which is right. Nothing was changed."
		fi
	fi
	[[ -n $recorded ]] || return 0
	if [[ $pin == - ]]; then
		((CORAL_STRICT)) && return 0 # strict: a digest recorded on first use is not one you checked
		pin=$recorded
		CORAL_SHA_FROM[$name]="recorded at its first download in $CORAL_RECORD"
		info "sha256 of $name: $recorded, recorded at its first download ($CORAL_RECORD): only these bytes are installed"
	elif [[ $pin != "$recorded" ]]; then
		die "$name: its first download had sha256 $recorded ($CORAL_RECORD), but $pin is expected now (${CORAL_SHA_FROM[$name]}).
  Check both against the release page; if $pin is right, delete that line of $CORAL_RECORD and run this again. Nothing was changed."
	fi
}

coral_pin() { # CODENAME PYTHON KIND -> "tf evidence sha256 url" of the one matching row
	local codename python tf kind evidence sha url found=""
	while read -r codename python tf kind evidence sha url; do
		[[ -z $codename || $codename == \#* ]] && continue
		[[ $codename == "$1" || $codename == any ]] || continue
		[[ $python == "$2" || $python == any ]] || continue
		[[ $kind == "$3" ]] || continue
		[[ -z $found ]] || die "CORAL_PINS has two rows for $1 / Python $2 / $3"
		found="$tf $evidence $sha $url"
	done <<<"$CORAL_PINS"
	[[ -n $found ]] && printf '%s\n' "$found"
}

pinned_name() { local url=$1; printf '%s\n' "${url##*/}"; }

coral_pairs_known() { # "bookworm/3.11, trixie/3.13": what the table offers, for messages
	local codename python tf kind rest list=()
	while read -r codename python tf kind rest; do
		[[ -z $codename || $codename == \#* || $codename == any ]] && continue
		[[ $kind == tflite-runtime ]] && list+=("$codename (Python $python)")
	done <<<"$CORAL_PINS"
	local IFS=,
	printf '%s\n' "${list[*]}" | sed 's/,/, /g'
}

# Every check that can stop a --coral install runs here, before any change.
coral_preflight() {
	local arch codename version lib row_lib row_wheel row_gasket
	local lib_tf lib_ev wheel_tf wheel_ev ev unpinned=() page kernel
	arch=$(machine_arch)
	codename=$(os_field VERSION_CODENAME)
	version=$(python_version "$SYS_PYTHON") || version=""
	lib=libedgetpu1-$CORAL
	if [[ $arch != arm64 ]]; then
		((DRY_RUN)) || die "--coral: the pinned Coral files are for 64-bit ARM (arm64); this system is '$arch'.
  Nothing was changed. Install without --coral, or on 64-bit Raspberry Pi OS."
		CORAL_PLAN_ONLY=1
		warn "--coral on '$arch': this is the plan for a 64-bit Raspberry Pi (arm64), for reading only.
  The Coral files it downloads are arm64 builds: a real --coral run here stops before changing anything."
		if ! coral_pin "$codename" "$version" "$lib" >/dev/null || ! coral_pin "$codename" "$version" tflite-runtime >/dev/null; then
			codename=bookworm version=3.11
		fi
		info "Coral plan for a Raspberry Pi with 64-bit Raspberry Pi OS / Debian $codename and Python $version"
		IS_PI=1 PI_OS=1 PI_MODEL="a 64-bit Raspberry Pi (planned)" # the rest of the plan is the Pi's too
	fi
	[[ -n $version ]] || die "--coral: cannot tell the version of $SYS_PYTHON. Nothing was changed."
	row_lib=$(coral_pin "$codename" "$version" "$lib") || row_lib=""
	row_wheel=$(coral_pin "$codename" "$version" tflite-runtime) || row_wheel=""
	if [[ -z $row_lib || -z $row_wheel ]]; then
		die "--coral: no pinned libedgetpu + TF Lite runtime pair for '${codename:-unknown}' with Python $version${row_wheel:+ and $lib}.
  Pairs known to this script: $(coral_pairs_known).
  A runtime and a libedgetpu from different TensorFlow versions crash (google-coral/edgetpu#812),
  so it stops here. Nothing was changed.
  Without a Coral: install without --coral (uses $DEFAULT_RUNTIME on the CPU)."
	fi
	read -r lib_tf lib_ev CORAL_LIB_SHA CORAL_LIB_URL <<<"$row_lib"
	read -r wheel_tf wheel_ev CORAL_WHEEL_SHA CORAL_WHEEL_URL <<<"$row_wheel"
	[[ $lib_tf == "$wheel_tf" ]] ||
		die "CORAL_PINS pairs $lib (TF $lib_tf) with tflite_runtime (TF $wheel_tf): they must come from the same TensorFlow version"
	CORAL_TF=$lib_tf
	case $codename in
	bookworm) CORAL_NUMPY=$CORAL_NUMPY_BOOKWORM ;;
	trixie) CORAL_NUMPY=$CORAL_NUMPY_TRIXIE ;;
	*) CORAL_NUMPY="" ;;
	esac
	if ((CORAL_PCIE)); then
		row_gasket=$(coral_pin "$codename" "$version" gasket-dkms) || die "CORAL_PINS has no gasket-dkms row"
		read -r _ _ CORAL_GASKET_SHA CORAL_GASKET_URL <<<"$row_gasket"
		page=$(page_size)
		kernel=$(kernel_release)
		if [[ $page != 4096 ]]; then
			die "--coral-pcie: the Coral PCIe driver (gasket/apex) needs a kernel with 4 KB pages; this one ($kernel) uses $page-byte pages.
  On a Raspberry Pi 5 add 'kernel=kernel8.img' to /boot/firmware/config.txt (and
  'dtparam=pciex1' for the PCIe connector), reboot, and run this again
  (geerlingguy/raspberry-pi-pcie-devices#44). Nothing was changed."
		fi
	fi
	info "Coral: TensorFlow $CORAL_TF on both sides: $(pinned_name "$CORAL_LIB_URL") + $(pinned_name "$CORAL_WHEEL_URL")${CORAL_NUMPY:+ with $CORAL_NUMPY}"
	if ((CORAL_PCIE)); then
		if ((CORAL_PLAN_ONLY)); then
			info "Coral PCIe: $(pinned_name "$CORAL_GASKET_URL") for the Pi's running kernel (the plan names this machine's, $(kernel_release))"
		else
			info "Coral PCIe: $(pinned_name "$CORAL_GASKET_URL") for kernel $(kernel_release)"
		fi
	fi
	for ev in "$lib_ev" "$wheel_ev"; do
		if [[ $ev == unverified ]]; then
			warn "the $codename pair is built from one TensorFlow version, but nobody is known to have run
  it with an Edge TPU yet (see CORAL_PINS). Check it with: sudo -u $SERVICE_USER $CLI_WRAPPER check --config $CONF_FILE"
			break
		fi
	done
	if [[ -n $CORAL_SHA256_FILE ]]; then
		[[ -f $CORAL_SHA256_FILE && -r $CORAL_SHA256_FILE ]] ||
			die "--coral-sha256: cannot read $CORAL_SHA256_FILE. Nothing was changed."
		CORAL_STRICT=1 # your digests: nothing else gets in
	fi
	fill_pin CORAL_LIB_SHA "$CORAL_LIB_URL"
	fill_pin CORAL_WHEEL_SHA "$CORAL_WHEEL_URL"
	((CORAL_PCIE)) && fill_pin CORAL_GASKET_SHA "$CORAL_GASKET_URL"
	[[ $CORAL_LIB_SHA == - ]] && unpinned+=("$(pinned_name "$CORAL_LIB_URL")")
	[[ $CORAL_WHEEL_SHA == - ]] && unpinned+=("$(pinned_name "$CORAL_WHEEL_URL")")
	((CORAL_PCIE)) && [[ $CORAL_GASKET_SHA == - ]] && unpinned+=("$(pinned_name "$CORAL_GASKET_URL")")
	((${#unpinned[@]})) || return 0
	if ((CORAL_STRICT)); then
		local msg="no sha256 pinned in CORAL_PINS for: ${unpinned[*]}.
  Strict mode (--coral-strict, --coral-sha256): pin them (how: the comment above CORAL_PINS in
  this script), or give their sha256, checked on a trusted machine, with --coral-sha256 FILE;
  edgepose will not install unverified binaries."
		if ((DRY_RUN)); then
			warn "$msg
  (dry run: the plan goes on; a real run stops here, before changing anything)"
		else
			die "$msg Nothing was changed."
		fi
	else
		warn "trust on first use for: ${unpinned[*]}.
  No sha256 is pinned for them in this script and none was given (--coral-sha256): each is
  downloaded over HTTPS from the GitHub release CORAL_PINS names, its sha256 is shown and
  recorded in $CORAL_RECORD, and every later run installs only those same bytes.
  To check them against digests you trust before anything is installed: --coral-sha256 FILE
  (docs/coral.md), or --coral-strict to refuse unpinned files."
	fi
	return 0
}

# --- Coral: fetch, verify, install ------------------------------------------------------

verify_sha256() { # FILE SHA256 [WHERE IT COMES FROM]: dies (and removes FILE) on a mismatch
	local from=${3:-pinned}
	if ((DRY_RUN)); then
		if [[ $2 == - ]]; then
			printf '+ %s\n' "verify sha256 $1 = NOT PINNED (a real run stops before downloading)"
		else
			printf '+ %s\n' "verify sha256 $1 = $2 ($from)"
		fi
		return 0
	fi
	[[ $2 =~ ^[0-9a-f]{64}$ ]] || die "no sha256 pinned for $1"
	local actual
	actual=$(sha256sum "$1" | cut -d' ' -f1)
	if [[ $actual != "$2" ]]; then
		rm -f "$1"
		die "sha256 mismatch for $1: got $actual, expected $2 ($from; file removed). The upload may have changed: check it before trusting it."
	fi
}

# The sha256 of a file downloaded for the first time with nothing to check it against:
# shown, and recorded so that every later run accepts only these bytes.
record_first_download() { # FILE NAME URL
	local file=$1 name=$2 url=$3 actual lines=() sha entry
	if ((DRY_RUN)); then
		printf '+ %s\n' "sha256 $file: shown and recorded in $CORAL_RECORD as $name (trust on first use; later runs accept only these bytes)"
		return 0
	fi
	actual=$(sha256sum "$file" | cut -d' ' -f1)
	info "sha256 of $name: $actual"
	info "  first download, trusted on first use: recorded in $CORAL_RECORD, later runs install only these bytes."
	info "  Compare it with the digest on the release page: ${url%/download/*}/tag/$(basename "$(dirname "$url")")"
	if [[ -r $CORAL_RECORD ]]; then
		while read -r sha entry; do
			[[ -n $sha && $sha != \#* && ${entry#\*} != "$name" ]] && lines+=("$sha  ${entry#\*}")
		done <"$CORAL_RECORD"
	fi
	run install -d -m 0755 "$(dirname "$CORAL_RECORD")"
	printf '%s\n' "# written by edgepose install.sh --coral: sha256 of each Coral file at its first download" \
		"# (trust on first use); re-runs install only these bytes. sha256sum -c reads it." "${lines[@]}" \
		"$actual  $name" | put_file "$CORAL_RECORD" 0644 root:root
}

FETCHED=""

fetch_pinned() { # URL SHA256 -> FETCHED: the verified local path (a verified copy is reused)
	local url=$1 sha=$2 file name
	name=$(pinned_name "$url")
	file=$CORAL_CACHE/$name
	FETCHED=$file
	if ((!DRY_RUN)) && [[ $sha != - && -f $file ]] && [[ $(sha256sum "$file" | cut -d' ' -f1) == "$sha" ]]; then
		info "have $file (sha256 ok)"
		return 0
	fi
	run install -d -m 0755 "$CORAL_CACHE"
	# HTTPS only, redirects (GitHub's download host) included.
	run curl -fsSL --proto '=https' --proto-redir '=https' --retry 3 -o "$file.part" "$url"
	if [[ $sha == - ]] && ((!CORAL_STRICT)); then
		record_first_download "$file.part" "$name" "$url"
	else # strict without a sha256: the dry run says so; a real run stopped in coral_preflight
		verify_sha256 "$file.part" "$sha" "${CORAL_SHA_FROM[$name]:-pinned}"
	fi
	run mv -f "$file.part" "$file"
}

apt_install_files() { # local .deb files (apt resolves their dependencies from the archive)
	info "installing with apt: ${*##*/}"
	apt_update
	run_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

coral_runtime() {
	local lib=libedgetpu1-$CORAL deb gasket headers
	if present "$CORAL_LEGACY_LIST"; then
		info "removing Coral's old apt repository (its libedgetpu is built for TF Lite 2.5)"
		run rm -f "$CORAL_LEGACY_LIST" "$CORAL_LEGACY_KEYRING"
		APT_UPDATED=0
	fi
	fetch_pinned "$CORAL_LIB_URL" "$CORAL_LIB_SHA"
	deb=$FETCHED
	if [[ $CORAL == max ]]; then
		# libedgetpu1-max asks to confirm it may run hot; answer yes for a non-interactive install.
		local eula='libedgetpu1-max libedgetpu/accepted-eula boolean true'
		if ((DRY_RUN)); then
			printf '+ %s\n' "echo '$eula' | debconf-set-selections"
		else
			debconf-set-selections <<<"$eula"
		fi
	fi
	# std and max conflict: apt swaps one for the other.
	apt_install_files "$deb"
	((CORAL_PCIE)) || return 0
	headers=linux-headers-$(kernel_release)
	local wanted=() pkg
	for pkg in dkms "$headers"; do
		deb_installed "$pkg" || wanted+=("$pkg")
	done
	# DKMS builds the apex module for the running kernel (and again on kernel upgrades).
	apt_install "${wanted[@]}"
	fetch_pinned "$CORAL_GASKET_URL" "$CORAL_GASKET_SHA"
	gasket=$FETCHED
	apt_install_files "$gasket"
}

service_user() {
	local group groups=()
	if user_exists "$SERVICE_USER"; then
		info "user $SERVICE_USER exists"
	else
		run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
			--shell /usr/sbin/nologin --comment 'edgepose service' "$SERVICE_USER"
	fi
	if ((CORAL_PCIE)) && ! group_exists apex; then
		# gasket-dkms's udev rule (and ours) hands /dev/apex_* to group apex.
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
	# The config is root:edgepose 0640 (it may name the MQTT user): the admin who ran
	# the install joins group edgepose so 'edgepose check --config $CONF_FILE' reads
	# it without sudo (after logging in again). Device checks as the service sees
	# them: sudo -u $SERVICE_USER edgepose check ...
	if [[ -n ${SUDO_USER:-} && ${SUDO_USER:-} != root ]]; then
		run usermod --append --groups "$SERVICE_USER" "$SUDO_USER"
		ADDED_ADMIN=$SUDO_USER
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
	[[ -n $CORAL_NUMPY ]] && lines+=("$CORAL_NUMPY")
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
		# The wheel verified against CORAL_PINS, never an index lookup.
		fetch_pinned "$CORAL_WHEEL_URL" "$CORAL_WHEEL_SHA"
		runtime=("$FETCHED")
		[[ -n $CORAL_NUMPY ]] && runtime+=("$CORAL_NUMPY")
		remove=ai-edge-litert
	else
		runtime=("$DEFAULT_RUNTIME")
		remove=tflite-runtime
	fi
	info "installing edgepose and ${runtime[*]##*/} into $SYS_VENV"
	run "$SYS_VENV/bin/python" -m pip install --disable-pip-version-check -q \
		--constraint "$SYS_CONSTRAINTS" "$REPO_DIR" "${runtime[@]}"
	# One TF Lite runtime only, so the backend cannot pick the one that does not match libedgetpu.
	run "$SYS_VENV/bin/python" -m pip uninstall --disable-pip-version-check -q -y "$remove"
	if [[ $CORAL ]]; then
		# A wheel built against another numpy fails only at import: find out now, not in the service.
		run "$SYS_VENV/bin/python" -c 'import tflite_runtime, tflite_runtime.interpreter; print("tflite_runtime", tflite_runtime.__version__)'
	fi
}

# edgepose on PATH. A small wrapper rather than a symlink: the CLI must find the
# installed models (EDGEPOSE_MODELS_DIR, as the unit sets it). A file there that
# install.sh did not write (a pip --user install, say) is left alone.
install_cli() {
	if present "$CLI_WRAPPER" && ! grep -qF "$CLI_MARKER" "$CLI_WRAPPER"; then
		warn "$CLI_WRAPPER exists and is not ours: leaving it; the installed CLI is $SYS_VENV/bin/edgepose"
		return 0
	fi
	put_file "$CLI_WRAPPER" 0755 root:root <<EOF
#!/bin/sh
$CLI_MARKER
: "\${EDGEPOSE_MODELS_DIR:=$SYS_MODELS}"
export EDGEPOSE_MODELS_DIR
exec $SYS_VENV/bin/edgepose "\$@"
EOF
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
	# Checks first: every reason to stop is found before anything changes.
	check_arch
	check_os
	check_checkout
	[[ $CORAL ]] && coral_preflight
	if ((!IS_PI)); then
		info "not a Raspberry Pi: no picamera2 (file, URL and V4L2 sources still work)"
	elif ((!PI_OS)); then
		warn "a Raspberry Pi, but not Raspberry Pi OS: python3-picamera2 is packaged only there, so the
  Pi camera source will not work (file, URL and V4L2 USB-camera sources do)"
	fi
	system_packages
	[[ $CORAL ]] && coral_runtime
	service_user
	system_venv
	install_cli
	install_models
	install_config
	install_unit
	start_service
	info "done. Follow it with:  journalctl -u $UNIT_NAME -f"
	info "config: $CONF_FILE   snapshots: $STATE_DIR   status: systemctl status $UNIT_NAME"
	info "check:  sudo -u $SERVICE_USER edgepose check --config $CONF_FILE   (as the service sees devices)"
	[[ -n $ADDED_ADMIN ]] && info "$ADDED_ADMIN joined group $SERVICE_USER (reads $CONF_FILE): log in again for it to apply"
	[[ $CORAL ]] && info "unplug and replug a USB Coral once so the new udev rules apply"
	((CORAL_PCIE)) && info "PCIe Coral: reboot so the apex driver loads, then: ls -l /dev/apex_0"
	return 0
}

do_uninstall() {
	if systemd_running; then
		run systemctl disable --now "$UNIT_NAME" || true
	else
		run systemctl disable "$UNIT_NAME" || true
	fi
	# With the service stopped, clear its retained topics and Home Assistant device
	# from the broker (best effort: an unreachable broker must not block the uninstall).
	if ((DRY_RUN)) || [[ -x $SYS_VENV/bin/edgepose && -r $CONF_FILE ]]; then
		run "$SYS_VENV/bin/edgepose" forget --config "$CONF_FILE" || warn "the broker still holds this node's retained topics"
	fi
	run rm -f "$UNIT_FILE" "$UDEV_RULES"
	run rm -rf "$DROPIN_DIR" "$PREFIX"
	if ((DRY_RUN)) || { [[ -e $CLI_WRAPPER ]] && grep -qF "$CLI_MARKER" "$CLI_WRAPPER"; }; then
		run rm -f "$CLI_WRAPPER"
	fi
	systemd_running && run systemctl daemon-reload
	if ((PURGE)); then
		run rm -rf "$CONF_DIR" "$STATE_DIR"
		run rm -rf "$CORAL_CACHE"
		run rm -f "$CORAL_LEGACY_LIST" "$CORAL_LEGACY_KEYRING"
		if user_exists "$SERVICE_USER" || ((DRY_RUN)); then
			run userdel "$SERVICE_USER"
		fi
		info "purged; apt packages (python3-picamera2, libedgetpu1-*, gasket-dkms, mosquitto) are left installed"
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

broker_enabled() { # is the system mosquitto.service enabled (before this run touches it)?
	case $BROKER_ENABLED_OVERRIDE in
	yes) return 0 ;;
	no) return 1 ;;
	esac
	((ASSUME_FRESH)) && return 1
	command -v systemctl >/dev/null && systemctl is-enabled --quiet mosquitto.service 2>/dev/null
}

POLICY_WRITTEN=0

remove_policy_rc_d() {
	((POLICY_WRITTEN)) || return 0
	run_root rm -f "$POLICY_RC_D"
	POLICY_WRITTEN=0
}

# Debian's mosquitto package enables and starts a system broker on port 1883 as
# it installs. The demo and the tests start their own on free loopback ports, so
# when this run is the one installing it, the system broker is kept from
# starting (a policy-rc.d that forbids service starts, for that apt call only)
# and left disabled, as it was before. A broker the user already had is untouched.
install_without_system_broker() { # PACKAGES... (mosquitto among them)
	local was_enabled=0
	broker_enabled && was_enabled=1
	if [[ -e $POLICY_RC_D ]] && ((!ASSUME_FRESH)); then
		info "$POLICY_RC_D exists: leaving it as it is"
	else
		info "keeping Debian's mosquitto.service from starting while it installs (the demo and tests run their own)"
		if ((DRY_RUN)); then
			printf '+ write %s (mode 0755, root:root): exit 101 (no service starts)\n' "$POLICY_RC_D"
		else
			local tmp
			tmp=$(mktemp)
			printf '%s\n' '#!/bin/sh' '# written by edgepose install.sh for one apt call; removed right after' 'exit 101' >"$tmp"
			run_root install -m 0755 "$tmp" "$POLICY_RC_D"
			rm -f "$tmp"
		fi
		POLICY_WRITTEN=1
		trap remove_policy_rc_d EXIT
	fi
	apt_install "$@"
	remove_policy_rc_d
	trap - EXIT
	if ((!was_enabled)) && { command -v systemctl >/dev/null || ((DRY_RUN)); }; then
		run_root systemctl disable --quiet mosquitto.service || warn "could not disable mosquitto.service"
	fi
}

dev_packages() {
	local missing=()
	if assumed_missing python3-venv || ! "$DEV_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
		missing+=(python3-venv)
	fi
	if assumed_missing mosquitto-clients || ! command -v mosquitto_sub >/dev/null; then
		missing+=(mosquitto-clients)
	fi
	if assumed_missing mosquitto || ! mosquitto_bin >/dev/null; then
		install_without_system_broker "${missing[@]}" mosquitto
	else
		apt_install "${missing[@]}"
	fi
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
	command -v "$DEV_PYTHON" >/dev/null || die "$DEV_PYTHON not found: install Python 3.11 or newer"
	version=$(python_version "$DEV_PYTHON") || die "cannot run $DEV_PYTHON"
	(($(python_minor "$version" || echo 0) >= 11)) || die "edgepose needs Python >= 3.11, $DEV_PYTHON is $version"
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
	check_arch
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
	check_arch
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
	info "topics:    $prefix/$node/poses, events, state, person_count, stats, availability (retained), snapshot"
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
CORAL_PCIE=0
WITH_MOSQUITTO=0
PURGE=0
BROKER=""
DURATION=""
PASSTHRU=()
IS_PI=0
PI_OS=0
PI_MODEL=""
ADDED_ADMIN=""

set_mode() {
	[[ $MODE == install ]] || usage_error "choose one of --demo, --test, --uninstall"
	MODE=$1
}

parse_args() {
	while (($#)); do
		case $1 in
		--demo) set_mode demo ;;
		--test) set_mode test ;;
		--uninstall) set_mode uninstall ;;
		--coral) [[ $CORAL == max ]] || CORAL=std ;;
		--coral-max) CORAL=max ;;
		--coral-pcie) CORAL_PCIE=1 ;;
		--coral-strict) CORAL_STRICT=1 ;;
		--with-mosquitto) WITH_MOSQUITTO=1 ;;
		--purge) PURGE=1 ;;
		--dry-run) DRY_RUN=1 ;;
		--broker | --duration | --coral-sha256)
			(($# >= 2)) || usage_error "$1 needs a value"
			case $1 in
			--broker) BROKER=$2 ;;
			--duration) DURATION=$2 ;;
			*) CORAL_SHA256_FILE=$2 ;;
			esac
			shift
			;;
		--coral-sha256=*) CORAL_SHA256_FILE=${1#*=} ;;
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
	((CORAL_PCIE)) && [[ -z $CORAL ]] && CORAL=std
	[[ -z $CORAL_SHA256_FILE || -n $CORAL ]] || usage_error "--coral-sha256 goes with --coral, --coral-max or --coral-pcie"
	((!CORAL_STRICT)) || [[ -n $CORAL ]] || usage_error "--coral-strict goes with --coral, --coral-max or --coral-pcie"

	case $MODE in
	demo) ;;
	*) [[ -z $BROKER && -z $DURATION ]] || usage_error "--broker and --duration go with --demo" ;;
	esac
	[[ $MODE == install ]] || [[ -z $CORAL && $WITH_MOSQUITTO == 0 ]] ||
		usage_error "--coral, --coral-max, --coral-pcie and --with-mosquitto go with the service install"
	[[ $MODE == uninstall ]] || ((!PURGE)) || usage_error "--purge goes with --uninstall"
	[[ $MODE == test || $MODE == demo ]] || ((${#PASSTHRU[@]} == 0)) ||
		usage_error "arguments after -- go with --test (pytest) or --demo (edgepose run)"
	[[ -z $BROKER ]] || [[ $BROKER =~ ^.+:[0-9]+$ ]] || usage_error "--broker takes HOST:PORT, not '$BROKER'"
	[[ -z $DURATION ]] || { [[ $DURATION =~ ^[0-9]+([.][0-9]+)?$ ]] && [[ $DURATION =~ [1-9] ]]; } ||
		usage_error "--duration takes seconds > 0, not '$DURATION'"
	return 0
}

# A real run reads the real machine, whatever the environment says.
real_machine_only() {
	((DRY_RUN)) && return 0
	OS_RELEASE=/etc/os-release DEVICE_MODEL=/proc/device-tree/model GROUP_FILE="" PYTHON_VERSION_OVERRIDE=""
	RPI_ISSUE=/etc/rpi-issue APT_SOURCES_DIR=/etc/apt ARCH_OVERRIDE="" KERNEL_OVERRIDE="" PAGE_SIZE_OVERRIDE=""
	ASSUME_MISSING="  " ASSUME_FRESH=0 SYSTEMD_OVERRIDE="" BROKER_ENABLED_OVERRIDE=""
	POLICY_RC_D=/usr/sbin/policy-rc.d CORAL_CACHE=/var/cache/edgepose/coral CORAL_RECORD=$CONF_DIR/coral.sha256
}

main() {
	local orig_args=("$@")
	parse_args "$@"
	real_machine_only
	if is_raspberry_pi; then
		IS_PI=1
		PI_MODEL=$(tr -d '\0' <"$DEVICE_MODEL")
		is_raspberry_pi_os && PI_OS=1
	fi

	SUDO=(sudo)
	[[ -z ${CI:-} ]] || SUDO+=(-n) # in CI nobody can type a password: fail instead of prompting

	case $MODE in
	install | uninstall)
		# The plan is printed as root would run it; a real run needs root.
		if ((EUID != 0)) && ((!DRY_RUN)); then
			command -v sudo >/dev/null || die "run as root (sudo is not installed)"
			exec "${SUDO[@]}" -- bash "$0" "${orig_args[@]}"
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
}

# Sourced (tests call single functions): define everything, run nothing.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi

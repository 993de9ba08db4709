#!/usr/bin/env bash
# Install percepnet-edge on a Raspberry Pi (or any systemd Linux): the device part only.
#
#   sudo systemd/install.sh                   install or upgrade from a checkout (needs the network for pip)
#   sudo systemd/install.sh --offline BUNDLE  the same from an offline bundle (scripts/package bundle: a .tar.gz
#                                             or its unpacked folder), with no network
#   sudo systemd/install.sh --card ID [--loopback N]   a daemon for sound card ID (its ALSA id, from
#                                             /proc/asound/cards): /etc/percepnet-edge/ID.yaml, started by udev as
#                                             percepnet-edge@ID when the card appears; apps read it as percepnet:N
#   sudo systemd/install.sh --rollback       back to the version the last upgrade replaced (kept until the next)
#   sudo systemd/install.sh --uninstall [--purge]      stop and remove everything (--purge: the configs too): the
#                                             service, every percepnet-edge@ instance, and users' instances
#   systemd/install.sh --root DIR --no-pip --no-start  stage the files under DIR (for packaging and tests)
#   --mode alsa|pipewire                      which set-up to start (default: pipewire when PipeWire is installed)
#
# What goes where: each version in its own folder, /opt/percepnet-edge/releases/STAMP: the program (the device
# wheel: the edge package, no host code) in a venv, the int8 models with their metadata and model cards, and the
# units and fragments of that version; /opt/percepnet-edge/venv and /opt/percepnet-edge/models are symbolic links
# to the live version's, and /opt/percepnet-edge/previous to the one it replaced (kept for --rollback; older ones
# are removed). The configs go in /etc/percepnet-edge (kept on upgrade), the units in /etc/systemd/system
# (percepnet-edge, percepnet-edge@) and /etc/systemd/user (percepnet-edge@, for PipeWire), the lock folder's
# tmpfiles.d entry, the udev rule that starts one daemon per configured card, snd-aloop (modules-load.d,
# modprobe.d), the `percepnet` ALSA PCM (/etc/alsa/conf.d) and the "Denoised microphone" PipeWire fragment.
#
# Upgrades: nothing goes live before the new version passes its checks. The new release is built beside the
# live one; every model in it is loaded by its own venv, and (alsa set-up) `percepnet-edge check` runs on the
# config with the new models. Only then do the links switch (a rename: a running daemon keeps reading the old
# files, which stay), the units and fragments are renamed into place, daemon-reload runs and the service
# restarts. A release that fails is removed and the running version is untouched. $SYSTEMCTL replaces
# systemctl and $LOGINCTL loginctl (tests point them at recorders; with them, --root installs call them too).
# $PYTHON is the python the venv is made from (default python3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="" ; pip=1 ; start=1 ; action=install ; purge=0 ; offline="" ; card="" ; loopback=0 ; mode=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --no-pip) pip=0; shift ;;
    --no-start) start=0; shift ;;
    --offline) offline="$2"; shift 2 ;;
    --card) action=card; card="$2"; shift 2 ;;
    --loopback) loopback="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --uninstall) action=uninstall; shift ;;
    --rollback) action=rollback; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
fail() { echo "install.sh: $*" >&2; exit 1; }
opt="$root/opt/percepnet-edge" ; etc="$root/etc/percepnet-edge"
system_units="$root/etc/systemd/system" ; user_units="$root/etc/systemd/user"
systemctl="${SYSTEMCTL:-systemctl}" ; loginctl="${LOGINCTL:-loginctl}" ; python="${PYTHON:-python3}"
releases="$opt/releases"
live() { [ "$start" = 1 ] && { [ -z "$root" ] || [ -n "${SYSTEMCTL:-}" ]; }; }
systemctl_live() { live && command -v "$systemctl" >/dev/null; }
host_live() { live && [ -z "$root" ]; }      # commands that change this machine (tmpfiles, udev, modules)
# Each fragment: source in systemd/ -> where it is installed.
FILES=(
  "percepnet-edge.service:$system_units/percepnet-edge.service"
  "percepnet-edge@.service:$system_units/percepnet-edge@.service"
  "user/percepnet-edge@.service:$user_units/percepnet-edge@.service"
  "percepnet-edge.tmpfiles.conf:$root/etc/tmpfiles.d/percepnet-edge.conf"
  "90-percepnet-edge.rules:$root/etc/udev/rules.d/90-percepnet-edge.rules"
  "snd-aloop.modules-load.conf:$root/etc/modules-load.d/percepnet-edge.conf"
  "snd-aloop.modprobe.conf:$root/etc/modprobe.d/percepnet-edge.conf"
  "asound-percepnet.conf:$root/etc/alsa/conf.d/60-percepnet-edge.conf"
  "pipewire-percepnet-edge.conf:$root/etc/pipewire/pipewire.conf.d/percepnet-edge.conf"
)

# Copy one file as a new inode renamed over the target: a running daemon that maps the old file
# keeps it intact (truncating it in place killed the daemon with SIGBUS).
install_file() {
  local source="$1" target="$2" tmp
  mkdir -p "$(dirname "$target")"
  tmp="$(mktemp "$(dirname "$target")/.$(basename "$target").XXXXXX")"
  if cp "$source" "$tmp" && chmod 0644 "$tmp" && mv -f "$tmp" "$target"; then return 0; fi
  rm -f "$tmp"
  return 1
}

# A config from configs/NAME.yaml with the model path of this install; never overwrites one.
install_config() {
  local source="$1" target="$2"
  if [ -f "$target" ]; then echo "kept existing $target"; return 0; fi
  sed "s#^  path: \.\./models/#  path: /opt/percepnet-edge/models/#" "$source" > "$target"
  echo "wrote $target"
}

# The desktop users whose user manager runs (percepnet-edge@ user instances live there).
user_managers() { command -v "$loginctl" >/dev/null && "$loginctl" list-users --no-legend 2>/dev/null | awk '{print $2}' || true; }

if [ "$action" = uninstall ]; then
  if systemctl_live; then
    "$systemctl" disable --now percepnet-edge.service || true
    # Instances of the template are started by udev (it has no [Install]): stop every one that runs.
    "$systemctl" stop 'percepnet-edge@*.service' || true
    for user in $(user_managers); do
      "$systemctl" --user -M "$user@" stop 'percepnet-edge@*.service' || true
    done
  fi
  # User instances enabled with `systemctl --user enable` (or --global): their links, or they start at login
  # with /opt gone.
  for link in "$user_units"/*.wants/percepnet-edge@*.service "$root"/home/*/.config/systemd/user/*.wants/percepnet-edge@*.service \
              "$root"/root/.config/systemd/user/*.wants/percepnet-edge@*.service; do
    if [ -L "$link" ]; then rm -f "$link"; echo "disabled $link"; fi
  done
  for pair in "${FILES[@]}"; do rm -f "${pair#*:}"; done
  rm -rf "$opt"
  [ "$purge" = 1 ] && rm -rf "$etc"
  if systemctl_live; then "$systemctl" daemon-reload; fi
  echo "percepnet-edge removed$([ "$purge" = 1 ] && echo ' (configs purged)' || echo "; configs kept in $etc")"
  exit 0
fi

# Point the link $opt/NAME at TARGET by a rename (never a moment without it); a real folder there (an install
# from before releases) is moved into a release of its own first, so that it can be rolled back to.
switch_link() {
  local name="$1" target="$2" legacy="$3"
  if [ -d "$opt/$name" ] && [ ! -L "$opt/$name" ]; then
    mkdir -p "$legacy"
    mv "$opt/$name" "$legacy/$name"
  fi
  ln -sfn "$target" "$opt/.$name.new"
  mv -Tf "$opt/.$name.new" "$opt/$name"
}

# The units and fragments of RELEASE into place (each renamed over the old one), then systemd told.
install_units() {
  local release="$1"
  for pair in "${FILES[@]}"; do
    [ -f "$release/systemd/${pair%%:*}" ] && install_file "$release/systemd/${pair%%:*}" "${pair#*:}"
  done
  if systemctl_live; then "$systemctl" daemon-reload; fi
}

restart_service() {
  if systemctl_live && [ "$mode" != pipewire ]; then
    "$systemctl" enable percepnet-edge.service
    "$systemctl" restart percepnet-edge.service
    "$systemctl" --no-pager status percepnet-edge.service | head -5 || true
  fi
}

if [ "$action" = rollback ]; then
  previous="$(readlink "$opt/previous" 2>/dev/null || true)"
  [ -n "$previous" ] && [ -d "$previous" ] || fail "no previous version to roll back to ($opt/previous is missing)"
  current="$(readlink "$opt/models" 2>/dev/null || true)"
  current="${current%/models}"
  [ -d "$previous/models" ] && switch_link models "$previous/models" "$releases/legacy"
  [ -d "$previous/venv" ] && switch_link venv "$previous/venv" "$releases/legacy"
  [ -n "$current" ] && ln -sfn "$current" "$opt/previous"
  [ -d "$previous/systemd" ] && install_units "$previous"
  mode="${mode:-alsa}"
  [ -f "$previous/MODE" ] && mode="$(cat "$previous/MODE")"
  restart_service
  echo "rolled back to $previous${current:+ (the version it replaced, $current, is kept: --rollback again returns to it)}"
  exit 0
fi

if [ "$action" = card ]; then
  [[ "$card" =~ ^[A-Za-z0-9_-]+$ ]] || fail "--card $card: an ALSA card id is letters, digits, '_' and '-' (see /proc/asound/cards)"
  [[ "$loopback" =~ ^[0-7]$ ]] || fail "--loopback $loopback: a loopback substream 0..7 (snd-aloop pcm_substreams=8)"
  [ -f "$etc/examples/headset-gateway.yaml" ] || fail "$etc/examples is missing: run systemd/install.sh first"
  mkdir -p "$etc"
  if [ -f "$etc/$card.yaml" ]; then
    echo "kept existing $etc/$card.yaml"
  else
    sed -e "s#CARD=Headset#CARD=$card#" -e "s#hw:Loopback,0,0#hw:Loopback,0,$loopback#" \
      "$etc/examples/headset-gateway.yaml" > "$etc/$card.yaml"
    echo "wrote $etc/$card.yaml: capture plughw:CARD=$card, enhanced audio to hw:Loopback,0,$loopback"
  fi
  echo "percepnet-edge@$card starts whenever card $card appears; apps record its denoised microphone as" \
       "'percepnet:$loopback' (arecord -D percepnet:$loopback ...). Now: sudo systemctl start" \
       "percepnet-edge@$(systemd-escape "$card" 2>/dev/null || echo "${card//-/\\x2d}").service"
  exit 0
fi

# Where the files come from: this checkout, or an offline bundle (a .tar.gz or its folder).
source_dir="$repo" ; cleanup=""
if [ -n "$offline" ]; then
  if [ -f "$offline" ]; then
    cleanup="$(mktemp -d)"
    tar -xzf "$offline" -C "$cleanup"
    source_dir="$(find "$cleanup" -mindepth 1 -maxdepth 1 -type d | head -1)"
  else
    source_dir="$(cd "$offline" && pwd)"
  fi
  [ -f "$source_dir/BUNDLE.json" ] || fail "$offline is not an offline bundle (no BUNDLE.json): build one with scripts/package bundle"
fi
if [ -z "$mode" ]; then
  if [ -x "$root/usr/bin/pipewire" ] || [ -f "$root/usr/lib/systemd/user/pipewire.service" ]; then mode=pipewire; else mode=alsa; fi
fi
[ "$mode" = alsa ] || [ "$mode" = pipewire ] || fail "--mode $mode: alsa or pipewire"

[ -f "$source_dir/models/lite/percepnet_lite.tflite" ] || \
  fail "$source_dir/models/lite/percepnet_lite.tflite is missing; run from a full checkout or a bundle"

# 1. The new release, built beside the live one: nothing live changes here.
mkdir -p "$releases" "$etc/examples"
release="$releases/$(date +%Y%m%d-%H%M%S)-$$"
mkdir "$release"
staged=0
drop_release() { if [ "$staged" = 0 ]; then rm -rf "$release"; fi; }
trap 'drop_release; [ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT
# The int8 models, their metadata and model cards; never the .keras training checkpoints.
(cd "$source_dir/models" && find . -type f \( -name '*.tflite' -o -name '*.json' -o -name MODEL_CARD.md \) -print0) |
  while IFS= read -r -d '' file; do
    case "$file" in *.json) [ -f "$source_dir/models/${file%.json}.tflite" ] || continue ;; esac
    install_file "$source_dir/models/$file" "$release/models/${file#./}"
  done
for pair in "${FILES[@]}"; do install_file "$source_dir/systemd/${pair%%:*}" "$release/systemd/${pair%%:*}"; done
echo "$mode" > "$release/MODE"

entry="$opt/venv/bin/percepnet-edge"          # --no-pip: the live program checks the new models
if [ "$pip" = 1 ]; then
  if [ -n "$offline" ]; then
    want="$(sed -n 's/.*"python": "\([0-9.]*\)".*/\1/p' "$source_dir/BUNDLE.json")"
    have="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [ "$want" = "$have" ] || fail "the bundle holds wheels for Python $want; $python here is $have"
    pipwheel="$(ls "$source_dir"/wheels/pip-*.whl | head -1)"
    # No ensurepip needed (Debian splits it into python3-venv): pip runs from its wheel.
    "$python" -m venv --without-pip --system-site-packages "$release/venv"
    pip_install=("$release/venv/bin/python" "$pipwheel/pip" install --quiet --no-index --find-links "$source_dir/wheels")
    "${pip_install[@]}" pip
    spec="percepnet-edge"
  else
    "$python" -m venv --system-site-packages "$release/venv"
    "$release/venv/bin/python" -m pip install --quiet --upgrade pip
    pip_install=("$release/venv/bin/python" -m pip install --quiet)
    built="$(mktemp -d)"
    spec="$("$release/venv/bin/python" "$repo/scripts/package" wheel --out "$built")"
  fi
  extras=edge
  "$release/venv/bin/python" -c "import alsaaudio" 2>/dev/null && extras=edge-no-alsa   # Debian's python3-alsaaudio
  "${pip_install[@]}" "$spec[$extras]"
  [ -z "$offline" ] && rm -rf "$built"
  entry="$release/venv/bin/percepnet-edge"
  # 2a. Every model of the release loads in its venv (metadata, checksum, feature version, runtime).
  for model in $(find "$release/models" -name '*.tflite'); do
    "$release/venv/bin/python" -c 'import sys; from edge.model.engine import ModelRunner; ModelRunner(sys.argv[1])' \
      "$model" || fail "$model does not load in the new version (above); nothing was changed: the running" \
                        "version and its files are as they were"
  done
fi

# 2b. SpeexDSP (libspeexdsp1), the echo canceller: a system library loaded by ctypes, not a pip package. Added
# when missing: from the bundle's .deb offline (it depends on libc6 alone), with apt otherwise. Noise suppression
# runs without it, so a failure is a warning: configs with echo.enabled fail `check` until it is installed.
ensure_speexdsp() {
  # grep reads everything (no -q): under pipefail an early exit would fail ldconfig with SIGPIPE
  if ldconfig -p 2>/dev/null | grep 'libspeexdsp\.so\.1 ' >/dev/null; then return 0; fi
  local deb="" debs=()
  if [ -n "$offline" ]; then
    for deb in "$source_dir"/debs/libspeexdsp1_*.deb; do [ -f "$deb" ] && debs+=("$deb"); done
    deb="${debs[0]:-}"                                   # none in an older bundle: the warning below
    if [ -n "$deb" ] && dpkg -i "$deb"; then echo "installed libspeexdsp1 from the bundle (echo cancellation)"; return 0; fi
  elif command -v apt-get >/dev/null && { DEBIAN_FRONTEND=noninteractive apt-get install -y -q libspeexdsp1 ||
         { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libspeexdsp1; }; }; then
    echo "installed libspeexdsp1 (echo cancellation)"; return 0
  fi
  local from="${deb:+ from $deb}"
  echo "install.sh: warning: libspeexdsp1 (SpeexDSP, the echo canceller) is not installed and could not be$from:" \
       "noise suppression works, but a config with echo.enabled: true fails 'check' until" \
       "'sudo apt-get install libspeexdsp1'" >&2
}
if [ -z "$root" ] && [ "$pip" = 1 ]; then ensure_speexdsp; fi

# 2c. `check` on the config with the new models, before anything goes live (alsa set-up; under PipeWire the
# desktop user runs it, as printed at the end).
live_config="$etc/config.yaml"
[ -f "$live_config" ] || live_config="$source_dir/configs/alsa.yaml"
if systemctl_live && [ "$mode" = alsa ]; then
  if host_live && ! modprobe snd-aloop; then
    echo "install.sh: warning: modprobe snd-aloop failed; check says what is missing" >&2
  fi
  candidate="$release/check-config.yaml"
  sed -e "s#^  path: \.\./models/#  path: $release/models/#" -e "s#/opt/percepnet-edge/models/#$release/models/#" \
    "$live_config" > "$candidate"
  if ! "$entry" check --config "$candidate"; then
    fail "'percepnet-edge check' failed on the new version (above), so nothing was changed: the running" \
         "service keeps its model, program, units and config. Fix $etc/config.yaml and run the installer again."
  fi
  rm -f "$candidate"
fi

# 3. Live: configs (kept when present), the links switched, the units renamed into place, systemd told.
for file in "$source_dir"/configs/*.yaml; do
  sed "s#^  path: \.\./models/#  path: /opt/percepnet-edge/models/#" "$file" > "$etc/examples/$(basename "$file")"
done
install_config "$source_dir/configs/alsa.yaml" "$etc/config.yaml"
install_config "$source_dir/configs/pipewire.yaml" "$etc/pipewire.yaml"
old="$(readlink "$opt/models" 2>/dev/null || true)"
old="${old%/models}"
legacy="$releases/legacy-$(basename "$release")"
switch_link models "$release/models" "$legacy"
[ "$pip" = 1 ] && switch_link venv "$release/venv" "$legacy"
staged=1
if [ -d "$legacy" ]; then old="$legacy"; fi
if [ -n "$old" ] && [ "$old" != "$release" ] && [ -d "$old" ]; then ln -sfn "$old" "$opt/previous"; fi
# Keep the live release and the previous one; older ones go.
keep_previous="$(readlink "$opt/previous" 2>/dev/null || true)"
for other in "$releases"/*; do
  [ "$other" = "$release" ] || [ "$other" = "$keep_previous" ] || rm -rf "$other"
done
install_units "$release"

if systemctl_live; then
  if host_live; then
    systemd-tmpfiles --create /etc/tmpfiles.d/percepnet-edge.conf      # the lock folder, now (at boot anyway)
    if command -v udevadm >/dev/null; then udevadm control --reload; fi
  fi
  if [ "$mode" = pipewire ]; then
    echo "PipeWire is installed (--mode pipewire): the daemon runs in the desktop user's session. As that user:"
    echo "  systemctl --user restart pipewire    # loads the 'Denoised microphone' fragment"
    echo "  $opt/venv/bin/percepnet-edge check --config $etc/pipewire.yaml"
    echo "  systemctl --user enable --now percepnet-edge@pipewire"
    echo "(--mode alsa sets up the system service on the loopback card instead)"
  else
    restart_service
  fi
fi
echo "installed percepnet-edge into ${root:-/} ($mode set-up${offline:+, offline from $offline}) as $release" \
     "$([ -L "$opt/previous" ] && echo "; the previous version is kept: install.sh --rollback")"

#!/usr/bin/env bash
# Install percepnet-edge as a systemd service on a Raspberry Pi (or any systemd Linux).
#
#   sudo systemd/install.sh              install or upgrade, then enable and start the service
#   sudo systemd/install.sh --uninstall  stop and remove the service and the program (keeps /etc config)
#   sudo systemd/install.sh --uninstall --purge   ... and the config
#   systemd/install.sh --root DIR --no-pip --no-start   stage the files under DIR (for packaging and tests)
#
# Upgrades in place are safe for a running service: every model file is written as a new file and
# renamed over the old one (the daemon keeps reading the old inode), and the service is enabled and
# restarted only after `percepnet-edge check` passes on the new files. $SYSTEMCTL replaces systemctl
# (tests point it at a recorder; with it, --root installs call it too).
#
# The program goes to /opt/percepnet-edge/venv (a venv with --system-site-packages, so Debian's
# python3-alsaaudio is used when installed), the models to /opt/percepnet-edge/models, the config
# to /etc/percepnet-edge/config.yaml (kept on upgrade), the unit to /etc/systemd/system.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="" ; pip=1 ; start=1 ; action=install ; purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --no-pip) pip=0; shift ;;
    --no-start) start=0; shift ;;
    --uninstall) action=uninstall; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
opt="$root/opt/percepnet-edge" ; etc="$root/etc/percepnet-edge" ; unit="$root/etc/systemd/system/percepnet-edge.service"
systemctl="${SYSTEMCTL:-systemctl}"
systemctl_live() { [ "$start" = 1 ] && { [ -z "$root" ] || [ -n "${SYSTEMCTL:-}" ]; } && command -v "$systemctl" >/dev/null; }

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

if [ "$action" = uninstall ]; then
  if systemctl_live; then "$systemctl" disable --now percepnet-edge.service || true; fi
  rm -f "$unit"
  rm -rf "$opt"
  [ "$purge" = 1 ] && rm -rf "$etc"
  if systemctl_live; then "$systemctl" daemon-reload; fi
  echo "percepnet-edge removed${purge:+}$([ "$purge" = 1 ] && echo ' (config purged)' || echo "; config kept in $etc")"
  exit 0
fi

[ -f "$repo/models/lite/percepnet_lite.tflite" ] || {
  echo "install.sh: $repo/models/lite/percepnet_lite.tflite is missing; run from a full checkout" >&2; exit 1; }
mkdir -p "$opt/models" "$etc" "$(dirname "$unit")"
(cd "$repo/models" && find . -type f -print0) | while IFS= read -r -d '' file; do
  install_file "$repo/models/$file" "$opt/models/${file#./}"
done
if [ "$pip" = 1 ]; then
  python3 -m venv --system-site-packages "$opt/venv"
  "$opt/venv/bin/python" -m pip install --quiet --upgrade pip
  extras=edge
  python3 -c "import alsaaudio" 2>/dev/null && extras=edge-no-alsa
  "$opt/venv/bin/python" -m pip install --quiet "$repo[$extras]"
fi
if [ ! -f "$etc/config.yaml" ]; then
  sed "s#^  path: \.\./models/#  path: /opt/percepnet-edge/models/#" "$repo/configs/default.yaml" > "$etc/config.yaml"
  echo "wrote $etc/config.yaml (edit the audio devices, run percepnet-edge check, then: sudo systemctl enable percepnet-edge && sudo systemctl restart percepnet-edge)"
else
  echo "kept existing $etc/config.yaml"
fi
install_file "$repo/systemd/percepnet-edge.service" "$unit"
if systemctl_live; then
  "$systemctl" daemon-reload
  if ! "$opt/venv/bin/percepnet-edge" check --config "$etc/config.yaml"; then
    echo "install.sh: 'percepnet-edge check' failed (above), so the service was not enabled or restarted" \
         "(a running one keeps its old model and config). Fix $etc/config.yaml, then:" \
         "sudo systemctl enable percepnet-edge && sudo systemctl restart percepnet-edge" >&2
    exit 1
  fi
  "$systemctl" enable percepnet-edge.service
  "$systemctl" restart percepnet-edge.service
  "$systemctl" --no-pager status percepnet-edge.service | head -5
fi
echo "installed percepnet-edge into ${root:-/}"

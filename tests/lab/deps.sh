#!/usr/bin/env bash
# Install what the lab and the tests need on a fresh Debian machine (run as root). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
packages=(docker-registry debootstrap systemd-container iproute2 openssh-client zstd tar curl ca-certificates
          git npm golang-go nftables openssl cmake g++ ccache shellcheck)
missing=()
for pkg in "${packages[@]}"; do
  case "$pkg" in
    golang-go) command -v go >/dev/null 2>&1 && continue ;;   # any Go >= 1.21 fetches the toolchain the build needs
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
core=$(python3 -c 'from tests.lab.versions import ANSIBLE_CORE_MAIN; print(ANSIBLE_CORE_MAIN)')
PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt \
  "ansible-core==$core"

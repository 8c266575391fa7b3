#!/usr/bin/env bash
# Proves the README's two commands on a fresh Debian 12: a `debootstrap --variant=minbase bookworm`
# root with the .NET SDK and only the packages the SDK documents as its own dependencies, then
# `./ra demo` and `./ra test` in it, as root (./ra installs the rest with apt-get).
#
#   sudo build/fresh-machine.sh [DIR]     DIR: where the root goes (default /var/tmp/ra-fresh-root;
#                                         removed first: every run starts fresh)
#   sudo build/fresh-machine.sh --reuse DIR   reruns the two commands on the current checkout in a
#                                         root made before (packages ./ra installed stay)
#
# Not for CI (it needs root, network access to Debian's and NuGet's registries, 3 GB of disk and
# about half an hour). What it prints last: the packages ./ra installed, each step's time, and
# ./ra test's closing line. The full log is DIR.log.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REUSE=0
if [ "${1:-}" = "--reuse" ]; then REUSE=1; shift; fi
DIR="${1:-/var/tmp/ra-fresh-root}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LOG="$DIR.log"

[ "$(id -u)" -eq 0 ] || { echo "fresh-machine: run as root (debootstrap and chroot need it)" >&2; exit 2; }
if [ $REUSE -eq 0 ]; then : > "$LOG"; fi
say() { printf '[fresh-machine %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }
summary=()
timed() { # timed LABEL CMD...: runs CMD, logs its output, records its time and exit code
  local label="$1"; shift
  local t0=$SECONDS rc
  say "$label…"
  set +e; "$@" >> "$LOG" 2>&1; rc=$?; set -e
  summary+=("$label: exit $rc, $((SECONDS - t0)) s")
  say "$label: exit $rc after $((SECONDS - t0)) s"
  return $rc
}

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount_in_root() {
  mount --bind "$1" "$DIR$1"; mounted+=("$DIR$1")
}

in_root() { # a login-like environment: nothing of this machine's but what is set here
  chroot "$DIR" env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM=dumb DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 \
    ${NUGET_CERT_REVOCATION_MODE:+NUGET_CERT_REVOCATION_MODE=$NUGET_CERT_REVOCATION_MODE} \
    bash -c "$1"
}

if [ $REUSE -eq 0 ]; then
  command -v debootstrap >/dev/null || { say "installing debootstrap"; apt-get install -y -qq debootstrap >> "$LOG" 2>&1; }
  if [ -d "$DIR" ]; then
    for m in proc sys dev/pts dev; do umount -l "$DIR/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$DIR"
  fi
  timed "debootstrap --variant=minbase bookworm" debootstrap --variant=minbase bookworm "$DIR" "$MIRROR"
fi

mkdir -p "$DIR/proc" "$DIR/sys" "$DIR/dev"
mount -t proc proc "$DIR/proc"; mounted+=("$DIR/proc")
mount_in_root /sys
mount_in_root /dev
mount_in_root /dev/pts
cp /etc/resolv.conf "$DIR/etc/resolv.conf"
# This machine's network: certificate authorities added here locally (a TLS-inspecting egress
# proxy, for instance) are trusted in the root too, or NuGet's HTTPS fails with UntrustedRoot.
# Part of the network, not of the project's needs; a real fresh machine has none.
local_cas() { ls /usr/local/share/ca-certificates/*.crt 2>/dev/null || true; }

if [ $REUSE -eq 0 ]; then
  # The .NET SDK's own dependencies on Debian 12, as dotnet/core documents them
  # (release-notes/10.0/os-packages.md), and nothing else.
  SDK_DEPS="ca-certificates libc6 libgcc-s1 libgssapi-krb5-2 libicu72 libssl3 libstdc++6 tzdata"
  timed "apt-get install the SDK's dependencies ($SDK_DEPS)" \
    in_root "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $SDK_DEPS"
  # The SDK itself: this machine's, copied in. Microsoft documents installing it by unpacking its
  # archive into a folder and putting `dotnet` on PATH (learn.microsoft.com/dotnet/core/install/
  # linux-scripted-manual#manual-install); a copy of an installed SDK is that folder. (Its package
  # feed and dotnet-install.sh are not reachable here.)
  if [ -n "$(local_cas)" ]; then
    mkdir -p "$DIR/usr/local/share/ca-certificates"
    cp $(local_cas) "$DIR/usr/local/share/ca-certificates/"
    timed "trust this machine's local CAs ($(local_cas | xargs -n1 basename | tr '\n' ' '))" in_root "update-ca-certificates"
  fi
  sdk="$(dirname "$(readlink -f "$(command -v dotnet)")")"
  timed "copy the .NET SDK ($sdk, $(dotnet --version))" cp -a "$sdk" "$DIR/usr/share/dotnet"
  ln -sf /usr/share/dotnet/dotnet "$DIR/usr/bin/dotnet"
  in_root "dpkg-query -W -f='\${Package}\n' | sort" > "$DIR.before-ra.txt"
fi

# The checkout as a clone has it: tracked files and untracked ones that are not ignored.
rm -rf "$DIR/root/repo"; mkdir -p "$DIR/root/repo"
(cd "$REPO" && git ls-files -z -co --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$DIR/root/repo"
say "checkout copied: $(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD || echo ' + uncommitted changes')"

demo_rc=0; test_rc=0
timed "./ra demo" in_root "cd /root/repo && ./ra demo" || demo_rc=$?
timed "./ra test" in_root "cd /root/repo && ./ra test" || test_rc=$?

in_root "dpkg-query -W -f='\${Package}\n' | sort" > "$DIR.after-ra.txt"
added=$(comm -13 "$DIR.before-ra.txt" "$DIR.after-ra.txt" | wc -l)
say "summary:"
for s in "${summary[@]}"; do say "  $s"; done
say "  Debian packages: $(wc -l < "$DIR.before-ra.txt") after the SDK's dependencies, $(wc -l < "$DIR.after-ra.txt") after ./ra ($added added by ./ra and their dependencies)"
say "  ./ra asked for: $(grep -o 'installing Debian packages: .*' "$LOG" | head -1 | cut -d: -f2- || true)"
say "  demo outputs: $(grep -o 'outputs in [^ ]*' "$LOG" | tail -1 || echo none)"
say "  ./ra test: $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG" | tail -1 || echo 'no closing line')"
[ $demo_rc -eq 0 ] && [ $test_rc -eq 0 ]

#!/usr/bin/env bash
# install.sh — install the Autobahn TestSuite (`wstest`, PyPI autobahntestsuite,
# Python 2.7 only) into a private prefix on a Debian 12 (bookworm) machine.
#
# Debian 12 ships no Python 2, so this script:
#   1. reads the Debian mirror the machine's apt already uses (from
#      /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list),
#   2. uses a PRIVATE apt configuration (own sources list naming the bullseye
#      suites of that mirror, own lists/cache dirs) to `apt-get download` the
#      Debian 11 python2.7 packages plus libssl1.1 and libffi7 — the machine's
#      own apt lists, cache and hooks are left untouched,
#   3. unpacks them with `dpkg -x` into the prefix (never into /),
#   4. bootstraps pip/setuptools/wheel from PyPI (the pip wheel is fetched with
#      the machine's python3 pip, then run straight from the wheel),
#   5. `pip install --user autobahntestsuite` (PYTHONUSERBASE in the prefix),
#      compiling its C extensions against the unpacked headers,
#   6. writes $PREFIX/bin/wstest-run, a wrapper that sets LD_LIBRARY_PATH,
#      PYTHONHOME and PYTHONUSERBASE and execs wstest with its arguments.
#
# Usage:   autobahn/install.sh            (as root; idempotent, fast when done)
# Env:     AUTOBAHN_PREFIX   install prefix (default: $HOME/.cache/ferry/autobahn)
# Needs:   Debian's apt and dpkg, network access to the Debian mirror and
#          PyPI; gcc and python3's pip, which it apt-get installs if missing.
# Takes:   about 30 s the first time, under 1 s once installed.
set -euo pipefail

AUTOBAHNTESTSUITE_VERSION=25.10.1
PIP_VERSION=20.3.4
SETUPTOOLS_VERSION=44.1.1
WHEEL_VERSION=0.37.1
DEB_SUITE=bullseye
DEB_PACKAGES=(
  python2.7 python2.7-minimal libpython2.7-stdlib libpython2.7-minimal
  libpython2.7 python2.7-dev libpython2.7-dev libssl1.1 libffi7
)

PREFIX="${AUTOBAHN_PREFIX:-$HOME/.cache/ferry/autobahn}"
case "$PREFIX" in /*) ;; *) PREFIX="$PWD/$PREFIX" ;; esac
PREFIX="${PREFIX%/}"
ROOTFS="$PREFIX/root"          # dpkg -x target: $ROOTFS/usr/bin/python2.7, ...
USERBASE="$PREFIX/user"        # PYTHONUSERBASE: pip --user installs go here
APTDIR="$PREFIX/apt"           # private apt config, lists and cache
WRAPPER="$PREFIX/bin/wstest-run"
STAMP="$PREFIX/.installed"

log() { printf '[autobahn/install] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
if [ -z "$PREFIX" ]; then die "AUTOBAHN_PREFIX must not be /"; fi

# --- 0. fast path: already installed and working ------------------------------
installed_ok() {
  [ -x "$WRAPPER" ] && [ -f "$STAMP" ] &&
    [ "$(cat "$STAMP")" = "autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION" ] &&
    "$WRAPPER" --autobahnversion 2>/dev/null |
      grep -qx "AutobahnTestSuite $AUTOBAHNTESTSUITE_VERSION"
}
if installed_ok; then
  log "wstest $AUTOBAHNTESTSUITE_VERSION already installed: $WRAPPER"
  exit 0
fi

start_ts=$(date +%s)
log "installing autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION into $PREFIX"
for tool in apt-get apt-config dpkg; do
  command -v "$tool" >/dev/null || die "'$tool' not found: this script needs Debian's apt"
done
# Build tools for the C extensions, and pip for fetching the pip wheel: from
# the machine's own (bookworm) apt, if missing.
missing=()
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get install ${missing[*]})"
  log "apt-get install ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# The prefix is ours alone: refuse a non-empty directory this script did not
# make (say AUTOBAHN_PREFIX=/usr), since parts of it are deleted below.
MARKER="$PREFIX/.autobahn-prefix"
if [ -d "$PREFIX" ] && [ ! -e "$MARKER" ] && [ -n "$(ls -A "$PREFIX")" ]; then
  die "$PREFIX is not empty and was not made by this script: choose another AUTOBAHN_PREFIX"
fi
mkdir -p "$PREFIX"
touch "$MARKER"
# A half-finished earlier attempt leaves an unknown state: start the parts over.
rm -rf "${ROOTFS:?}" "${USERBASE:?}" "${PREFIX:?}/bin" "$PREFIX/debs" "$PREFIX/wheels" "$STAMP"

# --- 1. find the Debian mirror the machine's apt uses -------------------------
# Picks the URI of the entry whose suite is exactly this machine's codename
# (e.g. "bookworm") and of the one for "<codename>-security", so third-party
# repositories listed next to Debian's are ignored.
# shellcheck disable=SC1091
. /etc/os-release
CODENAME="${VERSION_CODENAME:-bookworm}"

# Prints "URI SUITE" for each enabled 'deb' entry, deb822 and one-line formats.
apt_entries() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no")
          for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
        types = ""; enabled = ""; nu = 0; ns = 0
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        key = tolower($1); sub(/:$/, "", key)
        $1 = ""; sub(/^[ \t]+/, "")
        if (key == "types") types = $0
        else if (key == "enabled") enabled = $0
        else if (key == "uris") nu = split($0, u, /[ \t]+/)
        else if (key == "suites") ns = split($0, s, /[ \t]+/)
      }
      END { flush() }
    ' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # "deb [opts] URI SUITE COMPONENTS..." -> "URI SUITE"
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" { print $2, $3 }'
  done
}

MIRROR=""
SECURITY_MIRROR=""
while read -r uri suite; do
  case "$suite" in
    "$CODENAME")                              [ -n "$MIRROR" ] || MIRROR="$uri" ;;
    "$CODENAME-security" | "$CODENAME/updates") [ -n "$SECURITY_MIRROR" ] || SECURITY_MIRROR="$uri" ;;
  esac
done < <(apt_entries)
[ -n "$MIRROR" ] || die "no apt entry for suite '$CODENAME' found in /etc/apt"
MIRROR="${MIRROR%/}"
SECURITY_MIRROR="${SECURITY_MIRROR%/}"
log "Debian mirror: $MIRROR${SECURITY_MIRROR:+ (security: $SECURITY_MIRROR)}"

# --- 2. private apt configuration for the bullseye suites ----------------------
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -f "$KEYRING" ]; then SRC_OPTS="[signed-by=$KEYRING]"; else SRC_OPTS="[trusted=yes]"; fi
{
  echo "deb $SRC_OPTS $MIRROR $DEB_SUITE main"
  echo "deb $SRC_OPTS $MIRROR $DEB_SUITE-updates main"
  if [ -n "$SECURITY_MIRROR" ]; then
    echo "deb $SRC_OPTS $SECURITY_MIRROR $DEB_SUITE-security main"
  fi
} >"$APTDIR/sources.list"

# Read after the machine's apt.conf.d (apt-get -c), so these settings win.
# The #clear lines drop the machine's update/dpkg hooks (e.g. docker-clean),
# which would otherwise act on the machine's own cache during our update, and
# the AppStream (DEP-11) indexes, which only cost download time here.
cat >"$APTDIR/apt.conf" <<EOF
Dir::Etc::SourceList "$APTDIR/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "/dev/null";
Dir::State::Lists "$APTDIR/lists";
Dir::Cache "$APTDIR/cache";
Dir::Cache::archives "$APTDIR/cache/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Sandbox::User "root";
Acquire::Languages "none";
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear DPkg::Pre-Invoke;
#clear DPkg::Post-Invoke;
EOF
apt-config dump | sed -n 's/^\(Acquire::IndexTargets::deb::DEP-11[^: ]*\) .*/#clear \1;/p' |
  sort -u >>"$APTDIR/apt.conf"
papt() { apt-get -c "$APTDIR/apt.conf" -q "$@"; }

log "apt-get update (private lists for $DEB_SUITE)"
papt update >"$APTDIR/update.log" 2>&1 || { cat "$APTDIR/update.log" >&2; die "private apt-get update failed"; }
if grep -q '^\(W\|E\):' "$APTDIR/update.log"; then grep '^\(W\|E\):' "$APTDIR/update.log" >&2; fi

log "apt-get download ${DEB_PACKAGES[*]}"
mkdir -p "$PREFIX/debs"
(cd "$PREFIX/debs" && papt download "${DEB_PACKAGES[@]}" >/dev/null)

# --- 3. unpack into the prefix -------------------------------------------------
mkdir -p "$ROOTFS"
for deb in "$PREFIX"/debs/*.deb; do
  dpkg -x "$deb" "$ROOTFS"
done
PY="$ROOTFS/usr/bin/python2.7"
[ -x "$PY" ] || die "python2.7 not found after unpacking"
LIBSSL=$(find "$ROOTFS/usr/lib" -name 'libssl.so.1.1' | head -n1)
[ -n "$LIBSSL" ] || die "libssl.so.1.1 not found after unpacking"
LIBDIR=$(dirname "$LIBSSL")               # e.g. $ROOTFS/usr/lib/x86_64-linux-gnu
MULTIARCH=$(basename "$LIBDIR")

# --- 4. the private interpreter ----------------------------------------------
# Its environment is passed per call (not exported): python3 must not see it.
py2() {
  env -u PYTHONPATH -u PYTHONNOUSERSITE -u PYTHONSTARTUP \
    LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    PYTHONHOME="$ROOTFS/usr" \
    PYTHONUSERBASE="$USERBASE" \
    PIP_CACHE_DIR="$PREFIX/pip-cache" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_PYTHON_VERSION_WARNING=1 \
    "$PY" "$@"
}
py2 -c 'import ssl, ctypes, zlib, platform; print("python %s, %s" % (platform.python_version(), ssl.OPENSSL_VERSION))' >&2 ||
  die "the unpacked python2.7 does not run"

# --- 5. pip / setuptools / wheel, then autobahntestsuite -----------------------
mkdir -p "$PREFIX/wheels"
log "fetching pip $PIP_VERSION wheel (python3 pip download)"
python3 -m pip download -q --no-deps --python-version 2.7 --only-binary=:all: \
  "pip==$PIP_VERSION" -d "$PREFIX/wheels"
PIP_WHEEL="$PREFIX/wheels/pip-$PIP_VERSION-py2.py3-none-any.whl"
[ -f "$PIP_WHEEL" ] || die "pip wheel not downloaded"

log "bootstrapping pip==$PIP_VERSION setuptools==$SETUPTOOLS_VERSION wheel==$WHEEL_VERSION"
py2 "$PIP_WHEEL/pip" install -q --user --no-warn-script-location \
  "pip==$PIP_VERSION" "setuptools==$SETUPTOOLS_VERSION" "wheel==$WHEEL_VERSION"

# C extensions (wsaccel, ujson, Twisted, ...) build against the unpacked
# Python headers; Debian's pyconfig.h includes <$MULTIARCH/python2.7/pyconfig.h>.
cflags="-I$ROOTFS/usr/include -I$ROOTFS/usr/include/python2.7"
cflags+=" -I$ROOTFS/usr/include/$MULTIARCH -I$ROOTFS/usr/include/$MULTIARCH/python2.7"
log "pip install --user autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION (builds C extensions)"
CFLAGS="$cflags" CPPFLAGS="$cflags" LDFLAGS="-L$LIBDIR" \
  py2 -m pip install -q --user --no-warn-script-location \
  "autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION"
[ -f "$USERBASE/bin/wstest" ] || die "wstest script not installed"

# --- 6. wrappers ---------------------------------------------------------------
# Relocatable: each wrapper finds the prefix from its own location.
# write_wrapper FILE DESCRIPTION COMMAND (COMMAND may use "$PREFIX"; args follow)
write_wrapper() {
  cat >"$1" <<EOF
#!/bin/sh
# Generated by autobahn/install.sh: $2
# Python 2.7 was unpacked from Debian 11 packages into this prefix.
set -eu
PREFIX=\$(cd "\$(dirname "\$0")/.." && pwd)
LD_LIBRARY_PATH="\$PREFIX/root/usr/lib/$MULTIARCH\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
PYTHONHOME="\$PREFIX/root/usr"
PYTHONUSERBASE="\$PREFIX/user"
export LD_LIBRARY_PATH PYTHONHOME PYTHONUSERBASE
unset PYTHONPATH PYTHONNOUSERSITE PYTHONSTARTUP
exec $3 "\$@"
EOF
  chmod +x "$1"
}
mkdir -p "$PREFIX/bin"
# shellcheck disable=SC2016 # $PREFIX is expanded inside the wrapper, not here
write_wrapper "$WRAPPER" "runs the Autobahn TestSuite's wstest with these args." \
  '"$PREFIX/root/usr/bin/python2.7" "$PREFIX/user/bin/wstest"'
# Same environment, plain interpreter: handy for debugging the install.
# shellcheck disable=SC2016
write_wrapper "$PREFIX/bin/python2.7" "runs the private python2.7 with these args." \
  '"$PREFIX/root/usr/bin/python2.7"'

echo "autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION" >"$STAMP"
installed_ok || die "wstest does not run after install: try $WRAPPER --autobahnversion"
rm -rf "$PREFIX/debs" "$APTDIR/lists" "$APTDIR/cache"   # ~25 MB, not needed any more
log "done in $(( $(date +%s) - start_ts )) s: $WRAPPER"

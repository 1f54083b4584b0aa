# Shared helpers for Storeplane's scripts. Source it: `. "$(dirname "$0")/lib.sh"`.
# Everything here is idempotent: running a script twice does the work once.

set -euo pipefail

# A login-less environment (a service manager, `env -i`) may have no HOME: take the
# account's, which the caches below and Go's build cache need.
if [ -z "${HOME:-}" ]; then
  HOME="$(getent passwd "$(id -u)" | cut -d: -f6)"
  [ -n "$HOME" ] || { echo "error: HOME is not set and the account has no home directory; set HOME" >&2; exit 1; }
  export HOME
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${STOREPLANE_CACHE_DIR:-$HOME/.cache/storeplane}"
export STOREPLANE_CACHE_DIR="$CACHE_DIR"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

_apt_updated=0
# apt_install PKG... — installs Debian packages that are missing.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  if [ "$_apt_updated" -eq 0 ]; then
    $sudo apt-get update -qq >&2 || die "apt-get update failed"
    _apt_updated=1
  fi
  # Through `env`: sudo resets the environment, and debconf would then prompt.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "could not install ${missing[*]} with apt-get"
}

# free_port — prints a TCP port nothing listens on at 127.0.0.1, below the ephemeral
# range (where outgoing connections would take it) and above the well-known ports.
free_port() {
  local low=32768 p i
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  ((low > 11000)) || low=32768
  for ((i = 0; i < 200; i++)); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    echo "$p"
    return 0
  done
  die "no free port found on 127.0.0.1"
}

# drop_settings PATTERN... — unsets every exported STOREPLANE_* variable except those
# matching a PATTERN (shell globs): Storeplane's settings from the caller's environment
# (a real STOREPLANE_DATABASE_URL, key file, blueprints dir, …) must not reach the
# servers a script starts.
drop_settings() {
  local var keep
  while IFS= read -r var; do
    [[ "$var" == STOREPLANE_* ]] || continue
    for keep in "$@"; do
      # shellcheck disable=SC2053 # a glob on purpose
      [[ "$var" == $keep ]] && continue 2
    done
    unset "$var"
  done < <(compgen -e)
}

# need_cmd CMD PACKAGE — installs PACKAGE when CMD is missing.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
  command -v "$1" >/dev/null 2>&1 || die "$1 is still missing after installing $2"
}

# ensure_just — puts `just` on PATH (PyPI's rust-just wheel, else cargo install).
ensure_just() {
  command -v just >/dev/null 2>&1 && return 0
  local bin="$CACHE_DIR/tools/bin"
  export PATH="$bin:$PATH"
  command -v just >/dev/null 2>&1 && return 0
  say "installing just into $bin"
  mkdir -p "$bin"
  if python3 -m pip install --quiet --target "$CACHE_DIR/tools/rust-just" rust-just >&2 2>/dev/null \
     && [ -x "$CACHE_DIR/tools/rust-just/bin/just" ]; then
    ln -sf "$CACHE_DIR/tools/rust-just/bin/just" "$bin/just"
  else
    cargo install --quiet --locked --root "$CACHE_DIR/tools" just >&2
  fi
  command -v just >/dev/null 2>&1 || die "could not install just"
}

# Rust components needed by the checks.
ensure_rust() {
  command -v cargo >/dev/null 2>&1 || die "cargo is missing: install Rust with rustup (https://rustup.rs)"
  if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt >&2
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy >&2
  fi
}

#!/usr/bin/env bash
# Build the local throwaway-server images the provisioning layer can use when no
# image registry is reachable:
#   sessionspec/redis:7-local     (Debian bookworm redis-server 7.0)
#   sessionspec/postgres:15-local (Debian bookworm postgresql-15)
# Each is a debootstrap --variant=minbase root imported with `docker import`, plus a
# small entrypoint that accepts the official images' conventions (POSTGRES_USER /
# POSTGRES_PASSWORD / POSTGRES_DB; `redis-server ARGS`), so the provider code is the
# same for the official images and ours.
#
# Idempotent: an image that already exists is skipped (FORCE=1 rebuilds). The
# debootstrap root is cached as a tarball under ~/.cache/sessionspec (and the .debs
# in a package cache beside it), so a rebuild after `docker rmi` takes seconds.
#
# Env: SESSIONSPEC_DEBIAN_MIRROR (default: the mirror apt uses here, else
#      http://deb.debian.org/debian), SESSIONSPEC_DEBIAN_SUITE (default bookworm:
#      the package names below are bookworm's), FORCE=1, ONLY=redis|postgres.
set -euo pipefail

REDIS_IMAGE="sessionspec/redis:7-local"
POSTGRES_IMAGE="sessionspec/postgres:15-local"
SUITE="${SESSIONSPEC_DEBIAN_SUITE:-bookworm}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sessionspec"
ONLY="${ONLY:-}"
# Bump when the debootstrap step (packages, cleanup) changes, to invalidate caches.
ROOT_REV=2

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[build-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

T_ALL=$(now)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
# Temp dirs to remove however the script ends (a failed debootstrap or import too).
CLEANUP=()
cleanup() { [ ${#CLEANUP[@]} -eq 0 ] || $SUDO rm -rf "${CLEANUP[@]}"; }
trap cleanup EXIT

command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
# Images carry a hash of this script: editing an entrypoint rebuilds (from the cached
# root, in seconds) instead of silently keeping a stale image.
BUILD_ID=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
have_image() {
  [ "$(docker image inspect -f '{{ index .Config.Labels "org.sessionspec.build" }}' "$1" 2>/dev/null)" = "$BUILD_ID" ]
}

todo=()
if want redis; then
  if [ "${FORCE:-0}" != 1 ] && have_image "$REDIS_IMAGE"; then
    log "$REDIS_IMAGE already present (build $BUILD_ID): skipped"
  else todo+=(redis); fi
fi
if want postgres; then
  if [ "${FORCE:-0}" != 1 ] && have_image "$POSTGRES_IMAGE"; then
    log "$POSTGRES_IMAGE already present (build $BUILD_ID): skipped"
  else todo+=(postgres); fi
fi
if [ ${#todo[@]} -eq 0 ]; then
  log "nothing to build ($(elapsed "$T_ALL") s)"
  exit 0
fi

# The mirror apt is configured with (deb822 first, then the one-line format).
mirror() {
  if [ -n "${SESSIONSPEC_DEBIAN_MIRROR:-}" ]; then echo "$SESSIONSPEC_DEBIAN_MIRROR"; return; fi
  local m=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk '/^deb / && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=$(mirror)


ensure_debootstrap() {
  command -v debootstrap >/dev/null && return
  log "installing debootstrap via apt"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null
}

# rootfs_tar NAME PACKAGES: sets TARBALL to a cached tarball of a cleaned minbase root.
rootfs_tar() {
  local name="$1" pkgs="$2"
  local tarball="$CACHE/rootfs-$name-$SUITE-r$ROOT_REV.tar"
  TARBALL="$tarball"
  if [ -s "$tarball" ]; then
    log "$name: using cached root $tarball"
    return
  fi
  ensure_debootstrap
  mkdir -p "$CACHE/debs"
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/sessionspec-rootfs-$name.XXXXXX")
  CLEANUP+=("$dir")
  local t; t=$(now)
  log "$name: debootstrap --variant=minbase --include=$pkgs $SUITE from $MIRROR"
  # invoke-rc.d refuses to start services in a chroot, so nothing runs on the host.
  if ! $SUDO debootstrap --variant=minbase --include="$pkgs" --cache-dir="$CACHE/debs" \
        "$SUITE" "$dir" "$MIRROR" >"$CACHE/debootstrap-$name.log" 2>&1; then
    tail -20 "$CACHE/debootstrap-$name.log" >&2
    $SUDO rm -rf "$dir"
    die "debootstrap failed for $name (log: $CACHE/debootstrap-$name.log)"
  fi
  log "$name: debootstrap took $(elapsed "$t") s"
  # Small-ish: drop docs, man pages, translations, apt lists, the Debian-made
  # default clusters (our entrypoint makes its own data directory), and for
  # Postgres the JIT (LLVM is half the root; the servers run with jit=off) and
  # the perl modules only postgresql-common's wrapper scripts use.
  $SUDO rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
    "$dir"/usr/share/locale/* "$dir"/usr/share/i18n "$dir"/var/lib/apt/lists/* \
    "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log \
    "$dir"/var/lib/postgresql/*/main "$dir"/etc/postgresql/*/main \
    "$dir"/usr/lib/postgresql/*/lib/bitcode "$dir"/usr/lib/postgresql/*/lib/llvmjit* \
    "$dir"/usr/lib/x86_64-linux-gnu/libLLVM-* "$dir"/usr/lib/x86_64-linux-gnu/libz3.so* \
    "$dir"/usr/lib/*-linux-gnu/libLLVM-* "$dir"/usr/lib/*-linux-gnu/libz3.so*
  if [ -e "$dir/usr/lib/postgresql" ]; then
    $SUDO rm -rf "$dir"/usr/share/perl "$dir"/usr/lib/*-linux-gnu/perl
  fi
  $SUDO mkdir -p "$dir/data"
  $SUDO tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
  $SUDO rm -rf "$dir"
  mv "$tarball.tmp" "$tarball"
}

# import_image TARBALL IMAGE ENTRYPOINT_FILE CHANGES...
# Appends the entrypoint to a copy of the cached root, then `docker import`s it.
import_image() {
  local tarball="$1" image="$2" entry="$3"; shift 3
  local work; work=$(mktemp -d "${TMPDIR:-/tmp}/sessionspec-import.XXXXXX")
  CLEANUP+=("$work")
  mkdir -p "$work/overlay/usr/local/bin"
  cp "$entry" "$work/overlay/usr/local/bin/docker-entrypoint.sh"
  chmod 0755 "$work/overlay/usr/local/bin/docker-entrypoint.sh"
  cp "$tarball" "$work/root.tar"
  tar -C "$work/overlay" --owner=0 --group=0 --numeric-owner -rf "$work/root.tar" \
    ./usr/local/bin/docker-entrypoint.sh
  local t; t=$(now)
  local changes=(-c "LABEL org.sessionspec.build=$BUILD_ID")
  for c in "$@"; do changes+=(-c "$c"); done
  local previous; previous=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  docker import "${changes[@]}" -m "sessionspec local image ($SUITE minbase)" \
    "$work/root.tar" "$image" >/dev/null
  # The replaced build would linger as a dangling image; drop it unless a container uses it.
  [ -z "$previous" ] || docker rmi "$previous" >/dev/null 2>&1 || true
  rm -rf "$work"
  log "$image: docker import took $(elapsed "$t") s, size $(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

ENTRY_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sessionspec-entry.XXXXXX")
CLEANUP+=("$ENTRY_DIR")

cat >"$ENTRY_DIR/redis.sh" <<'EOF'
#!/bin/sh
# `docker run IMAGE [redis-server] [ARGS]`: like the official image, flags alone are
# passed to redis-server. Defaults let the server be reached through a published port.
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then
  shift
  set -- redis-server --bind 0.0.0.0 --protected-mode no --dir /data "$@"
fi
exec "$@"
EOF

cat >"$ENTRY_DIR/postgres.sh" <<'EOF'
#!/bin/sh
# The official postgres image's env contract on Debian's postgresql-15:
# POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust),
# POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER), PGDATA.
# `docker run IMAGE [postgres] [-c name=value ...]`.
set -eu
PGBIN=/usr/lib/postgresql/15/bin
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" != postgres ]; then exec "$@"; fi
shift
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
if [ "$(id -u)" != 0 ]; then as_pg() { "$@"; }; fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "error: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  pw=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pw"
  chown postgres "$pw"
  as_pg "$PGBIN/initdb" -D "$PGDATA" --username="$user" --pwfile="$pw" \
    --encoding=UTF8 --locale=C --auth-local=trust --auth-host="$auth" >/dev/null
  rm -f "$pw"
  echo "host all all all $auth" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    dbq=$(printf '%s' "$db" | sed 's/"/""/g')
    echo "CREATE DATABASE \"$dbq\"" | as_pg "$PGBIN/postgres" --single -D "$PGDATA" -j postgres >/dev/null
  fi
fi
mkdir -p /var/run/postgresql
chown postgres:postgres /var/run/postgresql
# `docker stop` sends SIGTERM (docker import cannot set STOPSIGNAL): turn it into
# Postgres' fast shutdown (SIGINT) so a stop never waits on idle client connections.
# (setpriv execs postgres, so $! is the postmaster itself, not a subshell.)
if [ "$(id -u)" = 0 ]; then
  setpriv --reuid=postgres --regid=postgres --init-groups \
    "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@" &
else
  "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' "$@" &
fi
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' INT TERM
trap 'kill -QUIT "$pid" 2>/dev/null' QUIT
status=0
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid" && status=0 || status=$?
done
exit "$status"
EOF

for what in "${todo[@]}"; do
  t=$(now)
  case "$what" in
    redis)
      rootfs_tar redis redis-server
      import_image "$TARBALL" "$REDIS_IMAGE" "$ENTRY_DIR/redis.sh" \
        'WORKDIR /data' 'EXPOSE 6379' \
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
        'CMD ["redis-server"]'
      ;;
    postgres)
      # tzdata: server time zones (the suite runs Postgres far from UTC).
      rootfs_tar postgres postgresql-15,tzdata
      import_image "$TARBALL" "$POSTGRES_IMAGE" "$ENTRY_DIR/postgres.sh" \
        'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'ENV PGDATA=/var/lib/postgresql/data' 'EXPOSE 5432' \
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
        'CMD ["postgres"]'
      ;;
  esac
  log "$what: done in $(elapsed "$t") s"
done
log "all done in $(elapsed "$T_ALL") s"

#!/usr/bin/env bash
# Builds the spiwire image and runs the compose rig for real, on a machine that has no Docker
# engine and cannot pull images: Debian's docker.io and docker-compose, a dockerd started here,
# and a node:20-bookworm-slim base image made offline with debootstrap plus this machine's node.
# Then the swarm farm of docs/deployment.md. Needs root. Prints "compose: PASSED" (or FAILED), then
# "swarm: PASSED" (or FAILED), last; exits non-zero on any failure.
#
#   bash docker/ci.sh
#
# The debootstrap tree (SPIWIRE_ROOTFS, default /var/tmp/spiwire-rootfs) and the imported base
# image are kept and reused by later runs on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOTFS=${SPIWIRE_ROOTFS:-/var/tmp/spiwire-rootfs}
BASE_IMAGE=node:20-bookworm-slim
SUITE=bookworm
export SPIWIRE_IMAGE=spiwire:ci
export COMPOSE_PROJECT_NAME=spiwire-ci
# A throwaway token for this run, shared by the daemon and the rig.
SPIWIRE_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export SPIWIRE_TOKEN
WORK=$(mktemp -d /var/tmp/spiwire-ci.XXXXXX)
DOCKERD_PID=""
CHECK=spiwire-ci-check
FARM=spiwire-farm
SWARM_INIT=""

say() { echo "== $*"; }
fail() { echo "ci.sh: $*" >&2; exit 1; }
# Debian's client, the same version as its engine (another docker client may come first on PATH).
docker() { /usr/bin/docker "$@"; }

cleanup() {
  local rc=$?
  set +e
  if docker version >/dev/null 2>&1; then
    if [ -n "$SWARM_INIT" ]; then
      [ "$rc" -eq 0 ] || for c in $(docker ps -aq --filter "label=com.docker.stack.namespace=$FARM"); do docker logs "$c" 2>&1 | tail -n 5; done
      docker stack rm "$FARM" >/dev/null 2>&1
      docker swarm leave --force >/dev/null 2>&1
    fi
    [ "$rc" -eq 0 ] || docker-compose logs --no-color --tail=40 2>/dev/null
    docker-compose down -v --remove-orphans >/dev/null 2>&1
    docker rm -f "$CHECK" >/dev/null 2>&1
  fi
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$DOCKERD_PID" 2>/dev/null && kill -9 "$DOCKERD_PID"
    wait "$DOCKERD_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
  echo "ci.sh: ${SECONDS}s"
  if [ "$rc" -eq 0 ]; then echo "compose: PASSED"; else echo "compose: FAILED"; fi
  if [ -n "$SWARM_INIT" ]; then
    if [ "$rc" -eq 0 ]; then echo "swarm: PASSED"; else echo "swarm: FAILED"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The first enabled "deb" source for $SUITE in the machine's apt sources, one-line or deb822 style.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in
      *.sources)
        awk -v RS= -v suite="$SUITE" '{
          uris = ""; suites = ""; types = ""; on = 1
          n = split($0, l, "\n")
          for (i = 1; i <= n; i++) {
            if (l[i] ~ /^URIs:/) { uris = l[i]; sub(/^URIs:[ \t]*/, "", uris) }
            else if (l[i] ~ /^Suites:/) suites = " " substr(l[i], 8) " "
            else if (l[i] ~ /^Types:/) types = " " substr(l[i], 7) " "
            else if (tolower(l[i]) ~ /^enabled:[ \t]*no/) on = 0
          }
          split(uris, u, /[ \t]+/)
          if (on && types ~ /[ \t]deb[ \t]/ && suites ~ ("[ \t]" suite "[ \t]") && u[1] ~ /^https?:/) { print u[1]; exit }
        }' "$f" ;;
      *)
        sed -e 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite && $2 ~ /^https?:/ { print $2; exit }' ;;
    esac
  done | head -n 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root"

say "packages"
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null || ! command -v debootstrap >/dev/null || ! command -v openssl >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io docker-compose debootstrap openssl >/dev/null
fi
docker-compose version --short

say "host build (npm ci, tsc -b)"
[ -d node_modules ] || npm ci --no-audit --no-fund
npx tsc -b

say "dockerd"
if docker version >/dev/null 2>&1; then
  echo "using the engine already running (it is left running)"
else
  dockerd >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
fi
docker version --format 'engine {{.Server.Version}}' || { tail -n 20 "$WORK/dockerd.log"; fail "dockerd did not start"; }

say "base image $BASE_IMAGE"
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "reusing the existing image"
else
  if [ ! -f "$ROOTFS.done" ]; then
    MIRROR=$(debian_mirror)
    [ -n "$MIRROR" ] || fail "no Debian $SUITE mirror in /etc/apt/sources.list{,.d}"
    echo "debootstrap from $MIRROR into $ROOTFS"
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase --include=tini,ca-certificates,libstdc++6,passwd "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    touch "$ROOTFS.done"
  fi
  # This machine's node (npm is not needed at run time: the app is built on the host).
  install -m 0755 "$(readlink -f "$(command -v node)")" "$ROOTFS/usr/local/bin/node"
  tar -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' - "$BASE_IMAGE" >/dev/null
fi
docker run --rm "$BASE_IMAGE" node --version

say "docker build"
docker build -f docker/Dockerfile -t "$SPIWIRE_IMAGE" . >"$WORK/build.log" 2>&1 \
  || { tail -n 30 "$WORK/build.log"; fail "docker build failed"; }
grep -E '^(Step|Successfully built|pruned)' "$WORK/build.log" | cut -c 1-110
docker image prune -f >/dev/null # the build stage's image, so that repeated runs do not fill the disk

say "image checks"
uid=$(docker run --rm "$SPIWIRE_IMAGE" id -u)
[ "$uid" != 0 ] || fail "the image runs as root"
echo "runs as uid $uid ($(docker inspect --format '{{.Config.User}}' "$SPIWIRE_IMAGE"))"
pid1=$(docker run --rm "$SPIWIRE_IMAGE" cat /proc/1/comm)
[ "$pid1" = tini ] || fail "PID 1 is $pid1, not tini"
echo "PID 1 is tini"

# Without a token the daemon must refuse to start, and say why.
set +e
out=$(timeout 30 docker run --rm "$SPIWIRE_IMAGE" 2>&1)
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "the daemon started without a token"
grep -q 'without a token' <<<"$out" || { echo "$out"; fail "no clear message without a token"; }
echo "without a token: exit $rc, $(grep -o '"err":"[^"]*"' <<<"$out")"

# With the token in a secret file: healthy, then a clean stop on SIGTERM.
echo "$SPIWIRE_TOKEN" >"$WORK/token" && chmod 0644 "$WORK/token"
docker run -d --name "$CHECK" -e SPIWIRE_TOKEN_FILE=/run/secrets/spiwire_token \
  -v "$WORK/token:/run/secrets/spiwire_token:ro" "$SPIWIRE_IMAGE" >/dev/null
status=starting
for _ in $(seq 1 60); do
  status=$(docker inspect --format '{{.State.Health.Status}}' "$CHECK")
  [ "$status" = starting ] || break
  sleep 0.5
done
[ "$status" = healthy ] || { docker logs "$CHECK"; fail "health: $status"; }
echo "health: $status"
t0=$(date +%s%N)
docker stop -t 10 "$CHECK" >/dev/null
ms=$((($(date +%s%N) - t0) / 1000000))
code=$(docker inspect --format '{{.State.ExitCode}}' "$CHECK")
[ "$code" = 0 ] || { docker logs "$CHECK"; fail "exit code $code after SIGTERM"; }
[ "$ms" -lt 5000 ] || fail "docker stop took ${ms} ms"
echo "docker stop: exit code $code after ${ms} ms"
docker rm "$CHECK" >/dev/null

say "compose rig"
# The daemon's published port on the host's loopback: any free one.
SPIWIRE_HOST_PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
export SPIWIRE_HOST_PORT
timeout 180 docker-compose up --no-color --abort-on-container-exit --exit-code-from rig

say "compose rig over TLS"
# A CA and a certificate for the daemon's names in the rig network, made for this run.
TLS=$WORK/tls
mkdir -p "$TLS"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TLS/ca.key" -out "$TLS/ca.pem" -days 2 -subj '/CN=spiwire ci CA' 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$TLS/server.key" -out "$TLS/server.csr" -subj '/CN=spiwire' 2>/dev/null
printf 'subjectAltName=DNS:spiwire,DNS:localhost,IP:127.0.0.1\n' >"$TLS/san.ext"
openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" -CAcreateserial -out "$TLS/server.pem" -days 2 -extfile "$TLS/san.ext" 2>/dev/null
# The daemon runs as uid 10001: it must read the key (a throwaway one, in a private directory).
chmod 0755 "$TLS" && chmod 0644 "$TLS"/*
export SPIWIRE_TLS_DIR=$TLS
docker-compose down -v --remove-orphans >/dev/null 2>&1
timeout 180 docker-compose -f docker-compose.yml -f docker/compose.tls.yml up --no-color --abort-on-container-exit --exit-code-from rig

say "compose rig with Prometheus (profile metrics)"
docker-compose -f docker-compose.yml -f docker/compose.tls.yml down -v --remove-orphans >/dev/null 2>&1
SPIWIRE_PROMETHEUS_PORT=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
export SPIWIRE_PROMETHEUS_PORT
timeout 300 docker-compose --profile metrics build prometheus >"$WORK/prometheus-build.log" 2>&1 \
  || { tail -n 30 "$WORK/prometheus-build.log"; fail "the Prometheus image did not build"; }
timeout 120 docker-compose --profile metrics up -d --no-color spiwire peers prometheus
timeout 120 docker-compose run --rm rig
# The scrape succeeds and the counters moved with the rig's traffic.
timeout 90 node -e '
  const url = `http://127.0.0.1:${process.env.SPIWIRE_PROMETHEUS_PORT}/api/v1/query?query=`;
  const value = async (q) => {
    const r = await (await fetch(url + encodeURIComponent(q))).json();
    return Number(r.data?.result?.[0]?.value?.[1] ?? NaN);
  };
  (async () => {
    for (let i = 0; i < 80; i++) {
      const up = await value("up{job=\"spiwire\"}").catch(() => NaN);
      const opened = await value("spiwire_sessions_opened_total").catch(() => NaN);
      const sent = await value("sum(spiwire_sent_bytes_total)").catch(() => NaN);
      if (up === 1 && opened >= 1 && sent > 0) {
        console.log(`prometheus: target up, ${opened} session(s) opened, ${sent} bytes sent`);
        return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    console.error("prometheus: the scrape never showed the traffic of the rig");
    process.exit(1);
  })();
' || fail "Prometheus did not scrape the daemon's counters"
docker-compose --profile metrics down -v --remove-orphans >/dev/null 2>&1

say "swarm farm (docker stack deploy)"
# Several daemon replicas behind one service name and several rigs, on this one node. The rigs
# must spread over the replicas, and each rig's cut connection must resume on its own replica.
docker swarm leave --force >/dev/null 2>&1 || true
# On a machine that ran this before, `docker stack rm` may have returned before the last farm's
# containers were gone; their logs would count as this run's rigs. Remove them first.
old_farm=$(docker ps -aq --filter "label=com.docker.stack.namespace=$FARM")
[ -z "$old_farm" ] || docker rm -f $old_farm >/dev/null 2>&1 || true
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
SWARM_INIT=1
RIGS=6
export SPIWIRE_REPLICAS=3 SPIWIRE_FARM_RIGS=0
docker stack deploy -c docker/stack.yml "$FARM" >/dev/null
# The daemons and the peers first: running, and healthy where they have a health check.
farm_ready() {
  local want=$((SPIWIRE_REPLICAS + 1)) n=0 c
  for c in $(docker ps -q --filter "label=com.docker.stack.namespace=$FARM"); do
    case "$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$c")" in
      healthy) n=$((n + 1)) ;;
    esac
  done
  [ "$n" -ge "$want" ]
}
for _ in $(seq 1 120); do farm_ready && break; sleep 0.5; done
farm_ready || { docker service ls; fail "the farm's daemons and peers did not become healthy"; }
echo "$SPIWIRE_REPLICAS daemon replicas and the peers are healthy"
docker service scale --detach "$FARM"_rig="$RIGS" >/dev/null
# Every rig task runs once: wait until each has ended (Complete, Failed or Rejected).
rigs_done() {
  local states
  states=$(docker service ps "$FARM"_rig --format '{{.CurrentState}}' 2>/dev/null)
  [ "$(grep -cE '^(Complete|Failed|Rejected|Shutdown)' <<<"$states")" -ge "$RIGS" ]
}
for _ in $(seq 1 240); do rigs_done && break; sleep 0.5; done
docker service ps "$FARM"_rig --format '{{.Name}} {{.CurrentState}} {{.Error}}' | sed 's/^/  /'
rigs_done || fail "the rigs did not all finish within 120 s"
# Each finished rig's container stays until the stack is removed: its log is its result.
logs=$(for c in $(docker ps -aq --filter "label=com.docker.swarm.service.name=${FARM}_rig"); do docker logs "$c" 2>&1; done)
passed=$(grep -c 'rig: PASSED' <<<"$logs" || true)
resumed=$(grep -c 'rig: resume: the session was resumed' <<<"$logs" || true)
daemons=$(grep -oE 'rig: daemon [0-9a-f-]+' <<<"$logs" | sort -u | wc -l)
grep -oE 'rig: daemon .*\(RIG_SLOT [0-9]+\)' <<<"$logs" | sort -t' ' -k7n | sed 's/^/  /' || true
echo "rigs passed: $passed of $RIGS; sessions resumed on their replica: $resumed; distinct daemons reached: $daemons"
[ "$passed" -eq "$RIGS" ] || { grep -A3 'rig: FAILED' <<<"$logs"; fail "not every rig passed"; }
[ "$resumed" -eq "$RIGS" ] || fail "not every rig's session was resumed"
# Rig n picks the n-th replica (RIG_SLOT in docker/stack.yml): with at least as many rigs as
# replicas, every replica serves some.
want=$(( RIGS < SPIWIRE_REPLICAS ? RIGS : SPIWIRE_REPLICAS ))
[ "$daemons" -ge "$want" ] || fail "the rigs reached $daemons of the $SPIWIRE_REPLICAS daemons: not spread over the replicas"

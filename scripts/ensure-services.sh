#!/usr/bin/env bash
# Starts the local services the test suite talks to, when they are installed but stopped.
# PostgreSQL and Redis come with the machine; this only wakes them up. Missing services are reported, and the
# tests themselves decide: with CI=true a missing service fails its tests instead of skipping them.
set -u

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if command -v pg_isready >/dev/null 2>&1; then
  if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      version=$(ls /etc/postgresql | sort -V | tail -n 1)
      echo "ensure-services: starting PostgreSQL $version"
      pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
  fi
  pg_up && echo "ensure-services: PostgreSQL ready" || echo "ensure-services: PostgreSQL NOT available"
else
  echo "ensure-services: pg_isready not found (PostgreSQL client missing)"
fi

# Redis: PING over plain TCP, so the check works without redis-cli (redis-tools) installed.
redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG
  else
    (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null
  fi
}

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "ensure-services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
    for _ in $(seq 1 50); do redis_up && break; sleep 0.2; done
  else
    echo "ensure-services: redis-server not found (apt-get install redis-server)"
  fi
fi
redis_up && echo "ensure-services: Redis ready" || echo "ensure-services: Redis NOT available"
exit 0

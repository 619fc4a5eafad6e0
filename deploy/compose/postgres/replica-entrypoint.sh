#!/bin/sh
# The streaming replica (hot standby) of the compose PostgreSQL primary. On its first start (empty data
# directory) it clones the primary with pg_basebackup: --write-recovery-conf (-R) writes primary_conninfo and
# standby.signal, --slot uses the slot the primary's init script created. Then, and on every later start, it runs
# postgres as a standby. Runs as the image's postgres user (docker-compose.yml `user: postgres`).
#
# Note: -R stores the replication password in the replica's postgresql.auto.conf (on its own volume).
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_HOST:=postgres}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready --host "$PRIMARY_HOST" --port 5432 --username replicator --dbname postgres --quiet; do
    echo "replica: waiting for the primary at $PRIMARY_HOST:5432"
    sleep 2
  done
  PGPASSWORD=$(cat /run/secrets/postgres_replication_password)
  export PGPASSWORD
  pg_basebackup --host "$PRIMARY_HOST" --port 5432 --username replicator --pgdata "$PGDATA" \
    --wal-method stream --write-recovery-conf --slot replica_1 --checkpoint fast
  unset PGPASSWORD
  chmod 0700 "$PGDATA"
fi

exec postgres -c hot_standby=on

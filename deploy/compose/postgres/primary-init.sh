#!/bin/sh
# Runs once, on the primary's first start (the official image runs /docker-entrypoint-initdb.d/* as the postgres
# user while it initialises an empty data directory): the streaming replica's role, its physical replication
# slot (so the primary keeps WAL the replica has not received; a replica down for long grows the primary's disk:
# drop the slot with `SELECT pg_drop_replication_slot('replica_1')` if it is retired), and postgres_exporter's
# read-only monitoring role. Passwords come from the compose secrets, never from the environment.
set -eu

replication_password=$(cat /run/secrets/postgres_replication_password)
exporter_password=$(cat /run/secrets/postgres_exporter_password)

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v replication_password="$replication_password" -v exporter_password="$exporter_password" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'replication_password';
SELECT pg_create_physical_replication_slot('replica_1');
CREATE ROLE postgres_exporter WITH LOGIN PASSWORD :'exporter_password';
GRANT pg_monitor TO postgres_exporter;
SQL

# The image's pg_hba.conf admits every database over the network but not the `replication` pseudo-database.
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"

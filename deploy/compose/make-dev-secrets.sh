#!/bin/sh
# Development secrets for a local compose run (docker compose --env-file deploy/compose/dev.env up): one file
# per compose secret in deploy/compose/secrets/, pointing at the dev profile's services (the local chain, the
# Stripe emulator, the capture receivers). A file that exists is kept, so real secrets are never overwritten.
# Values are written without a trailing newline (Alertmanager reads some secret files as they are), mode 0644:
# compose mounts secret files as they are, and the containers read them as uid 10001 (musdpay), 999 (postgres),
# 472 (grafana) and 65534 (nobody: Prometheus, Alertmanager, the exporters).
# Needs only a POSIX shell and od; random values come from /dev/urandom.
set -eu

dir=$(cd "$(dirname "$0")" && pwd)/secrets
mkdir -p "$dir"

random_hex() {  # $1 bytes as hex
  od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

put() {  # put NAME VALUE: write the secret unless it exists
  if [ -e "$dir/$1" ]; then
    echo "kept     $1"
  else
    (umask 022 && printf '%s' "$2" > "$dir/$1")
    echo "created  $1"
  fi
}

put postgres_password "$(random_hex 24)"
postgres_password=$(cat "$dir/postgres_password")
put database_url "postgresql+psycopg://musdpay:${postgres_password}@postgres:5432/musdpay"
put database_replica_url "postgresql+psycopg://musdpay:${postgres_password}@postgres-replica:5432/musdpay"
put postgres_replication_password "$(random_hex 24)"
put postgres_exporter_password "$(random_hex 24)"
put stripe_secret_key "sk_test_$(random_hex 24)"
put stripe_webhook_secrets "whsec_$(random_hex 24)"
# Both provider names of the SLOs and dashboards, on the one local chain.
put rpc_providers "spectrum=http://chain:8545,public=http://chain:8545"
put jwt_keys "dev1:$(random_hex 32)"
put grafana_admin_password "$(random_hex 16)"
put slack_webhook_url "http://receivers:9300/slack/services/T000/B000/dev"
put discord_webhook_url "http://receivers:9300/discord/api/webhooks/1/dev"
put pagerduty_routing_key "$(random_hex 16)"
put smtp_password "$(random_hex 16)"

echo "secrets in $dir"

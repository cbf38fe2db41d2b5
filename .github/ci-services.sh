#!/usr/bin/env bash
# Services for the GitHub jobs, set up the way this project's own CI machine has them
# (.ci/run expects them there): the runner's preinstalled PostgreSQL cluster, which
# serves TLS with Ubuntu's snakeoil certificate (adapters/tests/tls.rs needs ssl = on,
# which the postgres:*-alpine images do not have), trusting local TCP connections
# (a throwaway runner; the tests create and drop a database each), and a nats-server
# binary with JetStream at /usr/sbin/nats-server (the NATS TLS test starts private
# servers from that binary).
set -euo pipefail

NATS_VERSION=2.10.22

sudo systemctl start postgresql.service
hba=$(sudo -u postgres psql -tAc 'show hba_file')
{ echo "host all all 127.0.0.1/32 trust"; sudo cat "$hba"; } > /tmp/pg_hba.conf
sudo install -o postgres -g postgres -m 0640 /tmp/pg_hba.conf "$hba"
sudo systemctl reload postgresql.service
psql "postgres://postgres@127.0.0.1:5432/postgres" -tAc 'show ssl' | grep -qx on

curl -fsSL "https://github.com/nats-io/nats-server/releases/download/v${NATS_VERSION}/nats-server-v${NATS_VERSION}-linux-amd64.tar.gz" \
  | tar -xz -C /tmp
sudo install -m 0755 "/tmp/nats-server-v${NATS_VERSION}-linux-amd64/nats-server" /usr/sbin/nats-server
mkdir -p /tmp/nats-store
/usr/sbin/nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/nats-store -l /tmp/nats-server.log &
for _ in $(seq 1 30); do
  (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && exit 0
  sleep 1
done
echo "NATS did not come up" >&2
exit 1

#!/usr/bin/env bash
# Says whether PostgreSQL and RabbitMQ answer where the fleet expects them, and if not, which
# command starts them on this kind of machine. Exit 1 when either is missing.
set -u
pg_host=${PGHOST:-127.0.0.1}; pg_port=${PGPORT:-5432}
mq_host=${AMQP_HOST:-127.0.0.1}; mq_port=${AMQP_PORT:-5672}
ok=0
if ! (exec 3<>"/dev/tcp/$pg_host/$pg_port") 2>/dev/null; then
  echo "PostgreSQL is not answering on $pg_host:$pg_port." >&2
  echo "  start it with: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
  ok=1
fi
if ! (exec 3<>"/dev/tcp/$mq_host/$mq_port") 2>/dev/null; then
  echo "RabbitMQ is not answering on $mq_host:$mq_port." >&2
  echo "  start it with: rabbitmq-server -detached && rabbitmqctl await_startup" >&2
  ok=1
fi
[ "$ok" -eq 0 ] && echo "PostgreSQL ($pg_host:$pg_port) and RabbitMQ ($mq_host:$mq_port) answer."
exit "$ok"

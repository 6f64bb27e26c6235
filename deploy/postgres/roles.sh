#!/bin/sh
# One PostgreSQL role per service, each owning only its own database, so that one
# service's credentials cannot read another's data (users' password hashes, say).
# Run once as a superuser: compose mounts it into /docker-entrypoint-initdb.d, which runs
# it when the volume is first initialised; elsewhere (Kubernetes, a managed server) run
#   PGHOST=… PGUSER=<superuser> USERS_DB_PASSWORD=… … sh deploy/postgres/roles.sh
# Passwords come from <SERVICE>_DB_PASSWORD; the services' <SERVICE>_DATABASE_URL must
# use the same ones: postgres://<service>:<password>@<host>:5432/taproom_<service>.
set -eu
for service in users beers orders tasks promotions exercises scores; do
  var="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  eval "password=\${$var:?set $var}"
  # psql interpolates :"name" (identifier) and :'name' (literal) safely in its input.
  psql -v ON_ERROR_STOP=1 --username "${PGUSER:-${POSTGRES_USER:-postgres}}" --dbname "${POSTGRES_DB:-postgres}" \
    -v role="$service" -v password="$password" -v db="taproom_$service" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
done

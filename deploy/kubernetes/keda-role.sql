-- The read-only role KEDA's query runs as (secret-keda.yaml). Run as the
-- database owner; replace the password, and "ade" if your database is named
-- otherwise. It may read only the columns the query uses, and every
-- transaction it starts is read-only. deploy/kubernetes's test runs the
-- ScaledObject's query as this role.
CREATE ROLE ade_keda LOGIN PASSWORD 'change-me';
ALTER ROLE ade_keda SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE ade TO ade_keda;
GRANT USAGE ON SCHEMA public TO ade_keda;
GRANT SELECT (id, build_id, workspace_id, configuration_id, status, available_at, attempt_count, max_attempts) ON runs TO ade_keda;
GRANT SELECT (id, workspace_id, configuration_id, status, available_at, attempt_count, max_attempts) ON builds TO ade_keda;
GRANT SELECT (scope, target) ON ade_worker_pauses TO ade_keda;

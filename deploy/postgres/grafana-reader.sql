-- Run once by the postgres image when its volume is new (docker-entrypoint-initdb.d).
-- Grafana's cost panels query call_records; they read through this role, which may only
-- SELECT from the tables lockgate's migrations create (as the owner, lockgate).
CREATE ROLE grafana_reader LOGIN PASSWORD 'grafana_reader';
GRANT CONNECT ON DATABASE lockgate TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE lockgate IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;

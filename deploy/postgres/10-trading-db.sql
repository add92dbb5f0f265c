-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d):
-- the Dagster instance lives in $POSTGRES_DB (dagster), the runner's journals in `trading`
-- (one schema per session, journal_YYYYMMDD, created by the pipeline's store resource).
CREATE DATABASE trading;

-- Runs once, when the data volume is empty: a database and a user per service,
-- each user owning its own database only. Development passwords: envs/dev
-- puts the same ones in the Secrets auth-database, billing-database and
-- jobs-database.
CREATE USER auth PASSWORD 'dev-only-auth';
CREATE DATABASE auth OWNER auth;
CREATE USER billing PASSWORD 'dev-only-billing';
CREATE DATABASE billing OWNER billing;
CREATE USER jobs PASSWORD 'dev-only-jobs';
CREATE DATABASE jobs OWNER jobs;
REVOKE ALL ON DATABASE auth, billing, jobs FROM PUBLIC;

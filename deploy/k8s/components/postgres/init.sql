-- Runs once, when the data volume is empty: one database per service.
CREATE DATABASE auth;
CREATE DATABASE billing;
CREATE DATABASE jobs;

-- One database per service: no service reads another's tables.
CREATE DATABASE auth_db;
CREATE DATABASE users_db;
CREATE DATABASE admin_db;
CREATE DATABASE payments_db;
CREATE DATABASE notifications_db;
CREATE DATABASE jobs_db;

-- The schema as the server made it before migrations (SQLModel create_all, commit 466e863),
-- with a few rows: an existing data/execstream.db must upgrade and keep them.
CREATE TABLE users (
	id INTEGER NOT NULL, 
	username VARCHAR NOT NULL, 
	password_hash VARCHAR NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_users_username ON users (username);
CREATE TABLE code_executions (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	project_id INTEGER, 
	language VARCHAR NOT NULL, 
	code TEXT NOT NULL, 
	stdin TEXT, 
	output TEXT, 
	error TEXT, 
	exit_code INTEGER, 
	signal VARCHAR, 
	status VARCHAR NOT NULL, 
	execution_time FLOAT NOT NULL, 
	output_truncated BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX ix_code_executions_user_id_id ON code_executions (user_id, id);
CREATE INDEX ix_code_executions_user_id_project_id_id ON code_executions (user_id, project_id, id);
INSERT INTO users VALUES (1, 'ada', 'old-hash', '2026-11-28 01:49:00.922749');
INSERT INTO code_executions VALUES
  (1, 1, 0, 'python', 'print(0)', NULL, '0' || char(10), NULL, 0, NULL, 'success', 0.1, 0, '2026-11-28 01:49:00.927751'),
  (2, 1, 1, 'python', 'print(1)', NULL, '1' || char(10), NULL, 0, NULL, 'success', 0.1, 0, '2026-11-28 01:49:00.930671'),
  (3, 1, 0, 'python', 'print(2)', NULL, '2' || char(10), NULL, 0, NULL, 'success', 0.1, 0, '2026-11-28 01:49:00.932640');

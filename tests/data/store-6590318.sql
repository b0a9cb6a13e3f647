BEGIN TRANSACTION;
CREATE TABLE attempts (
	id INTEGER NOT NULL, 
	execution_id INTEGER, 
	session_id VARCHAR NOT NULL, 
	number INTEGER NOT NULL, 
	worker INTEGER NOT NULL, 
	worktree VARCHAR NOT NULL, 
	pid INTEGER, 
	pgid INTEGER, 
	started_at DATETIME NOT NULL, 
	completed_at DATETIME, 
	duration_seconds FLOAT, 
	exit_code INTEGER, 
	status VARCHAR NOT NULL, 
	log_path VARCHAR NOT NULL, 
	output_tail VARCHAR NOT NULL, 
	error VARCHAR, 
	cases_passed INTEGER, 
	cases_failed INTEGER, 
	cases_errors INTEGER, 
	cases_skipped INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(execution_id) REFERENCES executions (id) ON DELETE CASCADE
);
INSERT INTO "attempts" VALUES(1,1,'be21ab69852d',1,0,'/tmp/mkw-6590318/wts/wt-62309438',2384,2384,'2026-11-29 23:47:08.939342','2026-11-29 23:47:08.942612',0.0025164290000248,0,'passed','/tmp/mkw-6590318/state/logs/be21ab69852d/unit_a_ok-61a0e697.1.log','',NULL,NULL,NULL,NULL,NULL);
INSERT INTO "attempts" VALUES(2,2,'be21ab69852d',1,1,'/tmp/mkw-6590318/wts/wt-29941151',2395,2395,'2026-11-29 23:47:08.952504','2026-11-29 23:47:08.954971',1.98204199978135875426e-03,3,'failed','/tmp/mkw-6590318/state/logs/be21ab69852d/unit_a_bad-9c5b0cff.1.log','',NULL,NULL,NULL,NULL,NULL);
INSERT INTO "attempts" VALUES(3,2,'be21ab69852d',2,1,'/tmp/mkw-6590318/wts/wt-62309438',2397,2397,'2026-11-29 23:47:08.955540','2026-11-29 23:47:08.961406',5.46308700040754047222e-03,3,'failed','/tmp/mkw-6590318/state/logs/be21ab69852d/unit_a_bad-9c5b0cff.2.log','',NULL,NULL,NULL,NULL,NULL);
INSERT INTO "attempts" VALUES(4,3,'5241457f3e33',1,0,'/tmp/mkw-6590318/wts/wt-62309438',2414,2414,'2026-11-29 23:47:08.986560','2026-11-29 23:47:08.989115',0.00205838700003369,0,'passed','/tmp/mkw-6590318/state/logs/5241457f3e33/unit_a_ok-61a0e697.1.log','',NULL,NULL,NULL,NULL,NULL);
CREATE TABLE executions (
	id INTEGER NOT NULL, 
	session_id VARCHAR, 
	seq INTEGER NOT NULL, 
	test_id VARCHAR NOT NULL, 
	request_json VARCHAR NOT NULL, 
	ref VARCHAR NOT NULL, 
	sha VARCHAR, 
	category VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	flaky BOOLEAN NOT NULL, 
	attempts INTEGER NOT NULL, 
	error VARCHAR, 
	created_at DATETIME NOT NULL, 
	started_at DATETIME, 
	completed_at DATETIME, 
	duration_seconds FLOAT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(session_id) REFERENCES sessions (id) ON DELETE CASCADE
);
INSERT INTO "executions" VALUES(1,'be21ab69852d',0,'unit/a::ok','{"id":"unit/a::ok","command":"true","ref":"HEAD","env":{},"cwd":".","timeout_seconds":600.0,"retries":0,"category":"default","priority":0,"junit":false,"setup":null,"keep":[],"plan_path":null}','HEAD','75b8e30ce917f8d9cfee4617326aa17aafbdbafc','default','passed',0,1,NULL,'2026-11-29 23:47:08.929032','2026-11-29 23:47:08.939342','2026-11-29 23:47:08.942612',0.0025164290000248);
INSERT INTO "executions" VALUES(2,'be21ab69852d',1,'unit/a::bad','{"id":"unit/a::bad","command":"exit 3","ref":"HEAD","env":{},"cwd":".","timeout_seconds":600.0,"retries":1,"category":"default","priority":0,"junit":false,"setup":null,"keep":[],"plan_path":null}','HEAD','75b8e30ce917f8d9cfee4617326aa17aafbdbafc','default','failed',0,2,NULL,'2026-11-29 23:47:08.929032','2026-11-29 23:47:08.952504','2026-11-29 23:47:08.961406',5.46308700040754047222e-03);
INSERT INTO "executions" VALUES(3,'5241457f3e33',0,'unit/a::ok','{"id":"unit/a::ok","command":"true","ref":"HEAD","env":{},"cwd":".","timeout_seconds":600.0,"retries":0,"category":"default","priority":0,"junit":false,"setup":null,"keep":[],"plan_path":null}','HEAD','75b8e30ce917f8d9cfee4617326aa17aafbdbafc','default','passed',0,1,NULL,'2026-11-29 23:47:08.985381','2026-11-29 23:47:08.986560','2026-11-29 23:47:08.989115',0.00205838700003369);
CREATE TABLE sessions (
	id VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	created_at DATETIME NOT NULL, 
	started_at DATETIME, 
	completed_at DATETIME, 
	num_workers INTEGER NOT NULL, 
	repo VARCHAR NOT NULL, 
	plan_paths VARCHAR NOT NULL, 
	plan_key VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	report_json VARCHAR, 
	PRIMARY KEY (id)
);
INSERT INTO "sessions" VALUES('be21ab69852d','partial_success','2026-11-29 23:47:08.929032','2026-11-29 23:47:08.929032','2026-11-29 23:47:08.979186',2,'/tmp/mkw-6590318/repo','[]','925bdb2a2e5a6dfd','vm:2114:401588','{"session_id":"be21ab69852d","status":"partial_success","started_at":"2026-11-29T23:47:08.929032Z","completed_at":"2026-11-29T23:47:08.979186Z","duration_seconds":0.050154,"total_tests":2,"tests_passed":1,"tests_failed":1,"tests_timed_out":0,"tests_errored":0,"tests_skipped":0,"tests_cancelled":0,"tests_interrupted":0,"tests_flaky":0,"success_rate":0.5,"num_workers":2,"categories":{"default":{"total":2,"passed":1,"failed":1,"timed_out":0,"errored":0,"skipped":0,"cancelled":0,"interrupted":0,"flaky":0,"success_rate":0.5}},"duration_stats":{"sum":0.009961,"mean":0.004981,"p50":0.002516,"p95":0.007445,"p99":0.007445,"max":0.007445},"speedup":0.199,"worker_utilisation":0.099,"slowest_tests":[{"test_id":"unit/a::bad","duration_seconds":0.007445},{"test_id":"unit/a::ok","duration_seconds":0.002516}],"completed_tests":[{"test_id":"unit/a::ok","status":"passed","flaky":false,"category":"default","ref":"HEAD","sha":"75b8e30ce917f8d9cfee4617326aa17aafbdbafc","duration_seconds":0.002516,"error":null,"cases":null,"attempts":[{"number":1,"status":"passed","worker":0,"worktree":"/tmp/mkw-6590318/wts/wt-62309438","exit_code":0,"started_at":"2026-11-29T23:47:08.939342Z","completed_at":"2026-11-29T23:47:08.942612Z","duration_seconds":0.0025164290000248,"log_path":"/tmp/mkw-6590318/state/logs/be21ab69852d/unit_a_ok-61a0e697.1.log","error":null}]},{"test_id":"unit/a::bad","status":"failed","flaky":false,"category":"default","ref":"HEAD","sha":"75b8e30ce917f8d9cfee4617326aa17aafbdbafc","duration_seconds":0.007445,"error":null,"cases":null,"attempts":[{"number":1,"status":"failed","worker":1,"worktree":"/tmp/mkw-6590318/wts/wt-29941151","exit_code":3,"started_at":"2026-11-29T23:47:08.952504Z","completed_at":"2026-11-29T23:47:08.954971Z","duration_seconds":0.0019820419997813588,"log_path":"/tmp/mkw-6590318/state/logs/be21ab69852d/unit_a_bad-9c5b0cff.1.log","error":null},{"number":2,"status":"failed","worker":1,"worktree":"/tmp/mkw-6590318/wts/wt-62309438","exit_code":3,"started_at":"2026-11-29T23:47:08.955540Z","completed_at":"2026-11-29T23:47:08.961406Z","duration_seconds":0.0054630870004075405,"log_path":"/tmp/mkw-6590318/state/logs/be21ab69852d/unit_a_bad-9c5b0cff.2.log","error":null}]}],"failed_tests":["unit/a::bad"],"cases":{"passed":0,"failed":0,"errors":0,"skipped":0},"report_hash":"e4ecbfd4a66063a98ee34fc5e7a9e3e814f854c6dc839ba1ed1dee0bdd2f7179"}');
INSERT INTO "sessions" VALUES('5241457f3e33','complete','2026-11-29 23:47:08.985381','2026-11-29 23:47:08.985381','2026-11-29 23:47:08.996222',2,'/tmp/mkw-6590318/repo','[]','cbdcd54f48825d08','vm:2114:401588','{"session_id":"5241457f3e33","status":"complete","started_at":"2026-11-29T23:47:08.985381Z","completed_at":"2026-11-29T23:47:08.996222Z","duration_seconds":0.010841,"total_tests":1,"tests_passed":1,"tests_failed":0,"tests_timed_out":0,"tests_errored":0,"tests_skipped":0,"tests_cancelled":0,"tests_interrupted":0,"tests_flaky":0,"success_rate":1.0,"num_workers":2,"categories":{"default":{"total":1,"passed":1,"failed":0,"timed_out":0,"errored":0,"skipped":0,"cancelled":0,"interrupted":0,"flaky":0,"success_rate":1.0}},"duration_stats":{"sum":0.002058,"mean":0.002058,"p50":0.002058,"p95":0.002058,"p99":0.002058,"max":0.002058},"speedup":0.19,"worker_utilisation":0.095,"slowest_tests":[{"test_id":"unit/a::ok","duration_seconds":0.002058}],"completed_tests":[{"test_id":"unit/a::ok","status":"passed","flaky":false,"category":"default","ref":"HEAD","sha":"75b8e30ce917f8d9cfee4617326aa17aafbdbafc","duration_seconds":0.002058,"error":null,"cases":null,"attempts":[{"number":1,"status":"passed","worker":0,"worktree":"/tmp/mkw-6590318/wts/wt-62309438","exit_code":0,"started_at":"2026-11-29T23:47:08.986560Z","completed_at":"2026-11-29T23:47:08.989115Z","duration_seconds":0.00205838700003369,"log_path":"/tmp/mkw-6590318/state/logs/5241457f3e33/unit_a_ok-61a0e697.1.log","error":null}]}],"failed_tests":[],"cases":{"passed":0,"failed":0,"errors":0,"skipped":0},"report_hash":"a10487c09400348ef7455633c4403dc67b5aeed81bf1c4a7d43149374771207f"}');
CREATE INDEX ix_sessions_created_at ON sessions (created_at);
CREATE INDEX ix_sessions_plan_key ON sessions (plan_key);
CREATE INDEX ix_sessions_status ON sessions (status);
CREATE INDEX ix_executions_test_id ON executions (test_id);
CREATE INDEX ix_executions_status ON executions (status);
CREATE INDEX ix_executions_session_id ON executions (session_id);
CREATE INDEX ix_attempts_session_id ON attempts (session_id);
CREATE INDEX ix_attempts_execution_id ON attempts (execution_id);
COMMIT;

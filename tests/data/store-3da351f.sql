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
INSERT INTO "attempts" VALUES(1,1,'af8944217343',1,0,'/tmp/mkw-3da351f/wts/wt-ca3f93d5',1989,1989,'2026-11-29 23:47:08.068469','2026-11-29 23:47:08.074910',5.59765200023321085609e-03,0,'passed','/tmp/mkw-3da351f/state/logs/af8944217343/unit_a_ok-61a0e697.1.log','',NULL,NULL,NULL,NULL,NULL);
INSERT INTO "attempts" VALUES(2,2,'af8944217343',1,1,'/tmp/mkw-3da351f/wts/wt-2e987d23',1999,1999,'2026-11-29 23:47:08.080359','2026-11-29 23:47:08.086052',0.0052540480000971,3,'failed','/tmp/mkw-3da351f/state/logs/af8944217343/unit_a_bad-9c5b0cff.1.log','',NULL,NULL,NULL,NULL,NULL);
INSERT INTO "attempts" VALUES(3,2,'af8944217343',2,1,'/tmp/mkw-3da351f/wts/wt-ca3f93d5',2003,2003,'2026-11-29 23:47:08.086642','2026-11-29 23:47:08.091183',3.97837899981823284178e-03,3,'failed','/tmp/mkw-3da351f/state/logs/af8944217343/unit_a_bad-9c5b0cff.2.log','',NULL,NULL,NULL,NULL,NULL);
INSERT INTO "attempts" VALUES(4,3,'b82195963cb1',1,0,'/tmp/mkw-3da351f/wts/wt-ca3f93d5',2017,2017,'2026-11-29 23:47:08.110140','2026-11-29 23:47:08.113478',2.73449399992387043312e-03,0,'passed','/tmp/mkw-3da351f/state/logs/b82195963cb1/unit_a_ok-61a0e697.1.log','',NULL,NULL,NULL,NULL,NULL);
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
INSERT INTO "executions" VALUES(1,'af8944217343',0,'unit/a::ok','{"id":"unit/a::ok","command":"true","ref":"HEAD","env":{},"cwd":".","timeout_seconds":600.0,"retries":0,"category":"default","priority":0,"junit":false,"setup":null,"keep":[],"plan_path":null}','HEAD','b8e8107f2e9042c5af0f91b13387b6fa89abb310','default','passed',0,1,NULL,'2026-11-29 23:47:08.054256','2026-11-29 23:47:08.068469','2026-11-29 23:47:08.074910',5.59765200023321085609e-03);
INSERT INTO "executions" VALUES(2,'af8944217343',1,'unit/a::bad','{"id":"unit/a::bad","command":"exit 3","ref":"HEAD","env":{},"cwd":".","timeout_seconds":600.0,"retries":1,"category":"default","priority":0,"junit":false,"setup":null,"keep":[],"plan_path":null}','HEAD','b8e8107f2e9042c5af0f91b13387b6fa89abb310','default','failed',0,2,NULL,'2026-11-29 23:47:08.054256','2026-11-29 23:47:08.080359','2026-11-29 23:47:08.091183',3.97837899981823284178e-03);
INSERT INTO "executions" VALUES(3,'b82195963cb1',0,'unit/a::ok','{"id":"unit/a::ok","command":"true","ref":"HEAD","env":{},"cwd":".","timeout_seconds":600.0,"retries":0,"category":"default","priority":0,"junit":false,"setup":null,"keep":[],"plan_path":null}','HEAD','b8e8107f2e9042c5af0f91b13387b6fa89abb310','default','passed',0,1,NULL,'2026-11-29 23:47:08.109191','2026-11-29 23:47:08.110140','2026-11-29 23:47:08.113478',2.73449399992387043312e-03);
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
INSERT INTO "sessions" VALUES('af8944217343','partial_success','2026-11-29 23:47:08.054256','2026-11-29 23:47:08.054256','2026-11-29 23:47:08.103310',2,'/tmp/mkw-3da351f/repo','[]','925bdb2a2e5a6dfd','vm:1724:401502','{"session_id":"af8944217343","status":"partial_success","started_at":"2026-11-29T23:47:08.054256Z","completed_at":"2026-11-29T23:47:08.103310Z","duration_seconds":0.049054,"total_tests":2,"tests_passed":1,"tests_failed":1,"tests_timed_out":0,"tests_errored":0,"tests_skipped":0,"tests_cancelled":0,"tests_interrupted":0,"tests_flaky":0,"success_rate":0.5,"num_workers":2,"categories":{"default":{"total":2,"passed":1,"failed":1,"timed_out":0,"errored":0,"skipped":0,"cancelled":0,"interrupted":0,"flaky":0,"success_rate":0.5}},"duration_stats":{"sum":0.01483,"mean":0.007415,"p50":0.005598,"p95":0.009232,"p99":0.009232,"max":0.009232},"speedup":0.302,"worker_utilisation":0.151,"slowest_tests":[{"test_id":"unit/a::bad","duration_seconds":0.009232},{"test_id":"unit/a::ok","duration_seconds":0.005598}],"completed_tests":[{"test_id":"unit/a::ok","status":"passed","flaky":false,"category":"default","ref":"HEAD","sha":"b8e8107f2e9042c5af0f91b13387b6fa89abb310","duration_seconds":0.005598,"error":null,"cases":null,"attempts":[{"number":1,"status":"passed","worker":0,"worktree":"/tmp/mkw-3da351f/wts/wt-ca3f93d5","exit_code":0,"started_at":"2026-11-29T23:47:08.068469Z","completed_at":"2026-11-29T23:47:08.074910Z","duration_seconds":0.005597652000233211,"log_path":"/tmp/mkw-3da351f/state/logs/af8944217343/unit_a_ok-61a0e697.1.log","error":null}]},{"test_id":"unit/a::bad","status":"failed","flaky":false,"category":"default","ref":"HEAD","sha":"b8e8107f2e9042c5af0f91b13387b6fa89abb310","duration_seconds":0.009232,"error":null,"cases":null,"attempts":[{"number":1,"status":"failed","worker":1,"worktree":"/tmp/mkw-3da351f/wts/wt-2e987d23","exit_code":3,"started_at":"2026-11-29T23:47:08.080359Z","completed_at":"2026-11-29T23:47:08.086052Z","duration_seconds":0.0052540480000971,"log_path":"/tmp/mkw-3da351f/state/logs/af8944217343/unit_a_bad-9c5b0cff.1.log","error":null},{"number":2,"status":"failed","worker":1,"worktree":"/tmp/mkw-3da351f/wts/wt-ca3f93d5","exit_code":3,"started_at":"2026-11-29T23:47:08.086642Z","completed_at":"2026-11-29T23:47:08.091183Z","duration_seconds":0.003978378999818233,"log_path":"/tmp/mkw-3da351f/state/logs/af8944217343/unit_a_bad-9c5b0cff.2.log","error":null}]}],"failed_tests":["unit/a::bad"],"cases":{"passed":0,"failed":0,"errors":0,"skipped":0},"report_hash":"5e77de8f45de964eb9fefda83baf7ca9fdd9c0e4885046e31d084f78941f796d"}');
INSERT INTO "sessions" VALUES('b82195963cb1','complete','2026-11-29 23:47:08.109191','2026-11-29 23:47:08.109191','2026-11-29 23:47:08.116366',2,'/tmp/mkw-3da351f/repo','[]','cbdcd54f48825d08','vm:1724:401502','{"session_id":"b82195963cb1","status":"complete","started_at":"2026-11-29T23:47:08.109191Z","completed_at":"2026-11-29T23:47:08.116366Z","duration_seconds":0.007175,"total_tests":1,"tests_passed":1,"tests_failed":0,"tests_timed_out":0,"tests_errored":0,"tests_skipped":0,"tests_cancelled":0,"tests_interrupted":0,"tests_flaky":0,"success_rate":1.0,"num_workers":2,"categories":{"default":{"total":1,"passed":1,"failed":0,"timed_out":0,"errored":0,"skipped":0,"cancelled":0,"interrupted":0,"flaky":0,"success_rate":1.0}},"duration_stats":{"sum":0.002734,"mean":0.002734,"p50":0.002734,"p95":0.002734,"p99":0.002734,"max":0.002734},"speedup":0.381,"worker_utilisation":0.191,"slowest_tests":[{"test_id":"unit/a::ok","duration_seconds":0.002734}],"completed_tests":[{"test_id":"unit/a::ok","status":"passed","flaky":false,"category":"default","ref":"HEAD","sha":"b8e8107f2e9042c5af0f91b13387b6fa89abb310","duration_seconds":0.002734,"error":null,"cases":null,"attempts":[{"number":1,"status":"passed","worker":0,"worktree":"/tmp/mkw-3da351f/wts/wt-ca3f93d5","exit_code":0,"started_at":"2026-11-29T23:47:08.110140Z","completed_at":"2026-11-29T23:47:08.113478Z","duration_seconds":0.0027344939999238704,"log_path":"/tmp/mkw-3da351f/state/logs/b82195963cb1/unit_a_ok-61a0e697.1.log","error":null}]}],"failed_tests":[],"cases":{"passed":0,"failed":0,"errors":0,"skipped":0},"report_hash":"25e6d766e1d8fe1bea8b59f48ca4f9ae9d4e0fc36317590a0c0a4fddf8c606ee"}');
CREATE INDEX ix_sessions_plan_key ON sessions (plan_key);
CREATE INDEX ix_sessions_created_at ON sessions (created_at);
CREATE INDEX ix_sessions_status ON sessions (status);
CREATE INDEX ix_executions_session_id ON executions (session_id);
CREATE INDEX ix_executions_status ON executions (status);
CREATE INDEX ix_executions_test_id ON executions (test_id);
CREATE INDEX ix_attempts_session_id ON attempts (session_id);
CREATE INDEX ix_attempts_execution_id ON attempts (execution_id);
COMMIT;

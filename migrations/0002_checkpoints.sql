-- Checkpoints and pause / resume (issue: nothing lost on a restart).
-- 'paused' joins the statuses. SQLite cannot change a CHECK constraint, so the table is rebuilt
-- with its rows (the migration runs with foreign keys off: its events stay).
-- priority: tasks that continue after a restart go ahead of new ones (dispatch is by priority,
-- then seq). interruptions: how often a restart interrupted the task (limited by MAX_RESUMES).
-- checkpoint_json: the task's newest checkpoint (epoch, step, size, when).
CREATE TABLE tasks_new (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id              TEXT NOT NULL UNIQUE,
    status               TEXT NOT NULL CHECK (status IN
                             ('queued', 'training', 'stopping', 'paused', 'completed', 'failed', 'stopped')),
    model_name_cn        TEXT NOT NULL,
    model_name_en        TEXT NOT NULL,
    base_model           TEXT NOT NULL,
    training_data_file   TEXT NOT NULL,
    validation_data_file TEXT,
    hyperparameters_json TEXT NOT NULL,
    callback_url         TEXT,
    created_at           TEXT NOT NULL,
    started_at           TEXT,
    finished_at          TEXT,
    progress_json        TEXT,
    metrics_json         TEXT,
    artifacts_json       TEXT,
    error_message        TEXT,
    callback_json        TEXT,
    priority             INTEGER NOT NULL DEFAULT 0,
    interruptions        INTEGER NOT NULL DEFAULT 0,
    checkpoint_json      TEXT
);
INSERT INTO tasks_new (seq, task_id, status, model_name_cn, model_name_en, base_model, training_data_file,
                       validation_data_file, hyperparameters_json, callback_url, created_at, started_at,
                       finished_at, progress_json, metrics_json, artifacts_json, error_message, callback_json)
    SELECT seq, task_id, status, model_name_cn, model_name_en, base_model, training_data_file,
           validation_data_file, hyperparameters_json, callback_url, created_at, started_at,
           finished_at, progress_json, metrics_json, artifacts_json, error_message, callback_json
    FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_status_seq ON tasks (status, seq);

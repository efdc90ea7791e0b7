-- Uploaded training data. The file itself lives in DATA_DIR/uploads/<filename>;
-- sheets_json caches the sheet/column/row metadata read once at upload.
CREATE TABLE files (
    filename    TEXT PRIMARY KEY,
    size_bytes  INTEGER NOT NULL,
    sha256      TEXT NOT NULL,
    uploaded_at TEXT NOT NULL,
    sheets_json TEXT NOT NULL
);

-- One row per training task. seq gives FIFO order (created_at has only second precision).
CREATE TABLE tasks (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id              TEXT NOT NULL UNIQUE,
    status               TEXT NOT NULL CHECK (status IN
                             ('queued', 'training', 'stopping', 'completed', 'failed', 'stopped')),
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
    callback_json        TEXT
);
CREATE INDEX tasks_status_seq ON tasks (status, seq);

-- The persisted history of a task: status changes, epoch results, warnings, errors, callback attempts.
CREATE TABLE task_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id   TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    at        TEXT NOT NULL,
    type      TEXT NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX task_events_task_id ON task_events (task_id, id);

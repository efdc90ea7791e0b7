-- Prediction jobs (issue 14): a whole sheet through a completed task's model, queued FIFO with the
-- tasks in the same pool. Deleting the task deletes its prediction jobs (their result files are
-- removed by the scheduler).
-- tasks_seq: the newest tasks.seq when the job was created. Tasks with a larger seq were created
-- after it, so dispatch runs the job first; created_at has only second precision.
CREATE TABLE prediction_jobs (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    prediction_id        TEXT NOT NULL UNIQUE,
    task_id              TEXT NOT NULL REFERENCES tasks (task_id) ON DELETE CASCADE,
    status               TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'stopped')),
    file                 TEXT NOT NULL,
    sheet_name           TEXT NOT NULL,
    text_column          TEXT NOT NULL,
    top_k                INTEGER NOT NULL,
    threshold            REAL,
    tasks_seq            INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    started_at           TEXT,
    finished_at          TEXT,
    phase                TEXT,
    rows_done            INTEGER NOT NULL DEFAULT 0,
    rows_total           INTEGER,
    rows_per_second      REAL,
    rows_empty           INTEGER,
    rows_below_threshold INTEGER,
    label_counts_json    TEXT,
    columns_json         TEXT,
    output_path          TEXT,
    seconds              REAL,
    error_message        TEXT
);
CREATE INDEX prediction_jobs_status_seq ON prediction_jobs (status, seq);
CREATE INDEX prediction_jobs_task_id ON prediction_jobs (task_id, seq);

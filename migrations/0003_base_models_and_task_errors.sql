-- A failed task's error as {"code", "message", "hint"} (TaskError), next to error_message.
ALTER TABLE tasks ADD COLUMN error_json TEXT;

-- When the task row last changed. Kept by triggers rather than by each UPDATE statement, so that
-- every write counts (status, progress, callback state, and whatever statements come later).
ALTER TABLE tasks ADD COLUMN updated_at TEXT;
UPDATE tasks SET updated_at = COALESCE(finished_at, started_at, created_at);

CREATE TRIGGER tasks_updated_at_on_insert AFTER INSERT ON tasks FOR EACH ROW WHEN NEW.updated_at IS NULL
BEGIN
    UPDATE tasks SET updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE seq = NEW.seq;
END;

-- Only when the statement itself did not set updated_at; the trigger's own UPDATE does not fire
-- it again (recursive_triggers is off, and it changes updated_at).
CREATE TRIGGER tasks_updated_at_on_update AFTER UPDATE ON tasks FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE tasks SET updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE seq = NEW.seq;
END;

-- Base model downloads the server was asked for (POST /api/v1/base-models, or a task whose base
-- model is missing), while they run or after they failed. A finished download leaves no row: its
-- folder in BASE_MODELS_DIR (with .bertd-source.json) is the record. A row still 'downloading' at
-- start-up is resumed from its .partial folder.
CREATE TABLE base_model_downloads (
    name        TEXT PRIMARY KEY,
    source      TEXT NOT NULL CHECK (source IN ('huggingface', 'modelscope')),
    revision    TEXT,
    status      TEXT NOT NULL CHECK (status IN ('downloading', 'failed')),
    bytes_done  INTEGER NOT NULL DEFAULT 0,
    bytes_total INTEGER,
    error_json  TEXT,
    started_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

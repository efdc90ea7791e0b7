-- A failed or stopped prediction job's error with its catalogue entries (a TaskError as JSON), so the
-- API gives error_message in the reader's language; error_message stays its English text.
ALTER TABLE prediction_jobs ADD COLUMN error_json TEXT;

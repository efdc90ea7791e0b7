-- Training on other boxes (BROKER_URL): which worker runs a task, its current run (a Celery task
-- and a Redis stream of messages), and how far the API node has applied that stream, so a restart
-- reads on from there.
ALTER TABLE tasks ADD COLUMN worker TEXT;
ALTER TABLE tasks ADD COLUMN run_id TEXT;
ALTER TABLE tasks ADD COLUMN message_cursor TEXT;
-- A message read twice (after a restart) records its event once: origin is its stream entry.
ALTER TABLE task_events ADD COLUMN origin TEXT;
CREATE UNIQUE INDEX task_events_origin ON task_events (task_id, origin);

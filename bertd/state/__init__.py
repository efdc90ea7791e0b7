"""What survives a restart: the SQLite connection and migrations, every SQL statement (the store),
and the task, file and event records with their allowed status transitions. No HTTP, no torch."""

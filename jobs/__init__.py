"""Background jobs: the scheduler is only the clock; the database is the queue."""

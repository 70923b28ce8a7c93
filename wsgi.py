"""WSGI entry point: ``gunicorn -w 1 --threads 8 wsgi:app`` or ``flask --app wsgi run``.

Only this module starts the scheduler, so CLI commands and tests never run background jobs.
"""

from jobs.scheduler import start_scheduler
from portal import create_app

app = create_app()
start_scheduler(app)

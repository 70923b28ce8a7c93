"""WSGI entry point: ``gunicorn -w 1 --threads 8 wsgi:app`` or ``flask --app wsgi run``.

Only this module starts the scheduler, so CLI commands and tests never run background jobs. Every web process
first reaps the sync runs whose process is gone (``portal.reap_at_startup``).
"""

from jobs.scheduler import start_scheduler
from portal import create_app, reap_at_startup

app = create_app()
reap_at_startup(app)
start_scheduler(app)

"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import os

from portal import create_app
from portal.documents.render import warm_up

app = create_app()

# A gunicorn worker imports this module before it takes a request: render a tiny document now, so the first invoice
# a customer asks for does not pay WeasyPrint's and the stylesheets' one-time start-up. CLI commands skip it.
if not app.config["TESTING"] and os.environ.get("FLASK_RUN_FROM_CLI") != "true":
    warm_up()

"""The WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import os

from portal import create_app
from portal.documents.render import warm_up

app = create_app()

# In a checkout of the repository, `flask --app wsgi seed-demo` and `run-demo` (what `make run` calls) come from the
# development tools beside the product; an installed portal has no devtools package (the wheel ships `portal*` only),
# and its commands are the product's alone.
try:
    from devtools.demo import cli as demo_cli
except ModuleNotFoundError as missing:
    if missing.name != "devtools":  # a broken development tool should say so, not vanish
        raise
else:
    demo_cli.init_app(app)

# A gunicorn worker imports this module before it takes a request: render a tiny document now, so the first invoice
# a customer asks for does not pay WeasyPrint's and the stylesheets' one-time start-up. CLI commands skip it.
if not app.config["TESTING"] and os.environ.get("FLASK_RUN_FROM_CLI") != "true":
    warm_up()

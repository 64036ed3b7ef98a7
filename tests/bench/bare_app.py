"""The baseline for page benchmarks: a bare Flask page served by the same gunicorn setup."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "<!doctype html><title>ok</title><p>Привет</p>"

"""The ceiling: a bare Flask app that answers GET /my-pets with a constant list.

The bench serves it with ``gunicorn -c gunicorn.conf.py bench.bare:app``, so
it runs under exactly the service's gunicorn settings, and gives the service's
user these same pets, so that both send the same body.
"""
from flask import Flask

PETS = [
    {"id": 1, "name": "Bunny", "species": "dog"},
    {"id": 2, "name": "Whiskers", "species": "cat"},
    {"id": 3, "name": "Nemo", "species": None},
]

app = Flask(__name__)


@app.get("/my-pets")
def my_pets():
    return PETS

"""What gunicorn imports: ``gunicorn -c gunicorn.conf.py wsgi:app``."""
from jwt_server import create_app

app = create_app()

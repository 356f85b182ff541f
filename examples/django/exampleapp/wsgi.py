"""WSGI entry point: serve it on loopback only (gunicorn --bind 127.0.0.1:8000)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleapp.settings")
application = get_wsgi_application()

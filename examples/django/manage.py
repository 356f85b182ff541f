#!/usr/bin/env python3
"""Django's command-line utility for the example app.

Run it behind tollgate, on loopback only:
    python3 manage.py runserver 127.0.0.1:8000 --noreload   (development)
    gunicorn --bind 127.0.0.1:8000 exampleapp.wsgi          (production)
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleapp.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)

"""Settings of the example app behind tollgate (docs/frameworks.md)."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
# The Host the browser asked for: tollgate passes it through unchanged.
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = ["exampleapp"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "exampleapp.tollgate.TollgateMiddleware",  # first of our own: refuse what did not come through tollgate
    "django.middleware.csrf.CsrfViewMiddleware",  # the token cookie rides on cross-site posts too
]
ROOT_URLCONF = "exampleapp.urls"
WSGI_APPLICATION = "exampleapp.wsgi.application"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
              "OPTIONS": {"context_processors": ["django.template.context_processors.request"]}}]
DATABASES = {}  # the app's own data would go here; billing state lives in tollgate
USE_TZ = True

# tollgate: where its billing API is (the app calls it on loopback), and the
# webhook.forward_secret its forwarded events are signed with.
TOLLGATE_URL = os.environ.get("TOLLGATE_URL", "http://127.0.0.1:8080")
TOLLGATE_BILLING_PREFIX = os.environ.get("TOLLGATE_BILLING_PREFIX", "/_tollgate/billing")
TOLLGATE_FORWARD_SECRET = os.environ["TOLLGATE_FORWARD_SECRET"]

DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "data"))
# The welcome email is a stub: each message is a file in the outbox.
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = DATA_DIR / "outbox"
DEFAULT_FROM_EMAIL = "hello@example.com"

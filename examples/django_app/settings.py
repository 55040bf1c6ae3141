"""The Django example's settings: no database, CSRF on (Cloud Tasks' handler is exempt)."""

SECRET_KEY = "example-only"  # not a secret: an example with no sessions or signing
DEBUG = False
ALLOWED_HOSTS = ["django-worker.example.com", "testserver"]
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
USE_TZ = True

"""Resonance settings: every knob is an environment variable, documented in README.md."""

from __future__ import annotations

import os
from pathlib import Path

import django_stubs_ext

from config.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_optional_path,
    env_path,
    env_str,
)

# Lets classes such as ModelAdmin[Song] be subscripted at run time, as the type stubs expect.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false.")
    SECRET_KEY = "insecure-development-key-set-DJANGO_SECRET_KEY-in-production"  # noqa: S105
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "catalog",
    "embeddings",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if not DEBUG:
    # Serves collected static files in production; runserver serves them itself while debugging.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = env_str("DATABASE_URL", "")
if _database_url:
    import dj_database_url

    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(env_path("SQLITE_PATH", VAR_DIR / "db.sqlite3")),
            # Web and worker write concurrently; wait for the lock instead of failing at once.
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            # A file, not memory, so that a real worker process can share the test database.
            # One file per test run, so that concurrent runs never share it.
            "TEST": {"NAME": str(env_path("SQLITE_TEST_PATH", VAR_DIR / f"test-db-{os.getpid()}.sqlite3"))},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

REST_FRAMEWORK = {
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 25, minimum=1, maximum=500),
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "EXCEPTION_HANDLER": "catalog.api.errors.exception_handler",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Object storage -------------------------------------------------------------------------
STORAGE_BACKEND = env_choice("STORAGE_BACKEND", "local", ["local", "s3"])
LOCAL_STORAGE_ROOT = env_path("LOCAL_STORAGE_ROOT", VAR_DIR / "media")
S3_BUCKET = env_str("S3_BUCKET", "resonance")
S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL", "") or None
# The address browsers use for presigned URLs when it differs from the workers' (e.g. in Docker).
S3_PUBLIC_ENDPOINT_URL = env_str("S3_PUBLIC_ENDPOINT_URL", "") or S3_ENDPOINT_URL
S3_REGION = env_str("S3_REGION", "us-east-1")
MAX_UPLOAD_MB = env_int("MAX_UPLOAD_MB", 200, minimum=1)
UPLOAD_URL_EXPIRY_SECONDS = env_int("UPLOAD_URL_EXPIRY_SECONDS", 900, minimum=10)
PLAYBACK_URL_EXPIRY_SECONDS = env_int("PLAYBACK_URL_EXPIRY_SECONDS", 3600, minimum=10)

# --- Audio and embeddings -------------------------------------------------------------------
EMBEDDING_MODEL = env_choice("EMBEDDING_MODEL", "auto", ["auto", "panns-cnn14", "features"])
EMBEDDING_DEVICE = env_str("EMBEDDING_DEVICE", "auto")
PANNS_DATA_DIR = env_path("PANNS_DATA_DIR", VAR_DIR / "models")
PANNS_CHECKPOINT = env_optional_path("PANNS_CHECKPOINT")
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 8, minimum=1)
MAX_AUDIO_SECONDS = env_float("MAX_AUDIO_SECONDS", 900.0, minimum=1.0)
MIN_AUDIO_SECONDS = env_float("MIN_AUDIO_SECONDS", 0.25, minimum=0.0)
SIMILAR_CLIP_MAX_MB = env_int("SIMILAR_CLIP_MAX_MB", 20, minimum=1)
SIMILAR_CLIP_MAX_SECONDS = env_float("SIMILAR_CLIP_MAX_SECONDS", 120.0, minimum=1.0)

# --- Vector index ---------------------------------------------------------------------------
VECTOR_BACKEND = env_choice("VECTOR_BACKEND", "local", ["local"])

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = env_path("CELERY_BROKER_DIR", VAR_DIR / "broker")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
INGEST_MAX_RETRIES = env_int("INGEST_MAX_RETRIES", 5, minimum=0)
# Redis redelivers unacknowledged tasks after this long; it must exceed the longest ingest.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)

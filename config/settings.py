"""Resonance settings: every knob is an environment variable, documented in README.md."""

from __future__ import annotations

import os
from pathlib import Path

import django_stubs_ext

from config.env import (
    env_bool,
    env_choice,
    env_device,
    env_float,
    env_int,
    env_list,
    env_log_level,
    env_optional_path,
    env_path,
    env_rate,
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
# Production serves HTTPS (directly or behind a proxy that sets X-Forwarded-Proto); set false only for local trials.
HTTPS = env_bool("HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

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
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "catalog",
    "embeddings",
    "fingerprints",
    "derived",
    "frontend",
    "playlists",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.security.SecurityHeadersMiddleware",
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

    DATABASES = {
        "default": dj_database_url.parse(
            _database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0), conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(env_path("SQLITE_PATH", VAR_DIR / "db.sqlite3")),
            # Web and worker write concurrently; wait for the lock instead of failing at once.
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            # Reuse a connection across requests: SQLite's page cache lives and dies with its connection.
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600, minimum=0),
            "CONN_HEALTH_CHECKS": True,
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

# --- Access ---------------------------------------------------------------------------------
# Anyone may browse and search; set false to require a login for every page and read endpoint.
PUBLIC_CATALOG = env_bool("PUBLIC_CATALOG", True)
# Open uploads to visitors who are not logged in (the default only while debugging).
ALLOW_ANONYMOUS_UPLOADS = env_bool("ALLOW_ANONYMOUS_UPLOADS", DEBUG)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["catalog.api.permissions.CanBrowse"],
    "DEFAULT_THROTTLE_RATES": {
        "uploads": env_rate("UPLOAD_RATE_LIMIT", "120/hour"),
        "searches": env_rate("SEARCH_RATE_LIMIT", "600/minute"),
    },
    # Proxies in front of the site whose X-Forwarded-For entries are trusted for throttling (0: the peer address).
    "NUM_PROXIES": env_int("TRUSTED_PROXIES", 0, minimum=0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 25, minimum=1, maximum=500),
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "EXCEPTION_HANDLER": "catalog.api.errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Resonance API",
    "DESCRIPTION": "A music catalog that finds songs by how they sound.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from this site, not a CDN: works offline and under the strict CSP.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "config.logging.KeyValueFormatter", "format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env_choice("LOG_FORMAT", "plain", ["plain", "json"]),
        }
    },
    "root": {"handlers": ["console"], "level": env_log_level("LOG_LEVEL", "INFO")},
}

# Throttle counters and the map's refresh flags are shared by every process: files on the host by default, Redis
# when set.
CACHE_URL = env_str("CACHE_URL", "")
CACHE_DIR = env_path("CACHE_DIR", VAR_DIR / "cache")
if CACHE_URL and not CACHE_URL.startswith(("redis://", "rediss://")):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"CACHE_URL={CACHE_URL!r} is not a redis:// or rediss:// URL.")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    # SQLite files in WAL mode shared by the host's processes: about 1 ms a throttled request, not a database write.
    else {"BACKEND": "config.cache.HostCache", "LOCATION": str(CACHE_DIR), "OPTIONS": {"size_limit": 256 << 20}}
}

# Lets a monitor read /healthz details without a staff login (Authorization: Bearer <token>); empty: staff only.
HEALTHZ_TOKEN = env_str("HEALTHZ_TOKEN", "")

# --- Object storage -------------------------------------------------------------------------
STORAGE_BACKEND = env_choice("STORAGE_BACKEND", "local", ["local", "s3"])
LOCAL_STORAGE_ROOT = env_path("LOCAL_STORAGE_ROOT", VAR_DIR / "media")
S3_BUCKET = env_str("S3_BUCKET", "resonance")
S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL", "") or None
# The address browsers use for presigned URLs when it differs from the workers' (e.g. in Docker).
S3_PUBLIC_ENDPOINT_URL = env_str("S3_PUBLIC_ENDPOINT_URL", "") or S3_ENDPOINT_URL
S3_REGION = env_str("S3_REGION", "us-east-1")
# A store slower than this to answer counts as unavailable for that request (the ingest retries with backoff).
S3_READ_TIMEOUT_SECONDS = env_float("S3_READ_TIMEOUT_SECONDS", 60.0, minimum=0.1)
MAX_UPLOAD_MB = env_int("MAX_UPLOAD_MB", 200, minimum=1)
# Songs whose upload is not finished and confirmed within this many hours are removed, with any stored file.
UPLOAD_EXPIRY_HOURS = env_float("UPLOAD_EXPIRY_HOURS", 24.0, minimum=0.01)
UPLOAD_URL_EXPIRY_SECONDS = env_int("UPLOAD_URL_EXPIRY_SECONDS", 900, minimum=10)
PLAYBACK_URL_EXPIRY_SECONDS = env_int("PLAYBACK_URL_EXPIRY_SECONDS", 3600, minimum=10)

# --- Audio and embeddings -------------------------------------------------------------------
EMBEDDING_MODEL = env_choice(
    "EMBEDDING_MODEL", "auto", ["auto", "panns-cnn14", "panns-cnn10", "panns-cnn14-meanmax", "features"]
)
EMBEDDING_DEVICE = env_device("EMBEDDING_DEVICE", "auto")
# auto: float16 on a GPU; on a CPU bfloat16 where it runs natively (AVX512_BF16, AMX), else float32.
# Only the PANNs conv stack runs in 16 bits; the mel front end stays float32.
EMBEDDING_PRECISION = env_choice("EMBEDDING_PRECISION", "auto", ["auto", "float32", "float16", "bfloat16"])
PANNS_DATA_DIR = env_path("PANNS_DATA_DIR", VAR_DIR / "models")
# Overrides PANNS_DATA_DIR/<checkpoint file> for the configured PANNs model only.
PANNS_CHECKPOINT = env_optional_path("PANNS_CHECKPOINT")
# The AudioSet label CSV that names the sound tags; default: class_labels_indices.csv beside the checkpoint.
PANNS_LABELS = env_optional_path("PANNS_LABELS")
PANNS_TOP_TAGS = env_int("PANNS_TOP_TAGS", 5, minimum=0)
PANNS_TAG_MIN_SCORE = env_float("PANNS_TAG_MIN_SCORE", 0.05, minimum=0.0)
# Windows per forward pass of a PANNs model; 0: 2 on a CPU (fastest there), 8 on a GPU.
EMBEDDING_BATCH_SIZE = env_int("EMBEDDING_BATCH_SIZE", 0, minimum=0)
# auto (OpenVINO on a CPU, torch on a GPU), torch, or openvino: the PANNs conv stack exported to ONNX once per
# checkpoint (cached beside it) and run by OpenVINO.
EMBEDDING_RUNTIME = env_choice("EMBEDDING_RUNTIME", "auto", ["auto", "torch", "openvino"])
# Compute threads per worker process; 0: the usable cores divided by the worker's processes (--concurrency).
EMBEDDING_THREADS = env_int("EMBEDDING_THREADS", 0, minimum=0)
# BLAS threads per web process (numpy, scipy). A web process serves one request at a time, and idle BLAS threads
# spin-wait after each call, taking cores from the host's other workers; worker processes get EMBEDDING_THREADS' share.
WEB_BLAS_THREADS = env_int("WEB_BLAS_THREADS", 1, minimum=1)
MAX_AUDIO_SECONDS = env_float("MAX_AUDIO_SECONDS", 900.0, minimum=1.0)
MIN_AUDIO_SECONDS = env_float("MIN_AUDIO_SECONDS", 0.25, minimum=0.0)
SIMILAR_CLIP_MAX_MB = env_int("SIMILAR_CLIP_MAX_MB", 20, minimum=1)
SIMILAR_CLIP_MAX_SECONDS = env_float("SIMILAR_CLIP_MAX_SECONDS", 120.0, minimum=1.0)

# --- Vector index ---------------------------------------------------------------------------
VECTOR_BACKEND = env_choice("VECTOR_BACKEND", "local", ["local", "atlas"])
# Host-shared derived indexes (vectors, fingerprints) that every process on the host maps; rebuilt when missing.
DERIVED_INDEX_DIR = env_path("DERIVED_INDEX_DIR", VAR_DIR / "indexes")
# How long a lookup waits for another process that is updating or rebuilding the index before answering 503.
DERIVED_INDEX_LOCK_SECONDS = env_float("DERIVED_INDEX_LOCK_SECONDS", 30.0, minimum=0.0)
# local: at this many vectors of one model, search scans an int8 copy and re-scores candidates exactly (0: never).
LOCAL_INDEX_FAST_THRESHOLD = env_int("LOCAL_INDEX_FAST_THRESHOLD", 20000, minimum=0)
# atlas: MongoDB Atlas Vector Search (or the mongodb/mongodb-atlas-local image); see `manage.py atlas_index`.
MONGODB_URI = env_str("MONGODB_URI", "")
MONGODB_DB = env_str("MONGODB_DB", "resonance")
MONGODB_COLLECTION = env_str("MONGODB_COLLECTION", "song_vectors")
ATLAS_INDEX_NAME = env_str("ATLAS_INDEX_NAME", "song_vectors")
# numCandidates = min(factor x limit, 10000): more candidates, better recall, slower queries.
ATLAS_NUM_CANDIDATES_FACTOR = env_int("ATLAS_NUM_CANDIDATES_FACTOR", 20, minimum=1, maximum=10000)
# An ingest waits this long for a stored vector to become searchable before marking the song ready (else it retries).
INDEX_SEARCHABLE_TIMEOUT_SECONDS = env_float("INDEX_SEARCHABLE_TIMEOUT_SECONDS", 60.0, minimum=0.0)
if VECTOR_BACKEND == "atlas" and not MONGODB_URI:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        "VECTOR_BACKEND=atlas needs MONGODB_URI, e.g. mongodb+srv://user:password@cluster.example.mongodb.net/ "
        "or mongodb://localhost:27017/?directConnection=true for mongodb/mongodb-atlas-local."
    )

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = env_path("CELERY_BROKER_DIR", VAR_DIR / "broker")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# An ingest running longer than this is stopped and the song marked failed (hard kill a minute later).
INGEST_TIME_LIMIT_SECONDS = env_int("INGEST_TIME_LIMIT_SECONDS", 1800, minimum=10)
# An `uploaded` song no worker has started after this long is queued again (its task was lost or never sent).
STALLED_INGEST_MINUTES = env_float("STALLED_INGEST_MINUTES", 30.0, minimum=0.01)
INGEST_MAX_RETRIES = env_int("INGEST_MAX_RETRIES", 8, minimum=0)
# Retry n waits a random time up to min(base x 2^n, 300) s: the defaults ride out outages of several minutes.
INGEST_RETRY_BACKOFF_SECONDS = env_int("INGEST_RETRY_BACKOFF_SECONDS", 5, minimum=1)
# Redis redelivers unacknowledged tasks after this long; it must exceed the longest ingest.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)

# --- Fingerprints ("what song is this?") ----------------------------------------------------
# The backend follows VECTOR_BACKEND: local (database + in-memory table) or atlas (MONGODB_URI, MONGODB_DB).
# identify() names a song only when at least this many landmarks of the clip agree on one time offset in it...
FINGERPRINT_MIN_MATCHES = env_int("FINGERPRINT_MIN_MATCHES", 20, minimum=1)
# ...and its confidence is this high: 0..1, 1 - chance / matches, chance being the most the runner-up song, the best
# song's other offsets or a clip this long get by chance (see fingerprints/selectors.py); 0.5: twice chance.
FINGERPRINT_MIN_CONFIDENCE = env_float("FINGERPRINT_MIN_CONFIDENCE", 0.5, minimum=0.0)
# identify() fingerprints at most this many seconds of a clip (its start); longer clips only cost time.
FINGERPRINT_MAX_QUERY_SECONDS = env_float("FINGERPRINT_MAX_QUERY_SECONDS", 30.0, minimum=1.0)
# A lookup reads the postings of a clip's rarest hashes up to this many hits (0: all but the stop list's), which
# bounds its cost whatever the catalog's size; the FINGERPRINT_SHORTLIST songs they point to most are then matched
# against all of the clip's hashes from their stored landmarks (see fingerprints.selectors.scored_hits).
# bench/identify_scale.py measured a shortlist of 4 as accurate as 8 or 16 at 100k songs, in a fraction of the time.
FINGERPRINT_LOOKUP_BUDGET = env_int("FINGERPRINT_LOOKUP_BUDGET", 100_000, minimum=0)
FINGERPRINT_SHORTLIST = env_int("FINGERPRINT_SHORTLIST", 4, minimum=1)
# atlas: the MongoDB collection of landmarks (one document per song and hash, indexed on the hash).
FINGERPRINT_COLLECTION = env_str("FINGERPRINT_COLLECTION", "fingerprints")

# --- Listening: same recording, radio, paths, playlists -------------------------------------
# A new song is the same recording as another when at least this share of its 15 s chunks line up with it at one
# offset (or, for an excerpt already in the catalog, when the chunks cover this share of it).
RECORDING_MIN_SHARE = env_float("RECORDING_MIN_SHARE", 0.6, minimum=0.01, maximum=1.0)
# A chunk lines up when at least this share of its landmarks agree on one offset in the other song...
RECORDING_MIN_CHUNK_SHARE = env_float("RECORDING_MIN_CHUNK_SHARE", 0.02, minimum=0.0, maximum=1.0)
# ...and they are this many times what the other song's other offsets get by chance.
RECORDING_CHANCE_MARGIN = env_float("RECORDING_CHANCE_MARGIN", 3.0, minimum=1.0)
# Radio: 1 ranks only by closeness to the seeds, 0 only by difference from the songs already chosen (MMR).
RADIO_RELEVANCE = env_float("RADIO_RELEVANCE", 0.7, minimum=0.0, maximum=1.0)
RADIO_MAX_PER_ARTIST = env_int("RADIO_MAX_PER_ARTIST", 3, minimum=1)
RADIO_MAX_PER_ALBUM = env_int("RADIO_MAX_PER_ALBUM", 2, minimum=1)
# Longest radio or path one request returns, and most seeds, steer-away and played songs it takes.
RADIO_MAX_LENGTH = env_int("RADIO_MAX_LENGTH", 100, minimum=1, maximum=500)
RADIO_MAX_INPUT_SONGS = env_int("RADIO_MAX_INPUT_SONGS", 500, minimum=1, maximum=5000)
# Most songs one playlist holds.
PLAYLIST_MAX_SONGS = env_int("PLAYLIST_MAX_SONGS", 1000, minimum=1, maximum=100000)

# --- Clip analysis on the workers and the precomputed map -----------------------------------
# Where workers put a clip's vector for the waiting web process: Redis (the broker's URL) in production, a folder
# beside the filesystem broker by default; any Celery result backend URL.
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND",
    CELERY_BROKER_URL
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else f"file://{VAR_DIR / 'results'}"
    if CELERY_BROKER_URL.startswith("filesystem://")
    else "cache+memory://",
)
# A clip search waits this long for a worker's answer, then answers 503.
CLIP_ANALYSIS_TIMEOUT_SECONDS = env_float("CLIP_ANALYSIS_TIMEOUT_SECONDS", 30.0, minimum=0.1)
# Clips up to this size travel inside the task message; larger ones go through the object store (deleted after).
CLIP_INLINE_MAX_KB = env_int("CLIP_INLINE_MAX_KB", 512, minimum=0)
# The map is recomputed once no song has arrived for this long...
MAP_SETTLE_SECONDS = env_float("MAP_SETTLE_SECONDS", 30.0, minimum=0.0)
# ...and at most this often while songs keep arriving.
MAP_REFRESH_SECONDS = env_float("MAP_REFRESH_SECONDS", 300.0, minimum=1.0)
# Beat checks this often whether a projection is due (the one after the songs stop arriving).
MAP_CHECK_SECONDS = env_float("MAP_CHECK_SECONDS", 30.0, minimum=1.0)
# With no stored map yet, a catalog up to this size is mapped inside the first request; a larger one waits for a worker.
MAP_INLINE_MAX_SONGS = env_int("MAP_INLINE_MAX_SONGS", 2000, minimum=0)

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

from config.threads import limit_blas

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before the app loads its libraries: with gunicorn's preload, the forked workers inherit the limit.
limit_blas(settings.WEB_BLAS_THREADS)
application = get_asgi_application()

"""The floor's ASGI application: Django's own handler, HTTP only (no channels)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.writefloor.settings")
application = get_asgi_application()

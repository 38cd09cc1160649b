"""
The floor of bench/writes.py: a bare Django REST framework create, nothing of the live list.

A minimal Django project of its own (settings, URLs, ASGI application and one
model), run by bench/writes.py under the project's uvicorn command
(servers.py) on a PostgreSQL database of its own: what Django, DRF and the
database cost for a create, with no middleware, no authentication, no
throttle, no version row, no publish, no channels.
"""

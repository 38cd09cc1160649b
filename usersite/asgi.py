"""
ASGI entry point: HTTP goes to Django, WebSockets to the users app's routes.

The WebSocket stack checks the handshake's Origin against ALLOWED_HOSTS and
puts the user in the scope: an app's token, a browser's session, or anonymous;
then refuses those who may not read the list (USERS_ANONYMOUS_READS).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "usersite.settings")
# Load Django's apps before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from users.live.lifespan import StartHousekeeping, lifespan  # noqa: E402
from users.sockets.handshake import HandshakeAuthentication, ReadersOnly  # noqa: E402
from users.sockets.origins import AllowedHostsOrNoOriginValidator  # noqa: E402
from users.sockets.routing import websocket_urlpatterns  # noqa: E402

# The process's housekeeper (users.live.lifespan) starts with the lifespan, or,
# under servers that send no lifespan events, with the first connection.
application = StartHousekeeping(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # Starts the housekeeper; at shutdown, the relay leaves its group.
            "lifespan": lifespan,
            "websocket": AllowedHostsOrNoOriginValidator(
                HandshakeAuthentication(ReadersOnly(URLRouter(websocket_urlpatterns)))
            ),
        }
    )
)

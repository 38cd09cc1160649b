"""The WebSocket handshake's Origin check."""

from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator


class _NoOriginOrAllowedValidator(OriginValidator):
    """
    Accept a handshake without Origin; check any Origin against the allowed hosts.

    Browsers always send Origin, so a foreign one is still refused (that is what
    stops cross-site WebSocket hijacking). Native clients such as a Flutter app
    on dart:io send none (RFC 6455 requires it of browsers only), and channels'
    own validator would refuse them unless ALLOWED_HOSTS held "*".
    """

    def valid_origin(self, parsed_origin):
        return parsed_origin is None or self.validate_origin(parsed_origin)


def AllowedHostsOrNoOriginValidator(application):  # noqa: N802 - named like channels' factory
    """Wrap ``application`` in the Origin check configured from ALLOWED_HOSTS."""
    allowed_hosts = AllowedHostsOriginValidator(application).allowed_origins
    return _NoOriginOrAllowedValidator(application, allowed_hosts)

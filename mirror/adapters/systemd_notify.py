"""systemd's sd_notify protocol over $NOTIFY_SOCKET (Type=notify), without a dependency."""

from __future__ import annotations

import contextlib
import socket


class Notifier:
    """systemd's sd_notify protocol over $NOTIFY_SOCKET (Type=notify), no dependency needed."""

    def __init__(self, env: dict[str, str]) -> None:
        self._address = env.get("NOTIFY_SOCKET")
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval_s = int(usec) / 2e6 if usec.isdigit() else None

    def send(self, message: str) -> None:
        if not self._address:
            return
        address = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode(), address)

"""systemd's sd_notify protocol without a dependency: one AF_UNIX datagram per message."""

import os
import socket


class Notifier:
    """Sends READY=1, WATCHDOG=1, STATUS=..., STOPPING=1 to $NOTIFY_SOCKET; a no-op outside systemd.

    Sends are non-blocking: a full or vanished socket drops the message rather
    than stall the audio loop.
    """

    def __init__(self, address=None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.enabled = bool(address)
        self._socket = None
        if self.enabled:
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)
        usec = os.environ.get("WATCHDOG_USEC")
        #: How often to ping: half the watchdog period (systemd's advice), or None.
        self.watchdog_interval_s = int(usec) / 2e6 if usec and usec.isdigit() else None

    def send(self, message):
        if not self.enabled:
            return False
        try:
            self._socket.sendto(message.encode(), self._address)
            return True
        except OSError:
            return False

    def ready(self):
        return self.send("READY=1")

    def watchdog(self):
        return self.send("WATCHDOG=1")

    def status(self, text):
        return self.send(f"STATUS={text}")

    def stopping(self):
        return self.send("STOPPING=1")

    def close(self):
        if self._socket is not None:
            self._socket.close()

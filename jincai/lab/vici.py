"""A minimal client of strongSwan's vici protocol (command requests only), for the lab's benchmarks.

`swanctl` is one process per command: in benchmarks/vpn_tunnels.py, 1,000 `swanctl --initiate` runs
cost the control node ~7 CPU-seconds (each loads its plugins and OpenSSL) and made the benchmark's
charon stream a control log to each of them. A :class:`Session` is one socket to charon's vici
plugin; a blocking ``initiate`` on it costs a few hundred microseconds of this process.

The wire format is strongSwan's own documentation, src/libcharon/plugins/vici/README.md ("Transport
protocol", "Packet layer", "Message format"): a packet is a 32-bit big-endian length and the payload;
the payload's first byte is the packet type (0 CMD_REQUEST, 1 CMD_RESPONSE, 2 CMD_UNKNOWN, ...), a
request then carries its command name (8-bit length + name) and a message; a message is a sequence of
elements: 1 SECTION_START (8-bit length + name), 2 SECTION_END, 3 KEY_VALUE (8-bit length + key,
16-bit length + value), 4 LIST_START (name), 5 LIST_ITEM (16-bit length + value), 6 LIST_END.
No event is registered here, so charon sends nothing but the response.
"""

import socket
import struct
import time

CMD_REQUEST, CMD_RESPONSE, CMD_UNKNOWN = 0, 1, 2
SECTION_START, SECTION_END, KEY_VALUE, LIST_START, LIST_ITEM, LIST_END = 1, 2, 3, 4, 5, 6
CONNECT_S = 10.0  # how long a connect is retried while charon's listen backlog is full


class ViciError(Exception):
    """A vici exchange failed (socket, protocol, or an unknown command)."""


def _name(name):
    raw = name.encode()
    if len(raw) > 255:
        raise ViciError(f"vici: name {name[:40]!r}... is longer than 255 bytes")
    return bytes([len(raw)]) + raw


def _value(value):
    raw = value if isinstance(value, bytes) else str(value).encode()
    if len(raw) > 65535:
        raise ViciError("vici: a value is longer than 65535 bytes")
    return struct.pack(">H", len(raw)) + raw


def encode(message):
    """Encode a dict (values: str/int/bytes, dict for a section, list for a list) as a vici message."""
    out = bytearray()
    for key, value in message.items():
        if isinstance(value, dict):
            out += bytes([SECTION_START]) + _name(key) + encode(value) + bytes([SECTION_END])
        elif isinstance(value, (list, tuple)):
            out += bytes([LIST_START]) + _name(key)
            for item in value:
                out += bytes([LIST_ITEM]) + _value(item)
            out += bytes([LIST_END])
        else:
            out += bytes([KEY_VALUE]) + _name(key) + _value(value)
    return bytes(out)


def decode(data):
    """Decode a vici message into a dict (values as str; sections as dicts; lists as lists of str)."""
    root = {}
    stack, pos, current_list = [root], 0, None
    while pos < len(data):
        kind = data[pos]
        pos += 1
        if kind in (SECTION_START, KEY_VALUE, LIST_START):
            n = data[pos]
            name = data[pos + 1:pos + 1 + n].decode()
            pos += 1 + n
        if kind == SECTION_START:
            stack[-1][name] = {}
            stack.append(stack[-1][name])
        elif kind == SECTION_END:
            if len(stack) == 1:
                raise ViciError("vici: SECTION_END without a section")
            stack.pop()
        elif kind in (KEY_VALUE, LIST_ITEM):
            (n,) = struct.unpack_from(">H", data, pos)
            value = data[pos + 2:pos + 2 + n].decode(errors="replace")
            pos += 2 + n
            if kind == KEY_VALUE:
                stack[-1][name] = value
            elif current_list is None:
                raise ViciError("vici: LIST_ITEM outside a list")
            else:
                current_list.append(value)
        elif kind == LIST_START:
            current_list = stack[-1][name] = []
        elif kind == LIST_END:
            current_list = None
        else:
            raise ViciError(f"vici: unknown element type {kind} at byte {pos - 1}")
    if len(stack) != 1:
        raise ViciError("vici: message ends inside a section")
    return root


class Session:
    """One connection to charon's vici socket; :meth:`request` is blocking (one request at a time)."""

    def __init__(self, path, timeout=None):
        end = time.monotonic() + CONNECT_S
        while True:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(path)
                return
            except BlockingIOError as exc:  # EAGAIN: charon's listen backlog is full (many connect at once)
                self._sock.close()
                if time.monotonic() > end:
                    raise ViciError(f"vici: cannot connect to {path} in {CONNECT_S:.0f} s: {exc}") from exc
                time.sleep(0.05)
            except OSError as exc:
                self._sock.close()
                raise ViciError(f"vici: cannot connect to {path}: {exc}") from exc

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ViciError("vici: charon closed the connection")
            buf += chunk
        return bytes(buf)

    def request(self, command, message=None):
        """Send command ``command`` with ``message`` (a dict) and return the response as a dict."""
        payload = bytes([CMD_REQUEST]) + _name(command) + encode(message or {})
        try:
            self._sock.sendall(struct.pack(">I", len(payload)) + payload)
            while True:
                (n,) = struct.unpack(">I", self._recv(4))
                packet = self._recv(n)
                if packet[0] == CMD_RESPONSE:
                    return decode(packet[1:])
                if packet[0] == CMD_UNKNOWN:
                    raise ViciError(f"vici: charon does not know the command {command!r}")
                # anything else (an event we did not register for) is skipped
        except OSError as exc:
            raise ViciError(f"vici: {command}: {exc}") from exc

    def initiate(self, ike, child, timeout_ms):
        """Initiate CHILD_SA ``child`` of connection ``ike`` and wait up to ``timeout_ms`` for it, with no
        control log streamed (loglevel -1); ``(ok, errmsg)``."""
        res = self.request("initiate", {"ike": ike, "child": child, "timeout": int(timeout_ms), "loglevel": -1})
        return res.get("success") == "yes", res.get("errmsg", "")

    def close(self):
        """Close the socket."""
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""SSH front end of the simulator (paramiko's server): password login, an interactive shell, echo.

``SimServer(device, host, port)`` listens on ``host:port`` (loopback in every test), accepts any
number of sessions in threads, and feeds each typed line to a ``device.Session``. Characters are
echoed as a router's terminal does (netmiko waits for the echo); answers end with ``\\r\\n`` and the
prompt; a pending yes/no question is printed instead of the prompt.
"""

import base64
import os
import socket
import threading

import paramiko

from .device import Drop
from .session import Session


def host_key(path=None):
    """The server's RSA host key: loaded from ``path``, generated (and written there) if absent."""
    if path and os.path.exists(path):
        return paramiko.RSAKey(filename=path)
    key = paramiko.RSAKey.generate(2048)
    if path:
        key.write_private_key_file(path)
    return key


def authorized_keys(path):
    """The public keys of an OpenSSH authorized_keys / .pub file (ed25519, rsa, ecdsa)."""
    keys = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) >= 2 and not line.startswith("#"):
                keys.append(paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1])))
    return keys


class _Auth(paramiko.ServerInterface):
    def __init__(self, device, authorized=()):
        self.device = device
        self.authorized = list(authorized)
        self.shell = threading.Event()

    def check_auth_password(self, username, password):
        ok = username == self.device.username and password == self.device.password
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        ok = username == self.device.username and any(
            key.get_name() == k.get_name() and key.asbytes() == k.asbytes() for k in self.authorized)
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def get_allowed_auths(self, username):
        return "publickey,password" if self.authorized else "password"

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args):
        return True

    def check_channel_shell_request(self, channel):
        self.shell.set()
        return True


class SimServer:
    """Serve ``device`` over SSH on ``host:port`` (port 0 = any free port; see ``.port``)."""

    def __init__(self, device, host="127.0.0.1", port=0, key=None, authorized=()):
        self.device = device
        self.authorized = list(authorized)  # public keys accepted besides the password
        self.key = key or host_key()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.host, self.port = self.sock.getsockname()[:2]
        self._transports = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="vendorsim-accept")
        self._thread.start()

    def _accept(self):
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="vendorsim-session").start()

    def _serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # echo and answer are separate writes
        transport = paramiko.Transport(conn)
        self._transports.append(transport)
        transport.add_server_key(self.key)
        auth = _Auth(self.device, self.authorized)
        try:
            transport.start_server(server=auth)
            chan = transport.accept(20)
            if chan is None or not auth.shell.wait(20):
                transport.close()
                return
        except (paramiko.SSHException, EOFError, OSError):
            transport.close()
            return
        session = Session(self.device, kill=transport.close)
        try:
            self._shell(chan, session)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            session.close()
            transport.close()

    @staticmethod
    def _send(chan, text):
        chan.sendall(text.replace("\r\n", "\n").replace("\n", "\r\n").encode())

    def _shell(self, chan, session):
        banner = self.device.dialect.login_banner
        self._send(chan, ("\n" + banner + "\n" if banner else "\n") + session.prompt())
        buf = ""
        skip_lf = False
        while True:
            data = chan.recv(4096)
            if not data:
                return
            echo = ""
            for ch in data.decode(errors="replace"):
                if ch == "\n" and skip_lf:
                    skip_lf = False
                    continue
                skip_lf = ch == "\r"
                if ch not in "\r\n\x03\x7f\x08\x1a":
                    buf += ch
                    echo += ch
                    continue
                if echo:  # echo what was typed, in one write, before answering
                    self._send(chan, echo)
                    echo = ""
                if ch in "\r\n":
                    try:
                        answer = session.line(buf)
                    except Drop:
                        chan.close()
                        return
                    buf = ""
                    if answer.startswith("\0ASK"):
                        self._send(chan, "\n" + answer[4:])
                    else:
                        self._send(chan, "\n" + (answer + "\n" if answer else "") + session.prompt())
                elif ch == "\x03":
                    session.interrupt()
                    buf = ""
                    self._send(chan, "^C\n" + session.prompt())
                elif ch in "\x7f\x08":
                    buf = buf[:-1]
                elif ch == "\x1a":  # Ctrl+Z: back to the user/exec view
                    buf = ""
                    answer = session.line(self.device.dialect.leave_config) if session.mode == "config" else ""
                    self._send(chan, "\n" + session.prompt())
            if echo:
                self._send(chan, echo)

    def close(self):
        """Stop listening and cut every session."""
        self._closed.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for t in self._transports:
            t.close()

"""jincai.lab.vici: the vici message encoding against strongSwan's own example, and a request/response
exchange over a Unix socket (the live exchange with charon is benchmarks/vpn_tunnels.py's)."""

import os
import socket
import struct
import threading

import pytest

from jincai.lab import vici

# The example of src/libcharon/plugins/vici/README.md ("Message format"), element by element.
README_MESSAGE = {"key1": "value1", "section1": {"sub-section": {"key2": "value2"}, "list1": ["item1", "item2"]}}
README_BYTES = (b"\x03\x04key1\x00\x06value1"
                b"\x01\x08section1"
                b"\x01\x0bsub-section"
                b"\x03\x04key2\x00\x06value2"
                b"\x02"
                b"\x04\x05list1"
                b"\x05\x00\x05item1"
                b"\x05\x00\x05item2"
                b"\x06"
                b"\x02")


def test_encode_is_the_readme_example():
    assert vici.encode(README_MESSAGE) == README_BYTES


def test_decode_gives_the_message_back():
    assert vici.decode(README_BYTES) == README_MESSAGE
    assert vici.decode(vici.encode({"timeout": 60000, "loglevel": -1})) == {"timeout": "60000", "loglevel": "-1"}


@pytest.mark.parametrize("bad", [b"\x02", b"\x01\x01a", b"\x05\x00\x01x", b"\x09"])
def test_malformed_messages_are_refused(bad):
    with pytest.raises(vici.ViciError):
        vici.decode(bad)


def test_a_request_is_framed_and_its_response_read(tmp_path):
    """A server on a Unix socket reads one framed CMD_REQUEST, answers with an event first (skipped)
    and then the CMD_RESPONSE: the session returns the response's message."""
    path = str(tmp_path / "charon.vici")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    seen = {}

    def serve():
        conn, _ = srv.accept()
        with conn:
            (n,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
            payload = conn.recv(n, socket.MSG_WAITALL)
            seen["type"], name_len = payload[0], payload[1]
            seen["command"] = payload[2:2 + name_len].decode()
            seen["message"] = vici.decode(payload[2 + name_len:])
            for packet in (bytes([7, 3]) + b"log" + vici.encode({"msg": "x"}),
                           bytes([vici.CMD_RESPONSE]) + vici.encode({"success": "no", "errmsg": "peer unreachable"})):
                conn.sendall(struct.pack(">I", len(packet)) + packet)

    t = threading.Thread(target=serve)
    t.start()
    with vici.Session(path, timeout=5) as s:
        ok, msg = s.initiate("bu1", "bu1", 60000)
    t.join(5)
    srv.close()
    os.unlink(path)
    assert (ok, msg) == (False, "peer unreachable")
    assert seen == {"type": vici.CMD_REQUEST, "command": "initiate",
                    "message": {"ike": "bu1", "child": "bu1", "timeout": "60000", "loglevel": "-1"}}


def test_an_unknown_command_is_an_error(tmp_path):
    path = str(tmp_path / "charon.vici")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        with conn:
            (n,) = struct.unpack(">I", conn.recv(4, socket.MSG_WAITALL))
            conn.recv(n, socket.MSG_WAITALL)
            conn.sendall(struct.pack(">I", 1) + bytes([vici.CMD_UNKNOWN]))

    t = threading.Thread(target=serve)
    t.start()
    with vici.Session(path, timeout=5) as s, pytest.raises(vici.ViciError, match="does not know"):
        s.request("no-such-command")
    t.join(5)
    srv.close()


def test_no_socket_is_a_clear_error(tmp_path):
    with pytest.raises(vici.ViciError, match="cannot connect"):
        vici.Session(str(tmp_path / "none.vici"))

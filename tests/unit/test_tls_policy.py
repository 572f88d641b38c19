"""The one TLS policy (jincai/data/tls.yml): every endpoint jincai configures renders it, nothing else
defines ciphers, and the compliance probe tells an AEAD-only endpoint from one that offers CBC
(real handshakes with local TLS servers)."""

import os
import re
import socket
import ssl
import subprocess
import threading

import jinja2
import pytest
import yaml

from jincai import ROOT
from jincai.compliance import checks, collector, model
from jincai.policy import tls
from jincai.source import inventory

POLICY = tls.ansible_vars()["jincai_tls"]


def test_the_policy_is_tls12_aead_and_tls13_only():
    assert POLICY["protocols"] == ["TLSv1.2", "TLSv1.3"]
    assert all(tls.is_aead(c) and c.startswith("ECDHE-") for c in POLICY["tls12_ciphers"])
    assert not any(tls.is_aead(c) for c in ("ECDHE-RSA-AES128-SHA256", "AES256-SHA", "HIGH", "!aNULL",
                                            "TLS_RSA_WITH_AES_128_CBC_SHA"))


def test_the_inventory_gives_every_host_the_policy():
    assert inventory.build(os.path.join(ROOT, "inventories", "lab"))["all"]["vars"]["jincai_tls"] == POLICY


def _render(role, template, **values):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROOT, "roles", role, "templates")),
                             trim_blocks=True, undefined=jinja2.StrictUndefined)
    env.globals["ansible_managed"] = "managed"
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml"), encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)
    ctx = dict(defaults, jincai_tls=POLICY, **values)
    # the role defaults are Jinja expressions over jincai_tls: resolve them as Ansible would
    for key, value in list(ctx.items()):
        if isinstance(value, str) and "{{" in value and "jincai_tls" in value:
            ctx[key] = env.from_string("{{ (" + value.strip()[2:-2] + ") | tojson }}").render(**ctx)
            ctx[key] = yaml.safe_load(ctx[key])
    return env.get_template(template).render(**ctx)


def test_every_nginx_frontend_and_postgresql_render_the_policy():
    conf = _render("apps", "nginx-apps.conf.j2", inventory_hostname="220102-app1", _apps_hosted=["budget"],
                   _apps_catalog={"budget": {"port": 8101, "backend_port": 18101}})
    servers = conf.count("listen ")
    assert servers == 2
    assert conf.count("ssl_protocols TLSv1.2 TLSv1.3;") == servers
    assert conf.count(f"ssl_ciphers {POLICY['openssl_ciphers']};") == servers
    assert conf.count(f"ssl_conf_command Ciphersuites {POLICY['openssl_ciphersuites']};") == servers
    pg = _render("postgres", "jincai.conf.j2", ansible_managed="managed")
    assert "ssl_min_protocol_version = 'TLSv1.2'" in pg
    assert f"ssl_ciphers = '{POLICY['openssl_ciphers']}'" in pg


def test_no_role_or_template_defines_its_own_ciphers():
    """One definition: TLS settings in templates come from variables, never literal suite lists."""
    literal = re.compile(r"(ssl_ciphers|ssl_protocols|Ciphersuites|ssl_min_protocol_version)\s*=?\s*'?[A-Z]")
    hits = []
    for base in ("roles", "templates"):
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, base)):
            for name in files:
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    hits += [f"{path}: {line.strip()}" for line in fh if literal.search(line)]
    assert hits == []


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem")], check=True, capture_output=True)
    return str(d / "c.pem"), str(d / "k.pem")


def _server(cert, ciphers, low):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    ctx.minimum_version = low
    ctx.set_ciphers(ciphers)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)

    def serve():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    return sock


def _probe(port):
    return collector.tls_probes([{"proto": "tcp", "address": "0.0.0.0", "port": port,
                                  "process": 'users:(("nginx",pid=1,fd=6))'}])[str(port)]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_the_probe_catches_tls10_and_tls11(cert):
    old = _server(cert, "ALL:@SECLEVEL=0", ssl.TLSVersion.TLSv1)
    try:
        got = _probe(old.getsockname()[1])
    finally:
        old.close()
    assert got["legacy"].startswith("TLSv1.1 ") and got["tls12_cbc"]
    assert "accepts TLSv1.1" in checks._tls({"tls": {"443": got}}, {}, {})[2]  # noqa: SLF001


def test_the_probe_passes_the_policy_and_catches_cbc(cert):
    good = _server(cert, POLICY["openssl_ciphers"], ssl.TLSVersion.TLSv1_2)
    weak = _server(cert, POLICY["openssl_ciphers"] + ":ECDHE-RSA-AES128-SHA:AES128-SHA256", ssl.TLSVersion.TLSv1_2)
    try:
        ok, bad = _probe(good.getsockname()[1]), _probe(weak.getsockname()[1])
    finally:
        good.close()
        weak.close()
    assert ok["tls12_cbc"] is None and ok["legacy"] is None
    assert ok["tls12_aead"].startswith("TLSv1.2 ECDHE-RSA-") and ok["tls13"].startswith("TLSv1.3 TLS_")
    assert bad["tls12_cbc"] and "GCM" not in bad["tls12_cbc"]
    facts = {"tls": {"443": ok, "8101": bad}, "postgres_tls": {"ssl": "on", "ssl_min_protocol_version": "TLSv1.2",
                                                              "ssl_ciphers": "HIGH:MEDIUM:+3DES:!aNULL"}}
    passed, _want, found = checks._tls(facts, {}, {})  # noqa: SLF001
    assert not passed
    assert "8101: accepts a CBC suite" in found and "443" not in found
    assert "postgresql: ssl_ciphers not AEAD: HIGH:MEDIUM:+3DES:!aNULL" in found
    facts = {"tls": {"443": ok}, "postgres_tls": {"ssl": "on", "ssl_min_protocol_version": "TLSv1.2",
                                                 "ssl_ciphers": POLICY["openssl_ciphers"]}}
    assert checks._tls(facts, {}, {})[0]  # noqa: SLF001
    plain = {"tls12_cbc": None, "legacy": None, "tls12_aead": None, "tls13": None}  # nginx on port 80
    assert checks._tls({"tls": {"80": plain}}, {}, {}) is None  # noqa: SLF001
    assert "80" not in checks._tls({"tls": {"80": plain, "443": ok}}, {}, {})[2]  # noqa: SLF001
    assert "L3-CES1-26" in model.load_controls()["controls"]

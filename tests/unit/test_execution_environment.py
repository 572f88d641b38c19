"""execution-environment.yml builds a context with ansible-builder (no container runtime needed).

``ansible-builder create`` writes the Containerfile/Dockerfile and ``_build/`` context; the test then
runs the context's own introspection script (what the image build runs) over the generated Python
and system requirements, and checks the pins against requirements.txt: the execution environment
runs the same ansible-core, ansible-runner, netmiko, mitogen and ara as the control node.
"""

import os
import re
import subprocess
import sys

import yaml

from jincai import ROOT

BIN = os.path.dirname(sys.executable)
PINNED = ("ansible-core", "ansible-runner", "netmiko", "mitogen", "ara")


def _pins(path):
    pins = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line.strip())
            if m:
                pins[m.group(1).lower()] = m.group(3)
    return pins


def test_ansible_builder_creates_a_context_with_the_pinned_stack(tmp_path):
    ctx = tmp_path / "context"
    res = subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                          "-c", str(ctx)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    files = [f for f in ("Containerfile", "Dockerfile") if (ctx / f).is_file()]
    assert files, sorted(os.listdir(ctx))
    containerfile = (ctx / files[0]).read_text()
    want = _pins(os.path.join(ROOT, "requirements.txt"))
    # ansible-core and ansible-runner are installed first, from the definition's own pins
    refs = re.search(r'ANSIBLE_INSTALL_REFS="([^"]*)"', containerfile).group(1).split()
    assert f"ansible-core=={want['ansible-core']}" in refs and f"ansible-runner=={want['ansible-runner']}" in refs
    assert "ENV PYTHONPATH=/runner/project" in containerfile
    assert "ENV ANSIBLE_CALLBACK_PLUGINS=/runner/project/plugins/callback" in containerfile
    with open(os.path.join(ROOT, "execution-environment.yml"), encoding="utf-8") as fh:
        base = yaml.safe_load(fh)["images"]["base_image"]["name"]
    assert f'EE_BASE_IMAGE="{base}"' in containerfile
    # the image build's introspection over the generated context: every pin of requirements.txt
    out = subprocess.run([sys.executable, str(ctx / "_build" / "scripts" / "introspect.py"), "introspect",
                          f"--user-pip={ctx / '_build' / 'requirements.txt'}",
                          f"--user-bindep={ctx / '_build' / 'bindep.txt'}"], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    merged = yaml.safe_load(out.stdout)
    python = {}
    for entry in merged["python"]:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", entry)
        if m:
            python[m.group(1).lower()] = m.group(3)
    for name in PINNED:
        assert python.get(name) == want[name], f"{name}: {python.get(name)} in the EE, {want[name]} pinned"
    system = " ".join(merged["system"])
    for package in ("openssh-clients", "sshpass", "rsync", "git-core"):
        assert package in system, f"bindep.txt lacks {package}"

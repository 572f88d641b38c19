"""The lab image cache: keyed by package list + build script, built atomically."""

import os

import pytest

from jincai.lab import image

REQUIRED = """openssh-server python3 python3-apt sudo iproute2 iputils-ping procps curl ca-certificates frr
frr-pythontools strongswan-swanctl charon-systemd libstrongswan-standard-plugins libcharon-extra-plugins
openssl nginx postgresql python3-psycopg2 chrony rsyslog auditd aide nftables libpam-pwquality locales
tzdata cron rsync netcat-openbsd""".split()


def test_package_list_holds_everything_the_roles_need():
    assert set(REQUIRED) <= set(image.packages())


def test_package_list_skips_comments_and_blanks(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# comment\n\nfrr  # routing\n  nginx\n")
    assert image.packages(str(f)) == ["frr", "nginx"]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Copies of the package list and a stub build script; the cache in tmp_path."""
    pk = tmp_path / "packages.txt"
    pk.write_text("frr\n")
    script = tmp_path / "build.sh"
    script.write_text('mkdir -p "$1/etc" && echo ok > "$1/etc/built"\n')
    monkeypatch.setattr(image, "PACKAGES_FILE", str(pk))
    monkeypatch.setattr(image, "BUILD_SCRIPT", str(script))
    return tmp_path


def test_hash_changes_with_the_package_list_and_the_script(sandbox):
    first = image.image_hash()
    (sandbox / "packages.txt").write_text("frr\nnginx\n")
    second = image.image_hash()
    (sandbox / "build.sh").write_text("exit 0\n")
    assert len({first, second, image.image_hash()}) == 3


def test_build_is_cached_and_renamed_into_place(sandbox):
    cache = sandbox / "cache"
    path = image.ensure(cache_dir=str(cache), log=lambda m: None)
    assert path == image.image_path(str(cache))
    assert (cache / os.path.basename(path) / "etc" / "built").read_text() == "ok\n"
    messages = []
    assert image.ensure(cache_dir=str(cache), log=messages.append) == path
    assert messages == [f"image: cached {path}"]


def test_failed_build_leaves_no_half_image(sandbox):
    (sandbox / "build.sh").write_text('mkdir -p "$1/etc" && touch "$1/etc/half" && exit 3\n')
    cache = sandbox / "cache"
    with pytest.raises(Exception):
        image.ensure(cache_dir=str(cache), log=lambda m: None)
    assert [n for n in os.listdir(cache) if n != ".build.lock"] == []


def test_leftover_of_a_killed_build_is_removed(sandbox):
    cache = sandbox / "cache"
    stale = cache / "lab-image-0123456789abcdef.tmp99999999"  # above pid_max: its builder is gone
    (stale / "etc").mkdir(parents=True)
    image.ensure(cache_dir=str(cache), log=lambda m: None)
    assert not stale.exists()
    names = sorted(n for n in os.listdir(cache) if n != ".build.lock")
    assert names == [os.path.basename(image.image_path(str(cache)))]


def test_a_running_build_is_not_mistaken_for_a_leftover(sandbox):
    cache = sandbox / "cache"
    running = cache / f"lab-image-0123456789abcdef.tmp{os.getppid()}"
    (running / "etc").mkdir(parents=True)
    image.ensure(cache_dir=str(cache), log=lambda m: None)
    assert running.exists()


def test_mirrors_come_from_the_hosts_deb822_sources(tmp_path):
    src = tmp_path / "debian.sources"
    src.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
                   "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
                   "Suites: bookworm-security\nComponents: main\n")
    assert image.mirrors(str(src)) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    assert image.mirrors(str(tmp_path / "none")) == (image.DEFAULT_MIRROR, image.DEFAULT_SECURITY)

"""The lab's cached Debian 12 base image.

The image is built once with debootstrap (see ``build-image.sh``) into
``/var/cache/jincai/lab-image-<hash>``, where the hash covers the package list and the build
script: editing either rebuilds it. The build runs in a temporary directory that is renamed into
place only on success, so a killed build never leaves a half image behind.
"""

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES_FILE = os.path.join(HERE, "packages.txt")
BUILD_SCRIPT = os.path.join(HERE, "build-image.sh")
CACHE_DIR = "/var/cache/jincai"
SOURCES = "/etc/apt/sources.list.d/debian.sources"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"


def packages(path=PACKAGES_FILE):
    """Return the package names listed in ``path`` (comments and blank lines skipped)."""
    names = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if line:
                names.append(line)
    return names


def image_hash():
    """Return the cache key: sha256 over the package list and the build script."""
    digest = hashlib.sha256()
    for path in (PACKAGES_FILE, BUILD_SCRIPT):
        with open(path, "rb") as fh:
            digest.update(os.path.basename(path).encode() + b"\0" + fh.read() + b"\0")
    return digest.hexdigest()[:16]


def image_path(cache_dir=CACHE_DIR):
    """Return the directory the current image lives (or will live) in."""
    return os.path.join(cache_dir, "lab-image-" + image_hash())


def mirrors(sources=SOURCES):
    """Return ``(main, security)`` mirror URIs read from the host's deb822 sources file."""
    main, security = DEFAULT_MIRROR, DEFAULT_SECURITY
    try:
        with open(sources, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return main, security
    for stanza in re.split(r"\n\s*\n", text):
        uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
        suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
        if not uris or not suites:
            continue
        if "-security" in suites.group(1):
            security = uris.group(1)
        elif "bookworm" in suites.group(1).split():
            main = uris.group(1)
    return main, security


def mounts_under(path):
    """Return mount points at or below ``path``, deepest first (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4].replace("\\040", " ")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def remove_tree(path):
    """Unmount whatever is mounted below ``path`` (never crossing into /proc), then delete it."""
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False)
    if mounts_under(path):
        raise RuntimeError(f"jincai lab: cannot unmount everything under {path}; not deleting it")
    shutil.rmtree(path, ignore_errors=True)


def _builder_alive(name):
    """True when the process that is building ``lab-image-<hash>.tmp<pid>`` still runs."""
    pid = name.rsplit(".tmp", 1)[1].split(".")[0]
    return pid.isdigit() and int(pid) != os.getpid() and os.path.exists(f"/proc/{pid}")


def ensure(cache_dir=CACHE_DIR, log=print):
    """Return the path of the current image, building it first when it is not cached.

    Concurrent callers (several engineers on one machine) serialise on a lock in the cache dir:
    the second one waits and then finds the image cached.
    """
    final = image_path(cache_dir)
    marker = os.path.join(final, ".jincai-image")
    if os.path.isfile(marker):
        log(f"image: cached {final}")
        return final
    os.makedirs(cache_dir, exist_ok=True)
    with open(os.path.join(cache_dir, ".build.lock"), "a", encoding="ascii") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("image: another build is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(marker):
            log(f"image: cached {final}")
            return final
        return _build(cache_dir, final, log)


def _build(cache_dir, final, log):
    # Leftovers of a killed build (lab-image-*.tmp<pid> whose builder is gone).
    for name in os.listdir(cache_dir):
        if name.startswith("lab-image-") and ".tmp" in name and not _builder_alive(name):
            path = os.path.join(cache_dir, name)
            if os.path.isdir(path):
                remove_tree(path)
            else:
                os.unlink(path)
    tmp = f"{final}.tmp{os.getpid()}"
    main, security = mirrors()
    log(f"image: building {os.path.basename(final)} ({len(packages())} packages); takes a few minutes")
    start = time.monotonic()
    try:
        subprocess.run(["bash", BUILD_SCRIPT, tmp, main, security, PACKAGES_FILE], check=True)
        with open(os.path.join(tmp, ".jincai-image"), "w", encoding="utf-8") as fh:
            fh.write(f"hash={image_hash()}\nbuilt={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        if os.path.isdir(final):  # a half image from an older jincai without the marker
            remove_tree(final)
        os.rename(tmp, final)
    except BaseException:
        remove_tree(tmp)
        for suffix in (".debootstrap.log", ".apt.log"):
            if os.path.exists(tmp + suffix):
                os.unlink(tmp + suffix)
        raise
    log(f"image: built in {time.monotonic() - start:.0f} s")
    return final


def stale_images(cache_dir=CACHE_DIR):
    """Return cached images other than the current one (candidates for removal)."""
    current = os.path.basename(image_path(cache_dir))
    try:
        names = os.listdir(cache_dir)
    except OSError:
        return []
    return [os.path.join(cache_dir, n) for n in names
            if n.startswith("lab-image-") and n != current and ".tmp" not in n]

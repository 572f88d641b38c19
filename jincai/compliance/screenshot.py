"""Render a report page in headless Chromium: a PNG screenshot and the rendered DOM.

Used by the tests to prove the HTML report renders (Debian package ``chromium``). Chromium runs with
every background-networking feature off and a fresh profile; it only opens the ``file://`` page.
"""

import os
import shutil
import struct
import subprocess
import tempfile

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


def chromium():
    """Return the chromium binary path, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args, page, timeout):
    with tempfile.TemporaryDirectory(prefix="jincai-chromium-") as profile:
        argv = [chromium()] + FLAGS + [f"--user-data-dir={profile}"] + args + ["file://" + os.path.abspath(page)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(page, png, width=1280, height=1600, timeout=90):
    """Save a screenshot of ``page`` to ``png``; return (width, height) read from the PNG header."""
    if os.path.exists(png):
        os.remove(png)
    res = _run([f"--screenshot={os.path.abspath(png)}", f"--window-size={width},{height}"], page, timeout)
    if not os.path.exists(png):
        raise RuntimeError(f"chromium wrote no screenshot (rc {res.returncode}): {res.stderr[-2000:]}")
    return png_size(png)


def dump_dom(page, timeout=90):
    """Return the DOM as Chromium rendered it (serialized HTML)."""
    res = _run(["--dump-dom"], page, timeout)
    if res.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed (rc {res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def png_size(path):
    """Return (width, height) of a PNG file; raise ValueError when it is not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG")
    return struct.unpack(">II", head[16:24])

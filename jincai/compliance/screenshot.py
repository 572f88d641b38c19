"""Render a report page in headless Chromium: a PNG screenshot, the rendered DOM, the PNG's pixels.

Used by the tests to prove the HTML report renders (Debian package ``chromium``). Chromium runs with
every background-networking feature off and a fresh profile; it only opens the ``file://`` page.
"""

import itertools
import os
import shutil
import struct
import subprocess
import tempfile
import zlib

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
    return screenshot_and_dom(page, png, width, height, timeout, dom=False)[0]


def screenshot_and_dom(page, png, width=1280, height=1600, timeout=90, dom=True):
    """Save a screenshot of ``page`` to ``png`` and return ``((width, height), DOM)`` from the same
    Chromium run (the DOM as rendered, after the page's scripts ran; "" without ``dom``)."""
    if os.path.exists(png):
        os.remove(png)
    res = _run([f"--screenshot={os.path.abspath(png)}", f"--window-size={width},{height}"]
               + (["--dump-dom"] if dom else []), page, timeout)
    if not os.path.exists(png):
        raise RuntimeError(f"chromium wrote no screenshot (rc {res.returncode}): {res.stderr[-2000:]}")
    return png_size(png), res.stdout if dom else ""


def dump_dom(page, timeout=90):
    """Return the DOM as Chromium rendered it (serialized HTML)."""
    res = _run(["--dump-dom"], page, timeout)
    if res.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed (rc {res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def _lane_add(width):
    """Byte-wise addition mod 256 of two ``width``-byte big integers (no carry between bytes)."""
    low = int.from_bytes(b"\x7f" * width, "big")
    high = int.from_bytes(b"\x80" * width, "big")
    return lambda a, b: ((a & low) + (b & low)) ^ ((a ^ b) & high)


def _unfilter(kind, line, prev, bpp, row_add, pixel_add):
    """One scanline of a PNG with its filter (PNG spec section 9) undone."""
    stride = len(line)
    if kind == 0:
        return line
    if kind == 2:  # Up
        return row_add(int.from_bytes(line, "big"), int.from_bytes(prev, "big")).to_bytes(stride, "big")
    if kind == 1:  # Sub: a running byte-wise sum over pixels
        pixels = (int.from_bytes(line[i:i + bpp], "big") for i in range(0, stride, bpp))
        return b"".join(v.to_bytes(bpp, "big") for v in itertools.accumulate(pixels, pixel_add))
    cur = bytearray(line)
    if kind == 3:  # Average
        for i in range(stride):
            left = cur[i - bpp] if i >= bpp else 0
            cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 255
        return bytes(cur)
    if kind != 4:
        raise ValueError(f"unknown PNG filter type {kind}")
    for i in range(bpp):  # Paeth; left and upper-left are 0 for the first pixel: the predictor is "up"
        cur[i] = (cur[i] + prev[i]) & 255
    for i in range(bpp, stride):
        a, b, c = cur[i - bpp], prev[i], prev[i - bpp]
        pa, pb = b - c, a - c
        pc = abs(pa + pb)
        pa, pb = abs(pa), abs(pb)
        cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return bytes(cur)


class Pixels:
    """A decoded PNG: ``width``, ``height`` and :meth:`rgb` of a pixel."""

    def __init__(self, width, height, bpp, rows):
        self.width, self.height, self.bpp, self.rows = width, height, bpp, rows

    def rgb(self, x, y):
        """The (r, g, b) of pixel (x, y); IndexError outside the image."""
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise IndexError(f"pixel ({x}, {y}) outside the {self.width}x{self.height} image")
        row, i = self.rows[y], x * self.bpp
        return row[i], row[i + 1], row[i + 2]


def read_png(path):
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) with zlib and struct only."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, head = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if head is None:
        raise ValueError(f"{path}: no IHDR chunk")
    width, height, depth, colour, _comp, _filt, interlace = head
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"{path}: only 8-bit RGB/RGBA non-interlaced PNGs are read "
                         f"(depth {depth}, colour type {colour}, interlace {interlace})")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    row_add, pixel_add = _lane_add(stride), _lane_add(bpp)
    rows, prev = [], bytes(stride)
    for y in range(height):
        off = y * (stride + 1)
        prev = _unfilter(raw[off], raw[off + 1:off + 1 + stride], prev, bpp, row_add, pixel_add)
        rows.append(prev)
    return Pixels(width, height, bpp, rows)


def png_size(path):
    """Return (width, height) of a PNG file; raise ValueError when it is not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG")
    return struct.unpack(">II", head[16:24])

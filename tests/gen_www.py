#!/usr/bin/env python3
"""Generate Relevo's demo site, www/, from nothing but the standard library.

Usage: python3 tests/gen_www.py [OUT_DIR]      (default: www/ beside tests/)

Every byte is made here: the pages are written out below, the PNGs are drawn
pixel by pixel and encoded with zlib + struct, the binary file comes from a
seeded generator. The output is deterministic (fixed seeds, no timestamps), so
running the script again gives the same files and `git status` stays clean.

The pages contain the placeholder {{server}}; the demo webserver replaces it
with its own name (static_files::fill_template), so refreshing
http://localhost:8080/ through the proxy shows server-1, server-2, server-3 in
turn.
"""

import colorsys
import hashlib
import math
import random
import struct
import sys
import zlib
from pathlib import Path

# ---------------------------------------------------------------- PNG encoding


def png(width, height, rows, filter_type=0):
    """Encode RGB rows (each `width * 3` bytes) as an 8-bit truecolour PNG.

    filter_type 0 stores rows as they are (best for noise); 1 (Sub) and 2 (Up)
    store differences, which shrinks smooth gradients a lot.
    """
    assert len(rows) == height and all(len(r) == width * 3 for r in rows)
    out = bytearray()
    previous = bytes(width * 3)
    for row in rows:
        out.append(filter_type)
        if filter_type == 0:
            out += row
        elif filter_type == 1:
            out += bytes((row[i] - (row[i - 3] if i >= 3 else 0)) & 0xFF
                         for i in range(len(row)))
        elif filter_type == 2:
            out += bytes((a - b) & 0xFF for a, b in zip(row, previous))
        else:
            raise ValueError(filter_type)
        previous = row

    def chunk(tag, data):
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(out), 9)) + chunk(b"IEND", b""))


def render(width, height, colour_at, samples=1):
    """Rows of RGB bytes; colour_at(x, y) -> (r, g, b) floats in 0..255.

    With samples > 1 each pixel is the average of samples x samples points,
    which anti-aliases the edges of shapes.
    """
    offsets = [(i + 0.5) / samples for i in range(samples)]
    n = samples * samples
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            r = g = b = 0.0
            for dy in offsets:
                for dx in offsets:
                    cr, cg, cb = colour_at(x + dx, y + dy)
                    r, g, b = r + cr, g + cg, b + cb
            row += bytes(max(0, min(255, round(c / n))) for c in (r, g, b))
        rows.append(bytes(row))
    return rows


def hex_rgb(text):
    return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))


def hsv(h, s, v):
    return tuple(255 * c for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def mix(a, b, t):
    return tuple(p + (q - p) * t for p, q in zip(a, b))


# ------------------------------------------------------------ the Relevo logo

# A 5x7 pixel font, just the letters of the name.
GLYPHS = {
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "E": ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "V": ["10001", "10001", "10001", "10001", "10001", "01010", "00100"],
    "O": ["01110", "10001", "10001", "10001", "10001", "10001", "01110"],
}


def logo_png():
    """320x200: a proxy (circle with a round-robin arrow) fanning out to three
    servers, over a navy-to-teal gradient, with the name underneath."""
    width, height = 320, 200
    navy, teal = hex_rgb("#1d3557"), hex_rgb("#2a9d8f")
    white, cream = hex_rgb("#ffffff"), hex_rgb("#f1faee")
    servers = [hex_rgb("#e76f51"), hex_rgb("#f4a261"), hex_rgb("#e9c46a")]
    cx, cy, radius = 82.0, 82.0, 46.0
    server_ys = [38.0, 92.0, 146.0]
    sx0, sx1, s_half = 214.0, 292.0, 16.0

    def segment_distance(px, py, ax, ay, bx, by):
        vx, vy = bx - ax, by - ay
        t = max(0.0, min(1.0, ((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy)))
        return math.hypot(px - ax - t * vx, py - ay - t * vy)

    # Round-robin arrow: an arc from 40 to 320 degrees and a head at its end.
    head_angle = math.radians(320)
    hx, hy = cx + 22 * math.cos(head_angle), cy + 22 * math.sin(head_angle)
    tx, ty = -math.sin(head_angle), math.cos(head_angle)  # direction of travel
    rx, ry = math.cos(head_angle), math.sin(head_angle)  # outwards
    head = [(hx + 11 * rx, hy + 11 * ry), (hx - 11 * rx, hy - 11 * ry),
            (hx + 13 * tx, hy + 13 * ty)]

    def in_triangle(px, py, tri):
        signs = []
        for (ax, ay), (bx, by) in zip(tri, tri[1:] + tri[:1]):
            signs.append((bx - ax) * (py - ay) - (by - ay) * (px - ax) > 0)
        return all(signs) or not any(signs)

    scale, text_x, text_y = 4, 22, 156
    text = "RELEVO"

    def in_text(px, py):
        gx, gy = int((px - text_x) // scale), int((py - text_y) // scale)
        if not (0 <= gy < 7 and gx >= 0):
            return False
        letter, column = divmod(gx, 6)
        if letter >= len(text) or column == 5:
            return False
        return GLYPHS[text[letter]][gy][column] == "1"

    def colour_at(x, y):
        colour = mix(navy, teal, (x / width + y / height) / 2)
        for sy in server_ys:  # links from the proxy to each server
            if segment_distance(x, y, cx + radius - 4, cy, sx0, sy) < 3.0:
                colour = mix(colour, cream, 0.8)
        d = math.hypot(x - cx, y - cy)
        if d < radius:
            colour = white
            angle = math.degrees(math.atan2(y - cy, x - cx)) % 360
            if (abs(d - 22) < 5 and 40 <= angle <= 320) or in_triangle(x, y, head):
                colour = navy
        for sy, fill in zip(server_ys, servers):  # rounded server boxes
            qx = max(sx0 + s_half, min(sx1 - s_half, x))
            if math.hypot(x - qx, y - sy) < s_half:
                colour = fill
                if abs(y - sy) < 2 and sx0 + 14 < x < sx1 - 30:  # a slot
                    colour = navy
                if math.hypot(x - (sx1 - 16), y - sy) < 4:  # a light
                    colour = white
        if in_text(x, y):
            colour = cream
        return colour

    return png(width, height, render(width, height, colour_at, samples=3), 1)


# ----------------------------------------------------------------- the tiles

TILE = 64
PATTERNS = ["stripes", "checks", "rings", "diagonals", "dots", "diamond"]


def tile_png(index):
    """A 64x64 two-colour pattern; index 0..11 picks the hue and pattern."""
    hue = index / 12
    light = hsv(hue, 0.55, 0.97)
    dark = hsv(hue + 0.04, 0.85, 0.55)
    pattern = PATTERNS[index % len(PATTERNS)]
    period = 16 if index < len(PATTERNS) else 8

    def colour_at(x, y):
        u, v = x - TILE / 2, y - TILE / 2
        if pattern == "stripes":
            on = (y // (period / 2)) % 2 < 1
        elif pattern == "checks":
            on = ((x // period) + (y // period)) % 2 < 1
        elif pattern == "rings":
            on = (math.hypot(u, v) // (period / 2)) % 2 < 1
        elif pattern == "diagonals":
            on = ((x + y) // (period / 2)) % 2 < 1
        elif pattern == "dots":
            cu, cv = (x % period) - period / 2, (y % period) - period / 2
            on = math.hypot(cu, cv) < period / 3
        else:
            on = ((abs(u) + abs(v)) // (period / 2)) % 2 < 1
        return dark if on else light

    return png(TILE, TILE, render(TILE, TILE, colour_at, samples=2), 1)


# -------------------------------------------------- the heavy (noisy) images

PHOTO_W, PHOTO_H = 384, 256
# name, sky top, sky bottom, hill colour, seed
PHOTOS = [
    ("dawn", "#ffb4a2", "#ffe5d9", "#6d597a", 11),
    ("sea", "#023e8a", "#90e0ef", "#03045e", 12),
    ("moss", "#d8f3dc", "#95d5b2", "#2d6a4f", 13),
    ("dusk", "#3c096c", "#ff9e00", "#10002b", 14),
]
NOISE = 64  # each channel gets 0..NOISE-1 added: about 6 random bits, so
# deflate cannot shrink the image much and it stays near 250 KB


def photo_png(top, bottom, hill, seed):
    """A sky gradient over rolling hills, with film grain on every pixel."""
    rng = random.Random(seed)
    top, bottom, hill = hex_rgb(top), hex_rgb(bottom), hex_rgb(hill)
    phase = rng.uniform(0, math.tau)
    rows = []
    for y in range(PHOTO_H):
        grain = rng.randbytes(PHOTO_W * 3)
        sky = mix(top, bottom, y / PHOTO_H)
        row = bytearray()
        for x in range(PHOTO_W):
            ridge = PHOTO_H * (0.62 + 0.12 * math.sin(x / 53 + phase)
                               + 0.05 * math.sin(x / 17 + 2 * phase))
            base = hill if y > ridge else sky
            for c in range(3):
                value = base[c] - NOISE / 2 + grain[3 * x + c] % NOISE
                row.append(max(0, min(255, round(value))))
        rows.append(bytes(row))
    return png(PHOTO_W, PHOTO_H, rows, 0)


# ---------------------------------------------------------------- the pages

BIG_FILE_BYTES = 1_048_576


def page(title, body):
    """A whole HTML document with the shared head, banner and footer."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="styles.css">
</head>
<body>
  <header class="banner">
    <span class="label">Served by</span>
    <span class="server">{{{{server}}}}</span>
  </header>
  <main>
{body.rstrip()}
  </main>
  <footer>
    <a href="index.html">Relevo demo site</a> &middot; this page came from
    <strong>{{{{server}}}}</strong>
  </footer>
</body>
</html>
"""


def index_html():
    return page("Relevo demo site", """
    <h1>Relevo demo site</h1>
    <p>
      You are looking at this page through <strong>Relevo</strong>, a small
      HTTP/1.1 reverse proxy. Relevo does not hold the files itself: it passes
      each request on to one of several identical web servers, taking them in
      turn (<em>round robin</em>). The name in the banner above is the server
      that answered this request.
    </p>
    <p>
      Press <kbd>F5</kbd> a few times: the name should go
      <code>server-1</code>, <code>server-2</code>, <code>server-3</code> and
      round again. If Relevo's cache is switched on, a page it has stored keeps
      the name of the server that answered first, until the copy expires.
    </p>
    <h2>Test pages</h2>
    <ul class="tests">
      <li><a href="one-image.html">A page with one image</a></li>
      <li><a href="many-images.html">A page with many images</a> (twelve small
        ones, so thirteen requests)</li>
      <li><a href="big-file.html">A big file</a> (1 MiB to download)</li>
      <li><a href="one-megabyte.html">A page of about one megabyte</a> (four
        large images)</li>
    </ul>
""")


def one_image_html():
    return page("One image - Relevo demo", """
    <h1>A page with one image</h1>
    <p>
      The browser asks for this page, then for the one picture on it: two
      requests, which may well be answered by two different servers.
    </p>
    <figure>
      <img src="img/relevo.png" width="320" height="200"
           alt="The Relevo logo: a proxy fanning out to three servers">
      <figcaption><code>img/relevo.png</code>, 320 &times; 200 pixels</figcaption>
    </figure>
""")


def many_images_html(sizes):
    items = []
    for i in range(1, 13):
        name = f"tile-{i:02}.png"
        items.append(
            f'      <figure><img src="img/{name}" width="96" height="96" '
            f'alt="Pattern tile {i}">\n'
            f"        <figcaption>{name}<br>{sizes[name]:,} bytes</figcaption></figure>")
    grid = "\n".join(items)
    return page("Many images - Relevo demo", f"""
    <h1>A page with many images</h1>
    <p>
      Twelve small pictures, so the browser sends thirteen requests, several
      of them at once on parallel connections. Watch the proxy's log: they are
      spread across the servers.
    </p>
    <div class="grid">
{grid}
    </div>
""")


def big_file_html(digest):
    return page("Big file - Relevo demo", f"""
    <h1>A big file</h1>
    <p>
      <a class="button" href="files/big.bin" download>Download big.bin</a>
    </p>
    <p>
      <code>files/big.bin</code> is exactly <strong>1,048,576 bytes</strong>
      (1 MiB) of pseudo-random data, so no one can compress it along the way.
      It is large enough to show whether the proxy streams a body or holds it
      all in memory first.
    </p>
    <p>Check that nothing was lost on the way:</p>
    <pre>$ curl -s http://localhost:8080/files/big.bin | sha256sum
{digest}  -</pre>
""")


def one_megabyte_html(photo_sizes, css_size):
    rows = []
    figures = []
    for name, *_ in PHOTOS:
        file = f"{name}.png"
        rows.append(f"        <tr><td><code>img/{file}</code></td>"
                    f"<td>{photo_sizes[file]:,}</td></tr>")
        figures.append(
            f'      <img src="img/{file}" width="{PHOTO_W}" height="{PHOTO_H}" '
            f'alt="Grainy landscape: {name}">')
    total = sum(photo_sizes.values()) + css_size
    table = "\n".join(rows)
    pictures = "\n".join(figures)
    return page("One megabyte - Relevo demo", f"""
    <h1>A page of about one megabyte</h1>
    <p>
      Four large pictures, deliberately grainy so they do not compress: the
      browser has to fetch about a megabyte to show this page.
    </p>
    <div class="photos">
{pictures}
    </div>
    <table>
      <thead><tr><th>File</th><th>Bytes</th></tr></thead>
      <tbody>
{table}
        <tr><td><code>styles.css</code></td><td>{css_size:,}</td></tr>
      </tbody>
      <tfoot><tr><th>Total, without this page</th><th>{total:,}</th></tr></tfoot>
    </table>
""")


STYLES = """/* Shared style for the Relevo demo site. */
body {
  margin: 0;
  font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
  line-height: 1.5;
  color: #1d3557;
  background: #f1faee;
}
.banner {
  padding: 1.5rem 1rem;
  text-align: center;
  color: #f1faee;
  background: linear-gradient(135deg, #1d3557, #2a9d8f);
}
.banner .label {
  display: block;
  font-size: 1.1rem;
  letter-spacing: 0.2em;
  text-transform: uppercase;
  opacity: 0.8;
}
.banner .server {
  display: block;
  font-size: 3.5rem;
  font-weight: 800;
  line-height: 1.1;
  color: #e9c46a;
}
main, footer {
  max-width: 52rem;
  margin: 0 auto;
  padding: 0 1rem;
}
footer {
  margin-top: 2rem;
  padding-bottom: 2rem;
  border-top: 1px solid #a8dadc;
  font-size: 0.9rem;
}
a { color: #e76f51; }
code, pre, kbd { font-family: ui-monospace, Menlo, Consolas, monospace; }
pre {
  overflow-x: auto;
  padding: 0.75rem;
  color: #f1faee;
  background: #1d3557;
}
.tests li { margin: 0.4rem 0; }
.button {
  display: inline-block;
  padding: 0.6rem 1.2rem;
  border-radius: 0.4rem;
  color: #1d3557;
  background: #e9c46a;
  font-weight: 700;
  text-decoration: none;
}
figure { margin: 0; text-align: center; }
figcaption { font-size: 0.8rem; }
.grid {
  display: grid;
  grid-template-columns: repeat(auto-fill, minmax(7rem, 1fr));
  gap: 1rem;
}
.photos img { max-width: 100%; height: auto; margin: 0.25rem 0; }
table { border-collapse: collapse; margin: 1rem 0; }
td, th { padding: 0.2rem 0.8rem; text-align: left; }
td + td, th + th { text-align: right; }
tfoot th { border-top: 1px solid #1d3557; }
"""


def favicon_ico():
    """A 32x32 icon: the logo's proxy circle, as a PNG inside an ICO file."""
    navy, teal, white = hex_rgb("#1d3557"), hex_rgb("#2a9d8f"), hex_rgb("#ffffff")

    def colour_at(x, y):
        d = math.hypot(x - 16, y - 16)
        if d < 11 and abs(d - 7) >= 2.2:
            return white
        return navy if d < 11 else teal

    data = png(32, 32, render(32, 32, colour_at, samples=3), 1)
    directory = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 32, 32, 0, 0, 1, 32, len(data), 6 + 16)
    return directory + entry + data


# ----------------------------------------------------------------- main


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else \
        Path(__file__).resolve().parent.parent / "www"
    files = {}

    files["img/relevo.png"] = logo_png()
    for i in range(12):
        files[f"img/tile-{i + 1:02}.png"] = tile_png(i)
    for name, top, bottom, hill, seed in PHOTOS:
        files[f"img/{name}.png"] = photo_png(top, bottom, hill, seed)
    files["files/big.bin"] = random.Random(2).randbytes(BIG_FILE_BYTES)
    files["favicon.ico"] = favicon_ico()
    files["styles.css"] = STYLES.encode()

    tile_sizes = {p.split("/")[1]: len(d) for p, d in files.items()
                  if p.startswith("img/tile-")}
    photo_sizes = {f"{name}.png": len(files[f"img/{name}.png"])
                   for name, *_ in PHOTOS}
    files["index.html"] = index_html().encode()
    files["one-image.html"] = one_image_html().encode()
    files["many-images.html"] = many_images_html(tile_sizes).encode()
    files["big-file.html"] = big_file_html(
        hashlib.sha256(files["files/big.bin"]).hexdigest()).encode()
    files["one-megabyte.html"] = one_megabyte_html(
        photo_sizes, len(files["styles.css"])).encode()

    total = 0
    for rel, data in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total += len(data)
        print(f"{len(data):>9,}  {path}")
    print(f"{total:>9,}  total in {len(files)} files")


if __name__ == "__main__":
    main()

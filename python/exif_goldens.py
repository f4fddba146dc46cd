"""Goldens for vidlm-video-io's image loading: JPEGs (and a PNG) with every EXIF orientation,
and what transformers' ``load_image`` makes of them.

``transformers.image_utils.load_image`` opens a file with PIL, applies
``ImageOps.exif_transpose`` and converts to RGB. This script writes small test images with
PIL into ``crates/video-io/tests/goldens/exif/`` and, for each, the RGB array transformers
returns as a lossless ``<name>.expected.png``; ``crates/video-io/tests/exif.rs`` checks that
``load_image`` returns exactly those pixels.

    python python/exif_goldens.py          # (re)write the goldens
    python python/exif_goldens.py --check  # fail if transformers now returns other pixels
"""

import argparse
import io
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "crates" / "video-io" / "tests" / "goldens" / "exif"


def picture(h=37, w=61):
    """An asymmetric picture with colour edges (chroma subsampling shows there)."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(x * 4) % 256, (y * 7) % 256, ((x + 2 * y) * 3) % 256], -1).astype(np.uint8)
    rgb[:9, :13] = [230, 20, 30]  # a red block in the top-left corner
    rgb[h - 6 :, w - 20 :] = [20, 40, 220]  # a blue bar at the bottom right
    return Image.fromarray(rgb, "RGB")


def exif_bytes(orientation):
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


def images():
    """name -> encoded bytes."""
    base = picture()
    out = {}

    def save(im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()

    for o in range(1, 9):
        out[f"orientation_{o}.jpg"] = save(base, "JPEG", quality=90, exif=exif_bytes(o))
    out["orientation_6_444.jpg"] = save(base, "JPEG", quality=95, subsampling=0, exif=exif_bytes(6))
    out["orientation_3_progressive.jpg"] = save(base, "JPEG", quality=85, progressive=True, exif=exif_bytes(3))
    out["orientation_8_gray.jpg"] = save(base.convert("L"), "JPEG", quality=90, exif=exif_bytes(8))
    out["orientation_5_xmp.jpg"] = save(
        base,
        "JPEG",
        quality=90,
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="5"/></rdf:RDF></x:xmpmeta>',
    )
    out["cmyk.jpg"] = save(base.convert("CMYK"), "JPEG", quality=90)
    out["orientation_7.png"] = save(base, "PNG", exif=exif_bytes(7))
    return out


def load(path):
    from transformers.image_utils import load_image

    return np.asarray(load_image(str(path)))


def png(arr):
    b = io.BytesIO()
    Image.fromarray(arr, "RGB").save(b, "PNG")
    return b.getvalue()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    bad = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in images().items():
            src = OUT / name if args.check else Path(tmp) / name
            if not args.check:
                src.write_bytes(data)
            got = load(src)
            assert got.dtype == np.uint8 and got.ndim == 3 and got.shape[2] == 3, (name, got.shape)
            exp = OUT / f"{name}.expected.png"
            if args.check:
                want = np.asarray(Image.open(exp).convert("RGB"))
                if want.shape != got.shape or (want != got).any():
                    bad.append(name)
            else:
                OUT.mkdir(parents=True, exist_ok=True)
                (OUT / name).write_bytes(data)
                exp.write_bytes(png(got))
                print(f"{name}: {got.shape[1]}x{got.shape[0]}")
    if bad:
        print("transformers' load_image now returns other pixels for: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

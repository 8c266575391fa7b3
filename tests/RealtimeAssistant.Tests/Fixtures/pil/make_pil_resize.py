#!/usr/bin/python3
"""Pillow's Image.resize outputs on the hf fixture images, as SHA-256 of the RGB bytes, for the C#
PilResample test. Run with Debian 12's python3-pil (Pillow 9.4.0): /usr/bin/python3 make_pil_resize.py"""
import hashlib, json
from pathlib import Path
import PIL
from PIL import Image

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "hf" / "images"
FILES = ["landscape_53x37.png", "portrait_30x61.png", "wide_150x100.png"]
# (width, height): down both ways, up, one axis only, non-integer ratios, tiny
SIZES = [(16, 16), (32, 32), (45, 32), (7, 13), (200, 150), (150, 37), (53, 20), (64, 48), (1, 1)]
FILTERS = {1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}

cases = []
for f in FILES:
    im = Image.open(IMAGES / f).convert("RGB")
    for w, h in SIZES:
        for code in FILTERS:
            out = im.resize((w, h), resample=code)
            data = out.tobytes()
            cases.append({"image": f"images/{f}", "width": w, "height": h, "resample": code,
                          "sha256": hashlib.sha256(data).hexdigest(), "first": list(data[:6])})
lines = ",\n  ".join(json.dumps(c) for c in cases)
(HERE / "pil_resize.json").write_text(
    f'{{"pillow": "{PIL.__version__}", "produced_by": "make_pil_resize.py", "cases": [\n  {lines}\n]}}\n')
print(len(cases), "cases")

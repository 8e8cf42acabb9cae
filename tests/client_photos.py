"""Small real photos on disk for the bulk client's tests and benchmark: crops of scikit-image's
photos, 64-128 px, as JPEG and PNG, in nested folders."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image

from photos import COLOR_PHOTOS, photo


def write_photos(root: Path, count: int, seed: int = 17, formats: tuple[str, ...] = ("JPEG", "PNG")) -> list[Path]:
    """``count`` photos under ``root`` (in ``root``, ``root/trip`` and ``root/trip/day2``); returns
    their paths. Each is a crop at a random place of a random photo, 64-128 px a side, some grey."""
    rng = random.Random(seed)
    folders = [root, root / "trip", root / "trip" / "day2"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        src = photo(rng.choice(COLOR_PHOTOS))
        w, h = rng.randint(64, 128), rng.randint(64, 128)
        left, top = rng.randint(0, src.width - w), rng.randint(0, src.height - h)
        im: Image.Image = src.crop((left, top, left + w, top + h))
        # Untagged (some photos carry an Adobe RGB profile, which the worker would convert): the
        # tests compare the job path with the Pipeline, which takes pixels as they are.
        im.info.pop("icc_profile", None)
        if i % 7 == 3:
            im = im.convert("L")
        fmt = formats[i % len(formats)]
        path = folders[i % len(folders)] / f"img{i:04d}.{'jpg' if fmt == 'JPEG' else fmt.lower()}"
        im.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        paths.append(path)
    return paths

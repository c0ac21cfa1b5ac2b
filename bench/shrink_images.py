"""Copy an image dataset with every image resized to a shorter side of 256 (bilinear, JPEG quality 90).

The GPU fixtures of 2026-11-27 were trained on such a copy (``../shared/fixtures/SOURCE.md``): it is
what a device call can carry (its working tree is limited to 64 MiB), and training resizes to 256
anyway. Folder layout and file names are kept; files that are not images are skipped.

    python bench/shrink_images.py ../shared/data/office_caltech10 .gpu/office_caltech10
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from symnets_deploy.inputs import scan_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--shorter", type=int, default=256)
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()
    count = 0
    for path in scan_folder(args.source):
        target = (args.destination / path.relative_to(args.source)).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = args.shorter / min(image.size)
            if scale < 1:
                image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
            image.save(target, quality=args.quality)
        count += 1
    size = sum(p.stat().st_size for p in args.destination.rglob("*") if p.is_file()) / 2**20
    print(f"{count} images -> {args.destination} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()

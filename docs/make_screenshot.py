"""Regenerate docs/report-html.png, the README's picture of `btrfsscan report --sample --html`.

Runs the report on the bundled sample image, renders the page in headless
Chromium (fresh profile, no network needed) and keeps the top of the page:
the headline, the designs side by side and the sharing matrix.

    python docs/make_screenshot.py [--chromium PATH] [--height PIXELS]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "report-html.png"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=1900)
    args = parser.parse_args()
    if not args.chromium:
        print("chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "sample.html"
        subprocess.run([sys.executable, "-m", "btrfsscan", "report", "--sample", "-q", "--html", str(page)], check=True)
        subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp}/profile", "--hide-scrollbars",
                        f"--window-size={args.width},{args.height}", "--virtual-time-budget=5000",
                        f"--screenshot={OUT}", page.as_uri()], check=True, capture_output=True)
    print(f"{OUT} ({OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A screenshot of the `mgen serve` page for the README, taken with headless Debian chromium.

    python scripts/serve_screenshot.py http://127.0.0.1:8600/ docs/serve.png

Start the server first and make a few takes (and leave one running) so the page shows them.
"""

from __future__ import annotations

import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def main(url: str, out: str) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1360,900", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        time.sleep(3)  # the history, the waveforms and a progress event or two
        driver.save_screenshot(out)
    finally:
        driver.quit()


if __name__ == "__main__":
    main(*sys.argv[1:3])

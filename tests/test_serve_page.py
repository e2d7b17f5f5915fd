"""The page of `mgen serve` in a real headless browser (Debian's chromium through chromedriver).

Not skipped when the browser is missing: .ci/run installs chromium and chromium-driver.
"""

from __future__ import annotations

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.serve_run import Server, build_models, state, wait_for

WAIT_S = 120


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-page")
    running = Server(root / "data", build_models(root / "cache", "tiny-random")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def until(driver, check, timeout: float = WAIT_S):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: check(d))


def type_into(driver, element_id: str, text: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def open_page(driver, server) -> None:
    driver.get(server.url + "/")
    until(driver, lambda d: "tiny-random" in d.find_element(By.ID, "model").text)


def ask(driver, prompt: str, duration: str) -> None:
    type_into(driver, "prompt", prompt)
    type_into(driver, "duration", duration)
    driver.find_element(By.ID, "generate").click()


def queued_items(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#queue li")


def test_a_take_from_prompt_to_history_and_back_into_the_form(server, browser):
    open_page(browser, server)

    # a long take runs; a second one waits in the queue and is cancelled from the page
    ask(browser, "a long drone to cancel", "300")
    until(browser, lambda d: d.find_element(By.ID, "progress").get_attribute("value") not in ("0", None))
    ask(browser, "waits in the queue", "1")
    until(browser, lambda d: len(queued_items(d)) == 2)
    waiting = queued_items(browser)[1]
    waiting_id = waiting.get_attribute("data-id")
    assert "waits in the queue" in waiting.text and "#1" in waiting.text
    waiting.find_element(By.CSS_SELECTOR, ".cancel").click()
    until(browser, lambda d: len(queued_items(d)) == 1)
    with server.client() as http:
        assert state(http, waiting_id) == "cancelled"
    queued_items(browser)[0].find_element(By.CSS_SELECTOR, ".cancel").click()  # the running one (items are kept)
    until(browser, lambda d: len(queued_items(d)) == 0)

    # the real take: progress moves, then it lands in the history with a playable clip
    browser.find_element(By.ID, "seed").send_keys("21")
    ask(browser, "browser jazz trio", "12")
    values: set[float] = set()

    def progressed(d) -> bool:
        bar = d.find_element(By.ID, "progress")
        value, top = float(bar.get_attribute("value")), float(bar.get_attribute("max"))
        if 0 < value < top:
            values.add(value)
        return len(values) >= 2 or d.find_elements(By.CSS_SELECTOR, "#history li.take.done")

    until(browser, progressed)
    assert values, "the progress bar never showed a value between empty and full"
    take = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#history li.take.done"))[0]
    take_id = take.get_attribute("data-id")
    assert "browser jazz trio" in take.text and "seed 21" in take.text
    duration = until(browser, lambda d: d.execute_script(
        "const a = document.querySelector(`#history li[data-id='${arguments[0]}'] audio`);"
        "return a && a.readyState >= 1 ? a.duration : null;", take_id))
    assert duration == pytest.approx(12.0, abs=0.01)
    assert browser.execute_script("return document.querySelector('#history li.take.done audio').error") is None

    # still there after a reload
    browser.refresh()
    take = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#history li[data-id='{take_id}']"))[0]
    assert "browser jazz trio" in take.text

    # "use these settings" puts the take's settings back into the form
    type_into(browser, "prompt", "something else")
    type_into(browser, "duration", "3")
    take.find_element(By.CSS_SELECTOR, ".use-settings").click()
    form = {name: browser.find_element(By.ID, name).get_attribute("value") for name in ("prompt", "duration", "seed")}
    assert form == {"prompt": "browser jazz trio", "duration": "12", "seed": "21"}
    assert not browser.find_element(By.ID, "seed-random").is_selected()

    # and the cancelled jobs show as cancelled, not as takes
    cancelled = browser.find_elements(By.CSS_SELECTOR, "#history li.take.cancelled")
    assert len(cancelled) == 2 and not cancelled[0].find_elements(By.TAG_NAME, "audio")
    with server.client() as http:
        wait_for(lambda: http.get("/v1/health").json()["queue_depth"] == 0, 30)


def test_a_bad_setting_is_shown_in_one_line_with_its_fix(server, browser):
    open_page(browser, server)
    ask(browser, "x", "-2")
    error = until(browser, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
    assert "duration -2 s is out of range" in error.text and "give more than 0" in error.text

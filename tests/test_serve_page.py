"""The serving web page in a real headless browser (Debian's chromium via its chromedriver).

Uploads a bundled sample, waits for the overlay, checks its size, the legend
and the latency line, moves the opacity slider; sends a picture whose answer
is held back, then clicks a sample button, and checks that the later picture
wins; uploads a text file and checks that the error is told in plain words
and the last result is gone; uploads a file over the size limit. Under CI
(``CI=true``) a missing browser fails the test; elsewhere it is skipped with
the command that installs it.
"""

import os
import time

import pytest

from fcn_tf.serve.app import STATIC_DIR
from serve_helpers import NUM_CLASSES, ServerProcess, export_tiny_model

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = ("apt-get update && apt-get install -y --no-install-recommends chromium "
           "chromium-driver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,760"]
SAMPLE = os.path.join(STATIC_DIR, "samples", "shapes_1.png")
SAMPLE_2 = os.path.join(STATIC_DIR, "samples", "shapes_2.png")
MAX_REQUEST_MB = 1  # the page refuses files over about 0.75 MB itself
# Holds back the answer of the next predict request by 2 s; counts predict requests.
DELAY_NEXT_PREDICT = """
window.delayNextPredict = 2000;
window.predictsSent = 0;
if (!window.realFetch) {
  window.realFetch = window.fetch;
  window.fetch = async (url, options) => {
    let delay = 0;
    if (String(url).includes(":predict")) {
      window.predictsSent += 1;
      delay = window.delayNextPredict;
      window.delayNextPredict = 0;
    }
    const response = await window.realFetch(url, options);
    if (delay) await new Promise((resolve) => setTimeout(resolve, delay));
    return response;
  };
}
"""
DEVELOPER_TERMS = ("image 0", "b'", "--max", "instances", "signature", "HTTP ")


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if not missing:
        return
    message = (f"BROWSER TEST NOT RUN: {', '.join(missing)} missing. Install with: {INSTALL} "
               "(as root; .ci/run does this).")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    _browser_or_skip()
    base = export_tiny_model(tmp_path_factory.mktemp("serve_page"))
    server = ServerProcess(base, "--max-request-mb", str(MAX_REQUEST_MB),
                           log_path=tmp_path_factory.mktemp("page_log") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait_state(driver, state, timeout=30):
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body.dataset.state") == state,
        message=f"page never reached state {state!r}")


def test_page_segments_a_sample_and_shows_errors(page_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(page_server.url + "/")
    _wait_state(driver, "idle")
    assert "Model tiny version 1" in driver.find_element(By.ID, "model").text

    driver.find_element(By.ID, "file").send_keys(SAMPLE)
    _wait_state(driver, "done")
    overlay = driver.find_element(By.ID, "overlay")
    assert overlay.get_attribute("data-ready") == "1"
    assert (int(overlay.get_attribute("width")), int(overlay.get_attribute("height"))) == (128, 128)
    assert driver.execute_script("return document.getElementById('input').naturalWidth") == 128
    rows = driver.find_elements(By.CSS_SELECTOR, "#legend tbody tr.legend-row")
    names = [row.find_element(By.CSS_SELECTOR, ".name").text for row in rows]
    class_names = page_server.request("GET", "/info")[1]["class_names"]
    assert len(class_names) == NUM_CLASSES and names == class_names
    shares = [float(row.find_element(By.CSS_SELECTOR, ".share").text.rstrip("%")) for row in rows]
    assert abs(sum(shares) - 100.0) < 0.5, shares
    assert "Server" in driver.find_element(By.ID, "latency").text
    assert "ms" in driver.find_element(By.ID, "latency").text
    assert not driver.find_element(By.ID, "error").is_displayed()

    # The opacity slider redraws the overlay.
    pixel = ("var c = document.getElementById('overlay');"
             "return Array.from(c.getContext('2d').getImageData(0, 0, 128, 128).data"
             ".slice(0, 4 * 128 * 8));")
    before = driver.execute_script(pixel)
    driver.execute_script("var s = document.getElementById('opacity'); s.value = 0;"
                          "s.dispatchEvent(new Event('input'));")
    after = driver.execute_script(pixel)
    assert before != after
    driver.save_screenshot(str(tmp_path / "page.png"))

    assert driver.find_element(By.ID, "source").text == "shapes_1.png"

    # A slow answer does not overwrite a later one: the latest picture wins.
    driver.execute_script(DELAY_NEXT_PREDICT)
    driver.execute_script("document.body.dataset.state = 'idle'")
    driver.find_element(By.ID, "file").send_keys(SAMPLE_2)  # its answer is held back 2 s
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return window.predictsSent"))
    driver.find_elements(By.CSS_SELECTOR, "button.sample")[0].click()  # shapes_1.png
    _wait_state(driver, "done")
    result = driver.find_element(By.ID, "result")
    assert result.get_attribute("data-source") == "shapes_1.png"
    time.sleep(2.5)  # the held-back answer of shapes_2.png has come by now
    assert result.get_attribute("data-source") == "shapes_1.png"
    assert driver.execute_script("return document.body.dataset.state") == "done"

    # Not an image: a plain-words error, and the last result is gone.
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not an image\n")
    driver.find_element(By.ID, "file").send_keys(str(text_file))
    _wait_state(driver, "error")
    message = driver.find_element(By.ID, "error-message").text
    assert driver.find_element(By.ID, "error").is_displayed()
    assert "not a picture the server can read" in message, message
    assert not [term for term in DEVELOPER_TERMS if term in message], message
    assert not result.is_displayed()
    assert driver.find_elements(By.CSS_SELECTOR, "#legend tbody tr") == []
    assert driver.find_element(By.ID, "latency").get_attribute("textContent") == ""
    technical = driver.find_element(By.ID, "error-technical").get_attribute("textContent")
    assert "HTTP 400" in technical and "not an image" in technical, technical

    # A file over the server's limit is refused by the page, in plain words.
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(900_000))
    driver.execute_script("document.body.dataset.state = 'idle'")
    driver.find_element(By.ID, "file").send_keys(str(big))
    _wait_state(driver, "error")
    message = driver.find_element(By.ID, "error-message").text
    assert "This file is 0.9 MB" in message and "Use a smaller picture" in message, message
    assert not [term for term in DEVELOPER_TERMS if term in message], message

    # A bundled sample button; the error goes away.
    driver.find_elements(By.CSS_SELECTOR, "button.sample")[1].click()
    _wait_state(driver, "done")
    assert not driver.find_element(By.ID, "error").is_displayed()
    assert result.get_attribute("data-source") == "shapes_2.png"
    driver.save_screenshot(str(tmp_path / "page_after.png"))

"""What a user sees in MLflow's UI after `zerosum run`, in a real headless Chromium:
the run's metrics, its sample grid, and the registered model with its alias.

Needs Debian's chromium and chromium-driver (`make browser` installs them as root);
without them this test fails, saying so. Browsers that download themselves are not used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from zerosum_testing import JOBS, run_cli, zerosum_ui

pytestmark = pytest.mark.integration

CHROMIUM = Path(os.environ.get("ZEROSUM_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("ZEROSUM_CHROMEDRIVER", "/usr/bin/chromedriver"))
# The UI is a React app fetching from the server; on 2 busy cores a page takes 20-30 s.
PAGE_TIMEOUT = 120
INSTALL_HINT = ("install Debian's browser and driver: `sudo apt-get install chromium chromium-driver` "
                "(or `make browser` as root); ZEROSUM_CHROMIUM / ZEROSUM_CHROMEDRIVER point elsewhere")


@pytest.fixture
def browser() -> Iterator:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: pip install -e '.[test]'")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(f"no headless browser for the UI test ({', '.join(missing)} missing): {INSTALL_HINT}")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1600,1200"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # React re-renders tables while they load: an element found a moment ago may be gone.
    return WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.5,
                         ignored_exceptions=(StaleElementReferenceException,))


def show_failure(driver, name: str) -> str:
    """A screenshot for the failure message: what the page looked like when the wait gave up."""
    path = Path("/tmp") / f"zerosum-ui-{name}-{os.getpid()}.png"
    driver.save_screenshot(str(path))
    return f"(screenshot: {path}; page text starts: {driver.find_element('tag name', 'body').text[:300]!r})"


def wait_for(driver, name: str, condition, message: str):
    from selenium.common.exceptions import TimeoutException

    try:
        return wait(driver).until(condition)
    except TimeoutException:
        raise AssertionError(f"{message} after {PAGE_TIMEOUT} s {show_failure(driver, name)}") from None


def wait_for_xpath(driver, name: str, xpath: str, message: str) -> list:
    from selenium.webdriver.common.by import By

    return wait_for(driver, name, lambda d: d.find_elements(By.XPATH, xpath), message)


def xpath_text(text: str) -> str:
    """An XPath string literal (the run's values never hold both quote kinds)."""
    return f"'{text}'" if "'" not in text else f'"{text}"'


def test_mlflow_ui_shows_the_run_its_samples_and_its_model(workdir, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # A short run: what is checked is what the UI shows, not how good the model is.
    out = run_cli("run", str(JOBS / "digits-dcgan.yaml"), "--set", "schedule.max_rounds=4",
                  "--set", "eval.every_rounds=2", "--set", "checkpoint.every_rounds=2",
                  "--set", "schedule.log_every_rounds=1", "--set", "schedule.batch_size=16",
                  "--set", "eval.num_samples=64", "--set", "eval.grid_size=16", cwd=workdir)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("digits-dcgan")
    (run,) = client.search_runs([experiment.experiment_id])
    run_id, loss_d = run.info.run_id, run.data.metrics["loss/d"]
    version = client.get_model_version_by_alias("digits-dcgan", "candidate")
    sample_steps = sorted({int(a.path.split("+step+")[1].split("+")[0])
                           for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png")})
    assert sample_steps == [2, 4]

    with zerosum_ui(workdir) as port:
        base = f"http://127.0.0.1:{port}/#"
        driver = browser

        # The run's Overview: its name as title, loss/d in the metrics table with its last value.
        driver.get(f"{base}/experiments/{experiment.experiment_id}/runs/{run_id}")
        wait_for_xpath(driver, "run", f"//h2[normalize-space()={xpath_text(run.info.run_name)}]",
                       f"the run page never showed the run name {run.info.run_name}")
        (row,) = wait_for_xpath(driver, "metrics", "//*[@role='row' or self::tr][.//*[normalize-space()='loss/d']]",
                                "the run's metrics table never listed loss/d")
        assert repr(loss_d) in row.text, (row.text, loss_d)
        assert "digits-dcgan" in driver.find_element(By.TAG_NAME, "body").text  # "Registered models" box

        # Model metrics: the `samples` image card. With images at two steps the card starts at
        # step 0 ("No image logged at this step") until the step slider moves, as a user does.
        driver.get(f"{base}/experiments/{experiment.experiment_id}/runs/{run_id}/model-metrics")

        def samples_card(d):
            cards = d.find_elements(By.XPATH, "//*[@data-testid='experiment-view-compare-runs-card']"
                                              "[.//h4[normalize-space()='samples']]")
            if not cards:
                # Cards render when scrolled into view; the image section comes last.
                d.execute_script("const s = document.querySelectorAll("
                                 "'[data-testid=\"experiment-view-compare-runs-card\"]');"
                                 "if (s.length) s[s.length - 1].scrollIntoView({block: 'start'});")
            return cards[0] if cards else None

        card = wait_for(driver, "samples-card", samples_card,
                        "the Model metrics tab never showed a 'samples' image card")
        thumb = card.find_element(By.CSS_SELECTOR, "[role=slider]")
        assert (thumb.get_attribute("aria-valuemin"), thumb.get_attribute("aria-valuemax")) == ("2", "4")
        for _ in sample_steps:  # each press moves to the next logged step
            thumb.send_keys(Keys.ARROW_RIGHT)
        wait_for(driver, "slider", lambda d: thumb.get_attribute("aria-valuenow") == "4",
                 "the samples card's step slider never reached step 4")
        (image,) = wait_for(driver, "samples-image", lambda d: card.find_elements(By.CSS_SELECTOR, "img.rc-image-img"),
                            "the samples card never showed an image at step 4")
        source = image.get_attribute("src")
        assert "get-artifact" in source and run_id in source and "samples%2Bstep%2B4" in source, source
        loaded = wait_for(driver, "image-loaded", lambda d: d.execute_script(
            "const i = arguments[0];"
            "return i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null", image),
            f"the sample grid {source} never loaded")
        assert loaded[0] >= 64 and loaded[1] >= 64, loaded  # a 4x4 grid of enlarged digits, not a broken-image icon

        # The Models page lists the registered model with its alias; the model's page has the version.
        driver.get(f"{base}/models")
        (model_row,) = wait_for_xpath(driver, "models",
                                      "//*[@role='row' or self::tr][.//a[normalize-space()='digits-dcgan']]",
                                      "the Models page never listed digits-dcgan")
        assert "candidate" in model_row.text, model_row.text
        driver.get(f"{base}/models/digits-dcgan")
        wait_for(driver, "model", lambda d: any(
            f"Version {version.version}" in r.text and "candidate" in r.text
            for r in d.find_elements(By.XPATH, "//*[@role='row' or self::tr]")),
            f"the digits-dcgan page never showed Version {version.version} with the alias candidate")

"""The local endpoint's web page, end to end in headless Chromium (Debian's ``chromium``, driven by
Playwright with ``executable_path``; ``make setup`` installs it).

The page is found and used the way a person with a keyboard or a screen reader would: by labels
and roles. A job is built in it (a photo chosen, operations added, edited, reordered and removed,
the output format picked), run through the server's RunPod API, and the result image read back
from the page and compared with Pillow's. ``UPDATE_SCREENSHOT=1`` writes the screenshot to
docs/screenshot.png (the README shows it); otherwise it goes to the test's temporary directory.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from local_endpoint import start_endpoint
from photos import photo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (make setup installs it)"),
    pytest.mark.timeout(240),
]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    log = tmp_path_factory.mktemp("page") / "serve.log"
    proc, base = start_endpoint(log, env={"GPU_WORKER_DEVICE": "cpu", "MAX_CONCURRENCY": "2", "CHUNK_IMAGES": "1"})
    yield base
    proc.stop()
    print(f"--- server log tail:\n{proc.log_tail(30)}")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, endpoint):
    """A fresh page at ``/``; every request it makes is recorded in ``page.requested``."""
    context = browser.new_context(viewport={"width": 1200, "height": 1500})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=endpoint)
    page = context.new_page()
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))
    page.goto(endpoint + "/")
    page.get_by_role("group", name="2. filter").wait_for()  # the starter operations are built
    yield page
    context.close()


def photos(tmp_path: Path, count: int) -> list[Path]:
    """``count`` real photos (320x240 PNGs) in ``tmp_path``."""
    paths = []
    for i, name in enumerate(("astronaut.png", "coffee.png", "chelsea.png")[:count]):
        path = tmp_path / f"{i}-{name}"
        photo(name).resize((320, 240)).save(path)
        paths.append(path)
    return paths


def data_uri_image(uri: str) -> Image.Image:
    assert uri.startswith("data:image/"), uri[:40]
    return Image.open(io.BytesIO(base64.b64decode(uri.split("base64,", 1)[1])))


def test_build_run_and_read_a_job_in_the_page(page, endpoint, tmp_path):
    [source] = photos(tmp_path, 1)
    page.get_by_label("Drop images here, or choose files").set_input_files(str(source))
    page.get_by_role("button", name=f"Remove image {source.name}").wait_for()

    # Edit the starter operations (resize 512 wide, sharpen): resize to 200 wide.
    resize = page.get_by_role("group", name="1. resize")
    resize.get_by_label("width").fill("200")
    assert resize.get_by_label("filter").input_value() == "lanczos"  # the schema's default
    assert resize.get_by_label("width").get_attribute("max") == "65535"  # the schema's limit
    # Add an adjust operation, set its brightness, move it up above sharpen, then remove sharpen.
    page.get_by_label("Operation", exact=True).select_option("adjust")
    page.get_by_role("button", name="Add operation").click()
    adjust = page.get_by_role("group", name="3. adjust")
    adjust.get_by_label("brightness").fill("1.2")
    move_up = page.get_by_role("button", name="Move operation 3 (adjust) up")
    move_up.focus()
    page.keyboard.press("Enter")  # the keyboard works; focus follows the moved operation
    assert page.get_by_role("group", name="2. adjust").is_visible()
    assert page.get_by_role("button", name="Move operation 1 (resize) up").is_disabled()
    page.get_by_role("button", name="Remove operation 3 (filter)").click()
    page.get_by_label("Format").select_option("PNG")

    job = json.loads(page.get_by_label("As JSON").input_value())
    # Only what was set goes into the job (the defaults shown in the form are the worker's).
    assert job["input"]["operations"] == [{"type": "resize", "params": {"width": 200}},
                                          {"type": "adjust", "params": {"brightness": 1.2}}]
    assert job["input"]["output"] == {"format": "PNG", "quality": 85}
    assert page.get_by_label("As a curl command").input_value().startswith(f'curl -s -X POST "{endpoint}/v2/local/runsync"')

    page.get_by_role("button", name="Run", exact=True).focus()
    page.keyboard.press("Enter")
    status = page.get_by_role("status").first
    status.filter(has_text=re.compile("Completed|FAILED|Error")).wait_for(timeout=60_000)
    assert "Completed" in status.inner_text(), status.inner_text()

    # The result: the image in the page is what Pillow gives for the same operations.
    result = data_uri_image(page.get_by_role("img", name=re.compile(r"^Result: ")).get_attribute("src"))
    assert result.format == "PNG" and result.size == (200, 150)
    with Image.open(source) as im:
        expected = ImageEnhance.Brightness(im.convert("RGB").resize((200, 150), Image.Resampling.LANCZOS)).enhance(1.2)
    diff = np.abs(np.asarray(result.convert("RGB"), np.int16) - np.asarray(expected, np.int16))
    assert diff.max() <= 1, diff.max()
    # Its metadata, timings chart and the two histograms are shown.
    assert "200 × 150 PNG" in page.get_by_role("table", name="Metadata").inner_text()
    assert page.get_by_role("img", name=re.compile("^Stage timings: fetch")).locator("rect").count() >= 5
    assert page.get_by_role("img", name=re.compile("^Histogram of the (source|result)")).count() == 2

    page.get_by_role("button", name="Copy JSON").click()
    page.get_by_text(re.compile("Copied the job as JSON")).wait_for()
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == job

    shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") == "1" else tmp_path / "screenshot.png"
    shot.parent.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as im:
        assert im.width == 1200 and im.height >= 1000
        if shot == SCREENSHOT:  # 256 colours: a third of the bytes in the repository
            im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(shot, optimize=True)
    # Offline: everything the page loaded came from the server itself.
    assert page.requested and all(url.startswith(endpoint) or url.startswith("data:") for url in page.requested)


def test_several_files_run_as_one_batch_job_with_progress(page, tmp_path):
    sources = photos(tmp_path, 3)
    page.get_by_label("Drop images here, or choose files").set_input_files([str(p) for p in sources])
    page.get_by_role("button", name=f"Remove image {sources[-1].name}").wait_for()
    job = json.loads(page.get_by_label("As JSON").input_value())
    assert [item["image"]["base64"][:22] for item in job["input"]["images"]] == ["data:image/png;base64,"] * 3

    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("status").first.filter(has_text="Completed").wait_for(timeout=60_000)
    assert "3 of 3 image(s) processed" in page.get_by_role("status").first.inner_text()
    progress = page.get_by_role("progressbar", name="Job progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == "3"
    results = page.get_by_role("img", name=re.compile(r"^Result: "))
    assert results.count() == 3
    assert [data_uri_image(results.nth(i).get_attribute("src")).size for i in range(3)] == [(512, 384)] * 3  # resize 512 wide


def test_a_failed_item_shows_its_error(page):
    page.get_by_label("Or an image URL").fill("ftp://example.com/photo.jpg")
    page.get_by_role("button", name="Add URL").click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("status").first.filter(has_text=re.compile("FAILED")).wait_for(timeout=60_000)
    assert "image.url" in page.get_by_role("status").first.inner_text()


def test_list_and_object_parameters_are_typed_as_json(page, tmp_path):
    """An overlay's image ({"base64": ...}), a gravity as [x, y] and a colour as [r, g, b] are
    typed as JSON in the form and go into the job as an object and lists; the job runs."""
    [source] = photos(tmp_path, 1)
    page.get_by_label("Drop images here, or choose files").set_input_files(str(source))
    page.get_by_role("button", name=f"Remove image {source.name}").wait_for()
    buffer = io.BytesIO()
    photo("coffee.png").resize((40, 30)).convert("RGBA").save(buffer, "PNG")
    mark = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    page.get_by_label("Operation", exact=True).select_option("overlay")
    page.get_by_role("button", name="Add operation").click()
    overlay = page.get_by_role("group", name="3. overlay")
    overlay.get_by_label("image").fill(json.dumps({"base64": mark}))
    overlay.get_by_label("gravity").fill("[0.25, 0.75]")
    page.get_by_label("Operation", exact=True).select_option("rotate")
    page.get_by_role("button", name="Add operation").click()
    rotate = page.get_by_role("group", name="4. rotate")
    rotate.get_by_label("angle").fill("30")
    rotate.get_by_label("background").fill("[255, 0, 0]")

    # The output settings beyond format and quality come from the output's schema too.
    page.get_by_label("Format").select_option("WEBP")
    page.get_by_label("keep_metadata").check()
    page.get_by_label("max_bytes").fill("60000")
    assert page.get_by_label("icc").input_value() == "srgb"  # the schema's default, not sent
    job = json.loads(page.get_by_label("As JSON").input_value())["input"]
    assert job["output"] == {"format": "WEBP", "quality": 85, "keep_metadata": True, "max_bytes": 60000}
    operations = job["operations"]
    assert operations[2] == {"type": "overlay", "params": {"image": {"base64": mark}, "gravity": [0.25, 0.75]}}
    assert operations[3] == {"type": "rotate", "params": {"angle": 30, "background": [255, 0, 0]}}
    page.get_by_role("button", name="Run", exact=True).click()
    status = page.get_by_role("status").first
    status.filter(has_text=re.compile("Completed|FAILED|Error")).wait_for(timeout=60_000)
    assert "Completed" in status.inner_text(), status.inner_text()
    result = data_uri_image(page.get_by_role("img", name=re.compile(r"^Result: ")).get_attribute("src"))
    assert result.format == "WEBP"

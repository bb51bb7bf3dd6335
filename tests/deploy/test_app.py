"""The web page in a real browser: headless Chromium (selenium) uploads a video, presses Classify, reads the top-5,
ticks *show where the model looks* and gets the Grad-CAM overlays that `uniformer.explain` computes; and a
segmentation page: uploads an image, presses Predict, sees the overlay and reads the class shares."""

from __future__ import annotations

import dataclasses
import io
import shutil
import socket
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

gr = pytest.importorskip("gradio", reason="needs the app extra: pip install 'uniformer[app]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="needs the app extra: pip install 'uniformer[app]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from uniformer.data.synth import render_clip, write_video  # noqa: E402
from uniformer.deploy.app import build_app, dense_view, explained_view, seen_frames  # noqa: E402
from uniformer.engine.predict import Predictor  # noqa: E402
from uniformer.explain import explain_files, load_input  # noqa: E402
from uniformer.explain.render import overlay  # noqa: E402

MODEL = "uniformer_tiny_motion"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("app") / "moving_right.mp4"
    write_video(path, render_clip("moving_right", np.random.default_rng(0), num_frames=40, size=(96, 96)))
    return str(path)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return Predictor(MODEL)  # random weights: the page must show exactly what `uniformer predict` computes


def test_seen_frames_are_the_centre_view(predictor, video):
    frames = seen_frames(predictor, video)
    spec = predictor.setup.spec
    assert len(frames) == spec.num_frames
    assert all(f.shape == (spec.crop_size, spec.crop_size, 3) and f.dtype == np.uint8 for f in frames)


def _overlays(predictor: Predictor, path: str, target: int) -> list[np.ndarray]:
    """What `uniformer.explain` draws for ``path``: Grad-CAM of ``target`` at the default stage on each frame."""
    (e,) = explain_files(predictor, [path], "gradcam", target=target)
    return [overlay(f, h, e.box) for f, h in zip(e.frames.numpy(), e.map.numpy(), strict=True)]


def _outputs(predictor: Predictor, path: str) -> tuple[torch.Tensor, list[tuple[int, str, float]]]:
    """The model's logits on the centre view and the page's prediction, to compare before and after explaining."""
    view = load_input(path, predictor.setup.spec).view[None]
    with torch.no_grad():
        logits = predictor.model(view)
    return logits, predictor.predict([path], topk=5)[0].top


def test_explained_view_is_the_grad_cam_of_the_class_asked_for(predictor, video):
    top = predictor.predict([video], topk=5)[0].top
    target = top[-1][0]  # not the view's own top class: the page's class is the one explained
    view = explained_view(predictor, video, target)
    expected = _overlays(predictor, video, target)
    assert len(view.overlays) == predictor.setup.spec.num_frames
    assert all(np.array_equal(a, b) for a, b in zip(view.overlays, expected, strict=True))
    assert view.caption.startswith(f"Grad-CAM at stage 2 for {top[-1][1]} (")  # 64 px: stage 2 (8 x 8)
    assert not all(np.array_equal(a, b) for a, b in zip(expected, _overlays(predictor, video, top[0][0])))


def test_explained_view_of_an_image_is_one_overlay_at_the_image_size(tmp_path):
    torch.manual_seed(0)
    small = dict(depth=(1, 1, 1, 1), embed_dim=(32, 64, 128, 256), head_dim=32, num_classes=3)
    predictor = Predictor("uniformer_small", overrides=small, labels=["cat", "dog", "fox"])
    image = tmp_path / "animal.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(image)
    (overlay_,) = explained_view(predictor, str(image), 1).overlays
    assert overlay_.shape == (90, 120, 3) and overlay_.dtype == np.uint8
    assert np.array_equal(overlay_, _overlays(predictor, str(image), 1)[0])


def _in_browser(page: gr.Blocks, port: int, interact) -> Any:
    """Serve ``page`` at ``port``, run ``interact(driver, wait)`` in headless Chromium, stop both whatever happens."""
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
        driver.get(f"http://127.0.0.1:{port}/")
        return interact(driver, WebDriverWait(driver, 60))
    finally:
        if driver is not None:
            driver.quit()
        page.close()


def _upload_and_press(driver, wait, path: str, button: str) -> None:
    upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    upload.send_keys(path)
    wait.until(ec.text_to_be_present_in_element((By.ID, "upload"), Path(path).stem))  # uploaded
    driver.find_element(By.ID, button).click()


@pytest.mark.skipif(BROWSER is None or DRIVER is None, reason="no chromium / chromedriver (.ci/run installs them)")
def test_page_in_a_browser_shows_the_top5(predictor, video):
    expected = predictor.predict([video], topk=5)[0].top
    port = _free_port()

    def interact(driver, wait):
        _upload_and_press(driver, wait, video, "classify")
        wait.until(lambda d: "ms for" in d.find_element(By.CSS_SELECTOR, "#timing textarea").get_attribute("value"))
        shown = driver.find_element(By.ID, "top5").text
        timing = driver.find_element(By.CSS_SELECTOR, "#timing textarea").get_attribute("value")
        return shown, timing, driver.find_elements(By.CSS_SELECTOR, "#frames img")

    shown, timing, pictures = _in_browser(build_app(predictor), port, interact)
    names = [name for _, name, _ in expected]
    positions = [shown.find(name) for name in names]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), shown  # all five, in rank order
    assert f"{round(100 * expected[0][2])}%" in shown
    assert timing.endswith("ms for 2 views")  # the demo model's test views: 2 clips x 1 crop
    assert len(pictures) == predictor.setup.spec.num_frames
    with socket.socket() as sock:  # the server is gone
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def _pictures(driver, selector: str) -> list[np.ndarray]:
    """The pictures a gallery shows, fetched from the page's server as the browser got them."""
    sources = [img.get_attribute("src") for img in driver.find_elements(By.CSS_SELECTOR, selector)]
    return [np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(src).read())).convert("RGB")) for src in sources]


@pytest.mark.skipif(BROWSER is None or DRIVER is None, reason="no chromium / chromedriver (.ci/run installs them)")
def test_page_in_a_browser_shows_where_the_model_looks(predictor, video):
    logits, top = _outputs(predictor, video)
    expected = _overlays(predictor, video, top[0][0])  # the top class of the prediction the page shows
    port = _free_port()

    def caption(driver) -> str:
        return driver.find_element(By.CSS_SELECTOR, "#explained textarea").get_attribute("value")

    def interact(driver, wait):
        _upload_and_press(driver, wait, video, "classify")  # the box unticked: the prediction alone
        wait.until(lambda d: "ms for" in d.find_element(By.CSS_SELECTOR, "#timing textarea").get_attribute("value"))
        before = (caption(driver), len(driver.find_elements(By.CSS_SELECTOR, "#overlay img")))
        driver.find_element(By.CSS_SELECTOR, "#explain input[type=checkbox]").click()  # explains what is shown
        wait.until(lambda d: caption(d) and len(d.find_elements(By.CSS_SELECTOR, "#overlay img")) == len(expected))
        help_text = driver.find_element(By.ID, "explain").text
        return before, help_text, caption(driver), _pictures(driver, "#overlay img")

    before, help_text, text, pictures = _in_browser(build_app(predictor), port, interact)
    assert before == ("", 0)
    assert "stage 2" in help_text and "Not the official CAM" in help_text and "2 x 2 cells" in help_text, help_text
    assert text.startswith(f"Grad-CAM at stage 2 for {top[0][1]} (")
    assert len(pictures) == len(expected) == predictor.setup.spec.num_frames
    assert all(np.array_equal(a, b) for a, b in zip(pictures, expected, strict=True))  # the computed map, exactly
    after_logits, after_top = _outputs(predictor, video)
    assert torch.equal(after_logits, logits) and after_top == top  # explaining left the model as it was


@pytest.mark.skipif(BROWSER is None or DRIVER is None, reason="no chromium / chromedriver (.ci/run installs them)")
def test_segmentation_page_in_a_browser_shows_the_overlay_and_class_shares(tmp_path):
    torch.manual_seed(0)
    tiny = dict(depth=(1, 1, 1, 1), embed_dim=(16, 32, 64, 128), head_dim=16, num_classes=3)
    predictor = Predictor("uniformer_small_fpn_ade20k", overrides=tiny, labels=["sky", "road", "car"])
    predictor.setup = dataclasses.replace(predictor.setup, scale=[64, 64])  # tested at the image's own size
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    expected = dense_view(predictor, str(image)).rows
    port = _free_port()

    def interact(driver, wait):
        _upload_and_press(driver, wait, str(image), "predict")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#timing textarea").get_attribute("value"))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#picture img")))
        return driver.find_element(By.ID, "table").text

    table = _in_browser(build_app(predictor), port, interact)
    assert "share of the pixels" in table
    positions = [table.find(f"{name}") for name, _ in expected]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), table  # largest share first
    assert all(share in table for _, share in expected), table
    with socket.socket() as sock:  # the server is gone
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_serve_binds_localhost_and_offers_demo_examples(tmp_path):
    from uniformer.cli import build_parser
    from uniformer.deploy.app import serve

    assert build_parser().parse_args(["app", "--model", MODEL]).host == "127.0.0.1"
    page = serve(MODEL, port=_free_port(), block=False)
    try:
        assert page.server_name == "127.0.0.1"
        examples = [c for c in page.blocks.values() if isinstance(c, gr.Dataset)]
        assert len(examples) == 1 and len(examples[0].samples) == 3
    finally:
        page.close()

"""The annotation app in a real headless browser (Debian's chromium driven by Playwright).

Both protocols with their keyboard shortcuts, a full short session with sign-out and resume,
and a check that the images really render. No browser is downloaded: Playwright drives
/usr/bin/chromium, which .ci/run installs. Outside CI the tests skip when it is missing; in CI
(CI=true) they fail instead, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsim_study.annotation.app import create_app
from semsim_study.annotation.catalog import Catalog
from semsim_study.annotation.store import Store

from .annotation_helpers import ServerThread, project

TIMEOUT_MS = 15_000



class Study:
    """A tmp project, its database, one annotator and the app on a loopback port."""

    def __init__(self, root: Path, datasets: dict[str, str], k: int = 2, images: int = 1):
        self.tasks = {}
        for built in project(root, datasets, images=images).values():
            self.tasks.update(built)
        self.store = Store(root / "answers.sqlite")
        self.token = self.store.add_annotators(["ann"])["ann"]
        self.catalog = Catalog.load(root, list(datasets), self.store.ref)
        self.server = ServerThread(create_app(self.catalog, self.store, annotators_per_item=k))
        self.url = self.server.url

    def answers(self) -> dict[str, str]:
        with sqlite3.connect(self.store.path) as db:
            return {item: answer for item, answer in db.execute("SELECT item_id, answer FROM answers")}


@pytest.fixture()
def study_factory(tmp_path):
    studies = []

    def make(datasets, **kw):
        study = Study(tmp_path / f"s{len(studies)}", datasets, **kw)
        study.server.__enter__()
        studies.append(study)
        return study

    yield make
    for study in studies:
        study.server.__exit__(None, None, None)


@pytest.fixture()
def page(browser):
    """A fresh browser context; tests list it after study_factory so it closes (and drops its
    keep-alive connections) before the server stops."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.problems = problems
    yield pg
    context.close()
    assert not problems, problems  # no script errors, no CSP violations, no failed loads


def sign_in_with_form(page, study):
    page.goto(study.url + "/")
    page.wait_for_selector("body[data-state=signin]")
    assert page.locator("#progress").is_hidden() and page.locator("#task").is_hidden()
    page.fill("#token", study.token)
    page.press("#token", "Enter")
    page.wait_for_selector("body[data-state=ready], body[data-state=done]")


def on_screen(page, study):
    ref = page.get_attribute("#task", "data-ref")
    return ref, study.catalog.by_ref[ref].task


def press_and_wait(page, *keys):
    """Press keys on the current item and wait until the next item (or the end) is shown."""
    ref = page.get_attribute("#task", "data-ref")
    for key in keys:
        page.keyboard.press(key)
    page.wait_for_selector(f'body[data-state=ready] #task:not([data-ref="{ref}"]), body[data-state=done]')


def choices(page) -> list[str]:
    return page.eval_on_selector_all("#choices button", "bs => bs.map(b => b.dataset.answer)")


def test_protocol_a_number_keys(study_factory, page):
    study = study_factory({"toy": "A"}, images=2)  # 12 classes: one- and two-digit choices
    sign_in_with_form(page, study)
    expected = {}
    for keys, index in ((("5",), 4), (("1", "2"), 11), (("1", "Enter"), 0), (("9",), 8)):
        ref, task = on_screen(page, study)
        assert page.get_attribute("#task", "data-protocol") == "A"
        assert page.locator("#images img").count() == 1 and page.locator("#img-original").count() == 0
        shown = choices(page)
        assert shown == list(task.candidates) and len(shown) == 12
        assert page.locator("#choices button kbd").all_inner_texts() == [str(i + 1) for i in range(12)]
        assert task.item_id not in page.content() and task.model not in page.content()
        press_and_wait(page, *keys)
        expected[task.item_id] = shown[index]
    assert study.answers() == expected
    ref, task = on_screen(page, study)
    page.click(f'#choices button[data-answer="{task.candidates[2]}"]')  # the mouse works too
    page.wait_for_selector(f'body[data-state=ready] #task:not([data-ref="{ref}"])')
    assert study.answers()[task.item_id] == task.candidates[2]
    assert "You: 5 answered" in page.inner_text("#progress-text")


def test_protocol_b_same_different(study_factory, page):
    study = study_factory({"pairs": "B"}, images=1)
    sign_in_with_form(page, study)
    expected = {}
    for key, answer in (("s", "same"), ("d", "different"), ("S", "same")):
        ref, task = on_screen(page, study)
        assert page.get_attribute("#task", "data-protocol") == "B"
        assert page.locator("#img-original").count() == 1 and page.locator("#img-reconstruction").count() == 1
        assert choices(page) == ["same", "different"]
        assert task.truth not in page.inner_text("body")
        page.keyboard.press("x")  # not a shortcut: nothing happens
        press_and_wait(page, key)
        expected[task.item_id] = answer
    assert study.answers() == expected


def test_full_session_with_resume(study_factory, page):
    study = study_factory({"toy": "A", "pairs": "B"}, k=1, images=1)  # 8 items
    page.goto(f"{study.url}/#token={study.token}")  # the link `tokens` prints
    page.wait_for_selector("body[data-state=ready]")
    assert "#token" not in page.url  # the token leaves the address bar at once
    pressed = {}
    for n in range(3):
        ref, task = on_screen(page, study)
        key = "s" if task.protocol == "B" else "3"  # 12 choices: "3" is unambiguous ("1" waits for a 2nd digit)
        pressed[task.item_id] = "same" if key == "s" else choices(page)[2]
        press_and_wait(page, key)
    # a reload (closing the tab) brings back the same item
    ref_before, _ = on_screen(page, study)
    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    assert on_screen(page, study)[0] == ref_before
    page.click("#signout")
    page.wait_for_selector("body[data-state=paused]")
    page.reload()
    page.wait_for_selector("body[data-state=signin]")  # signed out: the cookie is gone
    assert page.locator("#who").is_hidden()
    page.fill("#token", "not-the-token-at-all")
    page.press("#token", "Enter")
    page.wait_for_selector("#signin-error:has-text('Unknown token')")
    page.problems.clear()  # the refused sign-in logs a 401, as it should
    sign_in_with_form(page, study)
    assert on_screen(page, study)[0] == ref_before  # resumes where it stopped
    assert "You: 3 answered" in page.inner_text("#progress-text")
    while page.get_attribute("body", "data-state") != "done":
        ref, task = on_screen(page, study)
        key = "d" if task.protocol == "B" else "4"
        pressed[task.item_id] = "different" if key == "d" else choices(page)[3]
        press_and_wait(page, key)
    assert page.is_visible("#done") and "All done" in page.inner_text("#done")
    assert study.answers() == pressed and len(pressed) == 8  # every item once, as pressed
    assert "You: 8 answered, 0 to go" in page.inner_text("#progress-text")


def test_images_render(study_factory, page, tmp_path):
    study = study_factory({"pairs": "B"}, images=1)
    sign_in_with_form(page, study)
    _, task = on_screen(page, study)
    sizes = page.eval_on_selector_all("#images img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert sizes == [[True, 32, 32], [True, 32, 32]]
    shot = page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    page_pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=np.float64)
    assert page_pixels.std() > 10  # not a blank page
    for selector, path in (("#img-original", task.original), ("#img-reconstruction", task.reconstruction)):
        shown = np.asarray(Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB"), dtype=np.float64)
        assert shown.std() > 10, selector
        source = np.asarray(Image.open(study.catalog.by_item[task.item_id].images[selector[5:]]).convert("RGB"),
                            dtype=np.float64)
        # the element shows this PNG scaled up: compare after scaling the screenshot down to 32x32
        small = np.asarray(Image.fromarray(shown.astype(np.uint8)).resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
        assert np.abs(small - source).mean() < 25, selector

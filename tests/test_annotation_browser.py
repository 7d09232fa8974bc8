"""The annotation app in a real headless browser (Debian's chromium driven by Playwright).

Both protocols with their keyboard shortcuts (keys always match the label on screen), the
instructions screen before each protocol, the time per answer, a full short session with
sign-out and resume, the layout at phone width, a check that the images really render, a gold
item answered like any other (and kept out of the answers), and the admin status page. No browser is downloaded: Playwright drives
/usr/bin/chromium, which .ci/run installs. Outside CI the tests skip when it is missing; in CI
(CI=true) they fail instead, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semsim_study.annotation import gold
from semsim_study.annotation.app import create_app
from semsim_study.annotation.catalog import Catalog
from semsim_study.annotation.store import Store

from .support.annotation_helpers import ServerThread, project

TIMEOUT_MS = 15_000



class Study:
    """A tmp project, its database, one annotator and the app on a loopback port."""

    def __init__(self, root: Path, datasets: dict[str, str], k: int = 2, images: int = 1, classes=None,
                 subjects: dict[str, str] | None = None, gold_rate: float = 0.0):
        self.tasks = {}
        for built in project(root, datasets, images=images, classes=classes).values():
            self.tasks.update(built)
        for ds, subject in (subjects or {}).items():  # what prepare records in the tasks' meta.json
            (root / "data" / "tasks" / ds / "meta.json").write_text(json.dumps({"subject": subject}))
        self.store = Store(root / "answers.sqlite")
        self.token = self.store.add_annotators(["ann"])["ann"]
        self.catalog = Catalog.load(root, list(datasets), self.store.ref)
        self.server = ServerThread(create_app(self.catalog, self.store, annotators_per_item=k, gold_rate=gold_rate))
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


def past_instructions(page):
    """Wait for the next screen; the first item of a protocol comes after its instructions."""
    page.wait_for_selector("body[data-state=ready], body[data-state=done], body[data-state=instructions]")
    if page.get_attribute("body", "data-state") == "instructions":
        assert page.locator("#task").is_hidden() and page.inner_text("#intro-question")
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-state=ready]")


def sign_in_with_form(page, study):
    page.goto(study.url + "/")
    page.wait_for_selector("body[data-state=signin]")
    assert page.locator("#progress").is_hidden() and page.locator("#task").is_hidden()
    page.fill("#token", study.token)
    page.press("#token", "Enter")
    past_instructions(page)


def on_screen(page, study):
    ref = page.get_attribute("#task", "data-ref")
    return ref, study.catalog.by_ref[ref].task


def press_and_wait(page, *keys):
    """Press keys on the current item and wait until the next item (or the end) is shown."""
    ref = page.get_attribute("#task", "data-ref")
    for key in keys:
        page.keyboard.press(key)
    page.wait_for_selector(f'body[data-state=ready] #task:not([data-ref="{ref}"]), body[data-state=done], '
                           'body[data-state=instructions]')
    past_instructions(page)


def choices(page) -> list[str]:
    return page.eval_on_selector_all("#choices button", "bs => bs.map(b => b.dataset.answer)")


def test_protocol_a_letter_keys_match_the_labels(study_factory, page):
    study = study_factory({"toy": "A"}, images=2)  # 12 classes named class00..class11: keys a..l
    sign_in_with_form(page, study)
    expected = {}
    for key, index in (("e", 4), ("L", 11), ("a", 0), ("i", 8)):
        ref, task = on_screen(page, study)
        assert page.get_attribute("#task", "data-protocol") == "A"
        assert page.locator("#images img").count() == 1 and page.locator("#img-original").count() == 0
        shown = choices(page)
        assert shown == list(task.candidates) and len(shown) == 12
        assert page.locator("#choices button kbd").all_inner_texts() == list("ABCDEFGHIJKL")
        assert task.item_id not in page.content() and task.model not in page.content()
        page.keyboard.press("3")  # not a key of any choice here: nothing happens
        press_and_wait(page, key)
        expected[task.item_id] = shown[index]
    assert study.answers() == expected
    ref, task = on_screen(page, study)
    page.click(f'#choices button[data-answer="{task.candidates[2]}"]')  # the mouse works too
    page.wait_for_selector(f'body[data-state=ready] #task:not([data-ref="{ref}"])')
    assert study.answers()[task.item_id] == task.candidates[2]
    assert "You: 5 answered" in page.inner_text("#progress-text")


def test_digit_classes_are_picked_by_their_own_digit(study_factory, page):
    """Shuffled digit classes: pressing 3 records "3", never the third button's class."""
    study = study_factory({"digits": "A"}, images=3, classes=[str(d) for d in range(10)], subjects={"digits": "digit"})
    page.goto(study.url + "/")
    page.fill("#token", study.token)
    page.press("#token", "Enter")
    page.wait_for_selector("body[data-state=instructions]")
    assert page.inner_text("#intro-question") == "Which digit does this image show?"
    page.click("#intro-start")
    page.wait_for_selector("body[data-state=ready]")
    assert page.inner_text("#question") == "Which digit does this image show?"
    expected = {}
    for digit in ("3", "7", "0", "5"):
        ref, task = on_screen(page, study)
        labels = page.locator("#choices button kbd").all_inner_texts()
        assert labels == choices(page) == list(task.candidates)  # each button's key is its own class
        assert labels != sorted(labels)  # the order is shuffled, the keys are not
        press_and_wait(page, digit)
        expected[task.item_id] = digit
    assert study.answers() == expected


def test_protocol_b_same_different(study_factory, page):
    study = study_factory({"pairs": "B"}, images=1, subjects={"pairs": "person"})
    sign_in_with_form(page, study)
    assert page.inner_text("#question") == "Do the two images show the same person?"
    expected = {}
    for key, answer in (("s", "same"), ("d", "different"), ("S", "same")):
        ref, task = on_screen(page, study)
        assert page.get_attribute("#task", "data-protocol") == "B"
        assert page.locator("#img-original").count() == 1 and page.locator("#img-reconstruction").count() == 1
        assert choices(page) == ["same", "different"]
        assert page.locator("#choices button kbd").all_inner_texts() == ["S", "D"]
        assert task.truth not in page.inner_text("body")
        page.keyboard.press("x")  # not a shortcut: nothing happens
        press_and_wait(page, key)
        expected[task.item_id] = answer
    assert study.answers() == expected


def test_full_session_with_resume(study_factory, page):
    study = study_factory({"toy": "A", "pairs": "B"}, k=1, images=1)  # 8 items
    page.goto(f"{study.url}/#token={study.token}")  # the link `tokens` prints
    past_instructions(page)
    assert "#token" not in page.url  # the token leaves the address bar at once
    pressed = {}
    for n in range(3):
        ref, task = on_screen(page, study)
        key = "s" if task.protocol == "B" else "c"
        pressed[task.item_id] = "same" if key == "s" else choices(page)[2]
        press_and_wait(page, key)
    # a reload (closing the tab) brings back the same item
    ref_before, _ = on_screen(page, study)
    page.reload()
    page.wait_for_selector("body[data-state=ready]")  # instructions once per browser session, not per page
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
        key = "d" if task.protocol == "B" else "d"
        pressed[task.item_id] = "different" if task.protocol == "B" else choices(page)[3]
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


def test_instructions_once_per_protocol_and_lead_time_stored(study_factory, page, tmp_path):
    study = study_factory({"toy": "A", "pairs": "B"}, k=1, images=1, subjects={"toy": "shape", "pairs": "letter"})
    page.goto(study.url + "/")
    page.fill("#token", study.token)
    page.press("#token", "Enter")
    seen = []
    while True:
        page.wait_for_selector("body[data-state=ready], body[data-state=done], body[data-state=instructions]")
        state = page.get_attribute("body", "data-state")
        if state == "done":
            break
        if state == "instructions":
            seen.append(page.inner_text("#intro-question"))
            assert "best guess" in page.inner_text("#intro-text")
            page.click("#intro-start")
            continue
        ref, task = on_screen(page, study)
        page.wait_for_timeout(150)  # a person looks for a moment
        page.keyboard.press("s" if task.protocol == "B" else "a")
        page.wait_for_selector(f'body[data-state=ready] #task:not([data-ref="{ref}"]), body[data-state=done], '
                               'body[data-state=instructions]')
    assert sorted(seen) == ["Do the two images show the same letter?", "Which shape does this image show?"]
    with sqlite3.connect(study.store.path) as db:
        times = [row[0] for row in db.execute("SELECT lead_time FROM answers")]
    assert len(times) == 8 and all(t is not None and 0.1 <= t < 60 for t in times), times
    out = tmp_path / "answers.csv"
    study.store.export_csv(out)
    header, first = out.read_text().splitlines()[:2]
    assert header == "item_id,annotator_id,protocol,answer,submitted_at,lead_time"
    assert float(first.rsplit(",", 1)[1]) >= 0.1


@pytest.mark.parametrize("datasets", [{"pairs": "B"}, {"toy": "A"}])
def test_phone_width_fits_images_and_choices_on_one_screen(study_factory, browser, datasets):
    study = study_factory(datasets, images=1)
    context = browser.new_context(viewport={"width": 375, "height": 667}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    try:
        pg.goto(f"{study.url}/#token={study.token}")
        pg.wait_for_selector("body[data-state=instructions]")
        assert pg.locator("#intro-start").bounding_box()["y"] + 40 < 667
        pg.tap("#intro-start")
        pg.wait_for_selector("body[data-state=ready]")
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways ({width} px)"
        boxes = [el.bounding_box() for el in pg.locator("#images img, #choices button").all()]
        for box in boxes:  # every image and every choice is on the first screen
            assert box["x"] >= 0 and box["x"] + box["width"] <= 375 + 0.5
            assert box["y"] + box["height"] <= 667, box
        img = pg.locator("#images img").first.bounding_box()
        assert img["width"] >= 120  # still big enough to judge
        ref = pg.get_attribute("#task", "data-ref")
        pg.locator("#choices button").first.tap()
        pg.wait_for_selector(f'body[data-state=ready] #task:not([data-ref="{ref}"]), body[data-state=done]')
    finally:
        context.close()


def test_gold_item_answered_like_any_other_and_the_admin_page(study_factory, page):
    """A gold item looks and is answered like a study item and never lands in the answers; the
    admin page opens with the admin token (after refusing the annotator's cookie)."""
    study = study_factory({"toy": "A"}, images=1, gold_rate=0.99)
    golden = {e.ref: e.task for e in gold.build(study.catalog, study.store.ref)}
    sign_in_with_form(page, study)
    ref = page.get_attribute("#task", "data-ref")
    assert golden[ref].kind == "noise"  # the first item at this rate; it shows no original
    assert page.get_attribute("#task", "data-protocol") == "A" and choices(page) == list(golden[ref].candidates)
    assert page.eval_on_selector("#images img", "i => [i.complete, i.naturalWidth]") == [True, 32]
    assert "gold" not in page.content().lower()
    press_and_wait(page, "a")
    assert study.answers() == {}
    assert [(r[1], r[2]) for r in study.store.gold_rows()] == [("ann", "noise")]
    token = study.store.rotate_admin_token()
    page.goto(f"{study.url}/admin#token={token}")  # the page first refuses the annotator's cookie (403)
    page.wait_for_selector("body[data-state=status]")
    assert "#token" not in page.url
    row = page.locator("#annotators tr").nth(1).inner_text().split()
    assert row[:3] == ["ann", "0", "1"]  # no study answer, one gold answer
    assert page.locator("#coverage tr").nth(1).inner_text().split()[:4] == ["toy", "A", "0", "4"]
    page.problems[:] = [p for p in page.problems if "status of 403" not in p]  # the refusal, as it should

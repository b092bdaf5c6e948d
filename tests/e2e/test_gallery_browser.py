"""The people gallery in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, which .ci/run installs) driven by Selenium against `openimm serve` with
access keys, on real photos with the real models.

The page logs in with a key, runs a clustering task, renames a person (and meets a
concurrent rename), moves a face to another person and one out of any, and merges two
people; each result is checked
through the official IMM SDK's GetFigureCluster, signed with the same key. Screenshots
go to the folder the test prints (OPENIMM_ARTEFACTS, default ./test-artefacts).
Without a browser the test fails: it is the only check of the page.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_imm20200930 import models as imm
from alibabacloud_imm20200930.client import Client
from PIL import Image, ImageOps
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from imm_client import imm_client
from serve_process import ServeProcess

pytestmark = pytest.mark.models

KEY, SECRET = "LTAI-gallery", "gallery-secret-1"
KEYS = {
    "AccessKeys": [
        {
            "AccessKeyId": KEY,
            "AccessKeySecret": SECRET,
            "Projects": {"album": "write"},
            "Buckets": {"photos": "read"},
        }
    ]
}
PROJECT, DATASET, BUCKET = "album", "family", "photos"
INDEPENDENT = "figure-cluster-id-independent"
# four photos of one person each: three people, each with enough clear photos to be a group
AS_IS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "32bit.png")
VARIED = ("biden.jpg", "Tom_Hanks_54745.png")
WAIT_S = 300


def _browser_paths() -> tuple[str, str]:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, (
        "Chromium and its driver are needed: apt-get install -y chromium chromium-driver "
        "(.ci/run does)"
    )
    return browser, driver


def _photos(sample_photos: Path, folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in AS_IS:
        shutil.copy(sample_photos / name, folder / name)
    # mirrored, shrunk and cropped copies: other photos of the same face, so that the
    # person has the three clear photos a group needs
    for name in VARIED:
        image = Image.open(sample_photos / name).convert("RGB")
        w, h = image.size
        stem = Path(name).stem
        image.save(folder / f"{stem}_a.jpg", quality=92)
        ImageOps.mirror(image).save(folder / f"{stem}_b.jpg", quality=92)
        image.resize((w * 4 // 5, h * 4 // 5)).save(folder / f"{stem}_c.jpg", quality=92)
        crop = ImageOps.mirror(image).crop((w // 20, h // 20, w - w // 20, h - h // 20))
        crop.save(folder / f"{stem}_d.jpg", quality=92)


@pytest.fixture(scope="module")
def artefacts() -> Path:
    folder = Path(os.environ.get("OPENIMM_ARTEFACTS", "test-artefacts")).resolve() / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\ngallery screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sample_photos: Path, model_dir: Path
) -> Iterator[ServeProcess]:
    data = tmp_path_factory.mktemp("gallery-state")
    _photos(sample_photos, data / "buckets" / BUCKET)
    process = ServeProcess(data, env={"OPENIMM_ACCESS_KEYS": json.dumps(KEYS)})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def sdk(server: ServeProcess) -> Client:
    client = imm_client(server.port, KEY, SECRET)
    client.create_project(imm.CreateProjectRequest(project_name=PROJECT))
    client.create_dataset(imm.CreateDatasetRequest(project_name=PROJECT, dataset_name=DATASET))
    names = sorted(p.name for p in (server.data / "buckets" / BUCKET).iterdir())
    client.batch_index_file_meta(
        imm.BatchIndexFileMetaRequest(
            project_name=PROJECT,
            dataset_name=DATASET,
            files=[imm.InputFile(uri=f"oss://{BUCKET}/{name}") for name in names],
        )
    )
    return client


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    binary, driver_path = _browser_paths()
    options = Options()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def _cluster(sdk: Client, cluster_id: str) -> Any:
    request = imm.GetFigureClusterRequest(
        project_name=PROJECT, dataset_name=DATASET, object_id=cluster_id
    )
    return sdk.get_figure_cluster(request).body.figure_cluster


def _wait(browser: WebDriver, what: Any, timeout: float = WAIT_S) -> Any:
    return WebDriverWait(browser, timeout, poll_frequency=0.3).until(what)


def _notice(browser: WebDriver, contains: str) -> str:
    def shown(b: WebDriver) -> str | bool:
        box = b.find_element(By.ID, "notice")
        return box.text if box.is_displayed() and contains in box.text else False

    return str(_wait(browser, shown, 60))


def _people(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#people li.person")


def _shot(browser: WebDriver, artefacts: Path, name: str) -> None:
    # let the lazy thumbnails in view arrive before the picture is taken
    _wait(
        browser,
        lambda b: b.execute_script(
            "return [...document.images].filter(i => i.offsetParent && i.src)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        ),
        60,
    )
    browser.save_screenshot(str(artefacts / name))


def test_the_page_names_merges_and_corrects_people(
    server: ServeProcess, sdk: Client, browser: WebDriver, artefacts: Path
) -> None:
    browser.get(f"{server.url}/?project={PROJECT}&dataset={DATASET}")
    # 1. keys are configured: the page asks for one, then holds a session cookie
    _wait(browser, lambda b: b.find_element(By.ID, "login-form").is_displayed(), 60)
    browser.find_element(By.ID, "key-id").send_keys(KEY)
    browser.find_element(By.ID, "key-secret").send_keys(SECRET)
    _shot(browser, artefacts, "1-log-in.png")
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    _notice(browser, f"Logged in as {KEY}")
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["openimm_session"]["httpOnly"] and SECRET not in str(cookies)

    # 2. a clustering task from the page, its progress shown until it ends
    _wait(browser, lambda b: b.find_element(By.ID, "run-clustering").is_enabled(), 60)
    browser.find_element(By.ID, "run-clustering").click()
    _notice(browser, "Clustering done")
    _wait(browser, lambda b: len(_people(b)) == 3)
    # the project's datasets are the dataset field's choices (ListDatasets)
    offered = "return [...document.querySelectorAll('#dataset-names option')].map(o => o.value)"
    _wait(browser, lambda b: b.execute_script(offered) == [DATASET], 30)
    _shot(browser, artefacts, "2-people.png")
    ids = [str(card.get_attribute("data-id")) for card in _people(browser)]
    assert all(_cluster(sdk, i).face_count == 4 for i in ids)
    first, second, third = ids

    # 3. rename the first person, then meet a rename made meanwhile by another client
    _people(browser)[0].find_element(By.CSS_SELECTOR, "img.face").click()
    _wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#faces li")) == 4, 60)
    name_box = browser.find_element(By.ID, "person-name")
    name_box.clear()
    name_box.send_keys("Ann")
    browser.find_element(By.ID, "save-name").click()
    _notice(browser, "Saved the name")
    assert _cluster(sdk, first).name == "Ann"
    _shot(browser, artefacts, "3-renamed.png")
    sdk.update_figure_cluster(
        imm.UpdateFigureClusterRequest(
            project_name=PROJECT,
            dataset_name=DATASET,
            figure_cluster=imm.FigureClusterForReq(object_id=first, name="Someone else"),
        )
    )
    name_box.clear()
    name_box.send_keys("Ann Lee")
    browser.find_element(By.ID, "save-name").click()
    conflict = _notice(browser, "Not saved")
    assert "someone else changed this person" in conflict
    assert _cluster(sdk, first).name == "Someone else"
    _shot(browser, artefacts, "4-rename-conflict.png")

    # 4. move a face to another person, then one out of any person
    card = browser.find_element(By.CSS_SELECTOR, "#faces li")
    figure = str(card.get_attribute("data-figure"))
    uri = str(card.find_element(By.CSS_SELECTOR, "img.photo").get_attribute("title"))
    card.find_element(By.CSS_SELECTOR, "input.move-target").send_keys(second)
    card.find_element(By.CSS_SELECTOR, "form button").click()
    _notice(browser, f"The face moved to {second}")
    _wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#faces li")) == 3, 60)
    assert (_cluster(sdk, first).face_count, _cluster(sdk, second).face_count) == (3, 5)
    assert _cluster_of_figure(sdk, uri, figure) == second
    _shot(browser, artefacts, "5-face-moved-to-another.png")
    card = browser.find_element(By.CSS_SELECTOR, "#faces li")
    figure = str(card.get_attribute("data-figure"))
    uri = str(card.find_element(By.CSS_SELECTOR, "img.photo").get_attribute("title"))
    card.find_element(By.CSS_SELECTOR, "button.move-out").click()
    _notice(browser, "The face is out of this person")
    _wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#faces li")) == 2, 60)
    assert _cluster(sdk, first).face_count == 2
    _shot(browser, artefacts, "6-face-moved-out.png")
    assert _cluster_of_figure(sdk, uri, figure) == INDEPENDENT

    # 5. merge the other two people: the first picked keeps its id
    browser.find_element(By.ID, "back").click()
    # largest first, as the page lists them once it has read them again
    shown = "return [...document.querySelectorAll('#people li.person')].map(c => c.dataset.id)"
    _wait(browser, lambda b: b.execute_script(shown) == [second, third, first], 60)
    for cluster_id in (second, third):
        browser.find_element(
            By.CSS_SELECTOR, f'#people li[data-id="{cluster_id}"] input.pick'
        ).click()
    browser.find_element(By.ID, "merge").click()
    _notice(browser, "Merged 1 person")
    _wait(browser, lambda b: len(_people(b)) == 2, 60)
    assert _cluster(sdk, second).face_count == 9
    _shot(browser, artefacts, "7-merged.png")

    # 6. the faces left out, each under the reason the API gives for it
    browser.find_element(By.ID, "show-left-out").click()
    _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#left-out h2"), 60)
    section = _wait(browser, lambda b: _section_of(b, figure), 30)
    reason = _figure_json(browser, uri, figure)["FigureClusterReason"]
    assert reason.startswith("taken out of a person by hand")
    assert reason in section.find_element(By.TAG_NAME, "h2").text
    _shot(browser, artefacts, "8-faces-left-out.png")

    # 7. similar photos, grouped from the page, the best shot of each group marked
    browser.find_element(By.ID, "show-similar").click()
    _wait(browser, lambda b: b.find_element(By.ID, "similar-view").is_displayed(), 30)
    browser.find_element(By.ID, "run-similar").click()
    _notice(browser, "Similar photos grouped")
    groups = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#similar li.group"), 60)
    listed = sdk.query_similar_image_clusters(
        imm.QuerySimilarImageClustersRequest(project_name=PROJECT, dataset_name=DATASET)
    ).body.similar_image_clusters
    assert [g.get_attribute("data-id") for g in groups] == [c.object_id for c in listed]
    for group, cluster in zip(groups, listed, strict=True):
        shown = group.find_elements(By.TAG_NAME, "figure")
        assert [f.find_element(By.TAG_NAME, "img").get_attribute("title") for f in shown] == [
            f.uri for f in cluster.files
        ]
        assert "best" in str(shown[0].get_attribute("class"))
        assert shown[0].text.startswith("Best shot")
        assert all("best" not in str(f.get_attribute("class")) for f in shown[1:])
    _shot(browser, artefacts, "9-similar-photos.png")

    # 8. who is in a photo: the page's face search is SearchImageFigureCluster's answer
    source = f"oss://{BUCKET}/obama2.jpg"
    browser.find_element(By.ID, "search-uri").send_keys(source)
    browser.find_element(By.ID, "search").click()
    _wait(browser, lambda b: b.find_element(By.ID, "search-view").is_displayed(), 60)
    found = _wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#matches li"), 60)
    answer = sdk.search_image_figure_cluster(
        imm.SearchImageFigureClusterRequest(
            project_name=PROJECT, dataset_name=DATASET, source_uri=source
        )
    ).body.clusters
    assert [card.get_attribute("data-id") for card in found] == [c.cluster_id for c in answer]
    assert "similarity" in found[0].text
    _shot(browser, artefacts, "10-face-search.png")


def _section_of(browser: WebDriver, figure_id: str) -> WebElement | bool:
    """The left-out section showing this face, or False while none does."""
    for section in browser.find_elements(By.CSS_SELECTOR, "#left-out section"):
        if section.find_elements(By.CSS_SELECTOR, f'li[data-figure="{figure_id}"]'):
            return section
    return False


def _figure_json(browser: WebDriver, uri: str, figure_id: str) -> dict[str, Any]:
    """The face as GetFileMeta's JSON has it (OpenIMM's fields too, which the SDK drops),
    asked with the page's session."""
    body = {"ProjectName": PROJECT, "DatasetName": DATASET, "URI": uri}
    reply = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/GetFileMeta', {method: 'POST', credentials: 'same-origin',"
        " headers: {'Content-Type': 'application/json', 'x-openimm-session': '1'},"
        " body: JSON.stringify(arguments[0])})"
        ".then(r => r.json()).then(done, e => done({Error: String(e)}));",
        body,
    )
    assert "Files" in reply, reply
    (file,) = reply["Files"]
    (figure,) = [f for f in file["Figures"] if f["FigureId"] == figure_id]
    return dict(figure)


def _cluster_of_figure(sdk: Client, uri: str, figure_id: str) -> str:
    request = imm.GetFileMetaRequest(project_name=PROJECT, dataset_name=DATASET, uri=uri)
    (file,) = sdk.get_file_meta(request).body.files
    (figure,) = [f for f in file.figures or [] if f.figure_id == figure_id]
    return str(figure.figure_cluster_id)

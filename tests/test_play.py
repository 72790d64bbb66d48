"""The play page: a person as the shopper or as the search engine, the log, bad input, the Minari export.

Most tests drive the Flask application with its test client; one drives the real page in headless
Chromium with Selenium (Debian's ``chromium`` and ``chromium-driver``; CI installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading

import numpy as np
import pytest

flask = pytest.importorskip("flask")

import train_agent  # noqa: E402
from dialog_env.errors import DataFormatError  # noqa: E402
from dialog_env.play import DialogLog, read_dialogs  # noqa: E402
from dialog_env.play.__main__ import build_server, main, serve_parser  # noqa: E402
from dialog_env.synthetic import make_synthetic_shoes  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"num_train": 60, "num_test": 30, "dim": 8, "seed": 5}
TURNS = 3


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """A tiny run of the paper's agent on a small catalogue (a few seconds of training)."""
    root = tmp_path_factory.mktemp("play")
    catalog = make_synthetic_shoes(**SMALL).save(root / "small.h5")
    status = train_agent.main(
        [
            "--catalog",
            str(catalog),
            "--runs-dir",
            str(root / "runs"),
            "--run-name",
            "paper-tiny",
            "--pretrain-iterations",
            "4",
            "--improve-iterations",
            "1",
            "--batch-size",
            "8",
            "--train-turns",
            "3",
            "--max-turns",
            "3",
            "--eval-episodes",
            "8",
            "--no-progress",
            "--seed",
            "1",
            "--torch-threads",
            "1",
        ]
    )
    assert status == 0
    return {"run": root / "runs" / "paper-tiny", "catalog": catalog, "root": root}


def make_app(tmp_path, *extra):
    args = serve_parser().parse_args(["--log", str(tmp_path / "dialogs.jsonl"), "--max-turns", str(TURNS), *extra])
    app, problem = build_server(args)
    return app, problem, tmp_path / "dialogs.jsonl"


def start(client, mode):
    response = client.post("/start", data={"mode": mode})
    assert response.status_code == 303, response.data
    location = response.headers["Location"]
    return location, client.get(location)


def turn_of(page) -> int:
    return int(re.search(rb'data-turn="(\d+)"', page.data).group(1))


def shown_of(page) -> int:
    return int(re.search(rb'id="shown-picture"[^>]*data-index="(\d+)"', page.data).group(1))


def error_of(response) -> str:
    match = re.search(rb'id="error">([^<]*)<', response.data)
    return match.group(1).decode() if match else ""


def events(log_path):
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def test_a_person_as_the_shopper_plays_a_whole_dialog_and_every_turn_is_logged(paper_run, tmp_path):
    app, problem, log_path = make_app(tmp_path, "--agent", str(paper_run["run"]))
    assert problem is None
    client = app.test_client()
    home = client.get("/")
    assert home.status_code == 200 and b'id="start-shopper"' in home.data
    location, page = start(client, "shopper")
    assert b'id="target-picture"' in page.data  # the person sees the target
    shown = [shown_of(page)]
    words = ["is black", "has a higher zorbly heel", "is more shiny", "are boots"]
    for turn in range(TURNS + 1):
        if b'id="status"' in page.data:
            break
        assert turn_of(page) == turn
        response = client.post(location + "/feedback", data={"turn": turn, "text": words[turn]})
        assert response.status_code == 303
        page = client.get(location)
        shown.append(shown_of(page))
    assert b'id="status"' in page.data
    log = events(log_path)
    assert [e["event"] for e in log][0] == "start" and log[-1]["event"] == "end"
    turns = [e for e in log if e["event"] == "turn"]
    assert [e["turn"] for e in turns] == list(range(len(turns)))
    assert [e["shown"] for e in turns] == shown[: len(turns)]
    assert turns[0]["feedback"] == "is black" and turns[0]["source"] == "human"
    assert turns[1]["unknown_words"] == ["zorbly"]
    assert b'class="unknown-word">zorbly<' in page.data  # unknown words are shown as such
    assert log[0]["agent"] == "paper-tiny" and log[0]["mode"] == "shopper"
    dialog = read_dialogs(log_path)[0]
    assert dialog.finished and dialog.turns[1].feedback == "has a higher zorbly heel"
    # The ranks logged are the environment's: rank 0 exactly when the target is shown.
    assert all((e["rank"] == 0) == (e["shown"] == log[0]["target"]) for e in turns)


def test_bad_feedback_gets_a_message_on_the_page_and_nothing_in_the_log(paper_run, tmp_path):
    app, _, log_path = make_app(tmp_path, "--agent", str(paper_run["run"]))
    client = app.test_client()
    location, page = start(client, "shopper")
    before = log_path.read_text()
    for text, message in [
        ("", "please type"),
        ("   ", "please type"),
        ("x" * 301, "at most 300"),
        ("?! ...", "no words"),
    ]:
        response = client.post(location + "/feedback", data={"turn": 0, "text": text})
        assert response.status_code == 400 and message in error_of(response)
    assert log_path.read_text() == before
    response = client.post(location + "/feedback", data={"text": "is red"})  # a form without its turn
    assert response.status_code == 400 and "turn number" in error_of(response)
    # A double submit, or a second tab still at turn 0: played once, then told the page is out of date.
    assert client.post(location + "/feedback", data={"turn": 0, "text": "is red"}).status_code == 303
    second = client.post(location + "/feedback", data={"turn": 0, "text": "is blue"})
    assert second.status_code == 409 and "out of date" in error_of(second)
    turns = [e for e in events(log_path) if e["event"] == "turn"]
    assert [(e["turn"], e["feedback"]) for e in turns] == [(0, "is red")]
    assert client.get("/dialog/nonexistent").status_code == 404
    assert client.post("/start", data={"mode": "chess"}).status_code == 400


def test_a_long_feedback_is_read_up_to_sixteen_words_and_says_so(paper_run, tmp_path):
    app, _, log_path = make_app(tmp_path, "--agent", str(paper_run["run"]))
    client = app.test_client()
    location, _ = start(client, "shopper")
    text = " ".join(["black"] * 20)
    assert client.post(location + "/feedback", data={"turn": 0, "text": text}).status_code == 303
    page = client.get(location)
    assert "only the first 16 words are read" in page.data.decode()
    assert [e for e in events(log_path) if e["event"] == "turn"][0]["feedback"] == text  # logged whole


def test_a_person_as_the_search_engine_picks_images_against_the_simulated_shopper(tmp_path):
    app, problem, log_path = make_app(tmp_path, "--catalog", str(make_synthetic_shoes(**SMALL).save(tmp_path / "c.h5")))
    assert problem is None
    client = app.test_client()
    assert b'id="start-shopper"' not in client.get("/").data  # no agent: only this mode
    location, page = start(client, "agent")
    assert b'id="target-picture"' not in page.data  # the target stays hidden
    assert b'id="shopper-says"' in page.data
    candidates = [int(i) for i in re.findall(rb'class="candidate" name="image" value="(\d+)"', page.data)]
    assert len(candidates) == 24 and shown_of(page) not in candidates
    other = client.post(location + "/more", data={"turn": 0})
    assert other.status_code == 303
    page = client.get(location)
    again = [int(i) for i in re.findall(rb'class="candidate" name="image" value="(\d+)"', page.data)]
    assert again != candidates
    response = client.post(location + "/pick", data={"turn": 0, "image": 10_000})
    assert response.status_code == 400 and "no image" in error_of(response)
    for turn in range(TURNS):
        assert client.post(location + "/pick", data={"turn": turn, "image": again[turn]}).status_code == 303
        page = client.get(location)
        if b'id="status"' in page.data:
            break
    assert b'id="status"' in page.data and b'id="target-picture"' in page.data  # revealed at the end
    log = events(log_path)
    turns = [e for e in log if e["event"] == "turn"]
    assert all(e["source"] == "simulator" for e in turns) and log[-1]["event"] == "end"
    assert client.post(location + "/pick", data={"turn": len(turns) - 1, "image": 1}).status_code == 409


def test_giving_up_ends_the_dialog_in_the_log(tmp_path):
    app, _, log_path = make_app(tmp_path)
    client = app.test_client()
    location, _ = start(client, "agent")
    assert client.post(location + "/give-up", data={"turn": 0}).status_code == 303
    end = events(log_path)[-1]
    assert end["event"] == "end" and end["reason"] == "gave up" and end["found"] is False
    assert b"Given up" in client.get(location).data


def test_a_checkpoint_that_does_not_fit_the_catalogue_is_said_on_the_page(paper_run, tmp_path, capsys):
    other = make_synthetic_shoes(num_train=20, num_test=10, dim=12, seed=1).save(tmp_path / "other.h5")
    app, problem, _ = make_app(tmp_path, "--agent", str(paper_run["run"]), "--catalog", str(other))
    assert problem is not None and "12" in problem
    client = app.test_client()
    for response in (client.get("/"), client.post("/start", data={"mode": "shopper"})):
        assert response.status_code == 503
        assert b'id="startup-error"' in response.data and b"cannot play" in response.data
    app, problem, _ = make_app(tmp_path, "--agent", str(tmp_path / "no-such-run"))
    assert "no checkpoint" in problem


def test_read_dialogs_refuses_what_is_not_a_log(tmp_path):
    log = DialogLog(tmp_path / "log.jsonl")
    log.append("start", "d1", mode="agent", target=3, catalog=None, split="test", agent=None, max_turns=2)
    log.append("turn", "d1", turn=0, shown=1, rank=5, feedback="is red", source="simulator", unknown_words=[])
    dialogs = read_dialogs(log.path)
    assert len(dialogs) == 1 and not dialogs[0].finished
    cases = {
        "not json\n": "not JSON",
        json.dumps({"version": 99}) + "\n": "not a version-1",
        json.dumps({"version": 1, "event": "turn", "dialog": "d9", "turn": 0}) + "\n": "never started",
        json.dumps(
            {
                "version": 1,
                "event": "turn",
                "dialog": "d1",
                "turn": 5,
                "shown": 1,
                "rank": 1,
                "feedback": "",
                "source": "human",
            }
        )
        + "\n": "out of order",
        json.dumps({"version": 1, "event": "dance", "dialog": "d1"}) + "\n": "unknown event",
        json.dumps(
            {
                "version": 1,
                "event": "start",
                "dialog": "d2",
                "mode": "agent",
                "target": "three",
                "split": "test",
                "max_turns": 2,
            }
        )
        + "\n": "'target' must be int",
    }
    for line, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(log.path.read_text() + line)
        with pytest.raises(DataFormatError, match=message):
            read_dialogs(bad)


def test_dialog_logs_export_as_a_minari_dataset(paper_run, tmp_path, capsys):
    minari = pytest.importorskip("minari")
    app, _, log_path = make_app(tmp_path, "--agent", str(paper_run["run"]))
    client = app.test_client()
    location, page = start(client, "shopper")  # a person as the shopper, to the end
    while b'id="status"' not in page.data:
        client.post(location + "/feedback", data={"turn": turn_of(page), "text": "is black with a higher heel"})
        page = client.get(location)
    location, page = start(client, "agent")  # a person as the search engine, giving up after one pick
    candidate = int(re.search(rb'class="candidate" name="image" value="(\d+)"', page.data).group(1))
    client.post(location + "/pick", data={"turn": 0, "image": candidate})
    client.post(location + "/give-up", data={"turn": 1})
    start(client, "agent")  # unfinished: left out
    out = tmp_path / "datasets"
    status = main(
        [
            "export",
            "--log",
            str(log_path),
            "--out",
            str(out),
            "--dataset-id",
            "dialog-retrieval/test-v0",
            "--agent",
            str(paper_run["run"]),
        ]
    )
    assert status == 0
    said = capsys.readouterr().out
    assert "2 episodes (1 with a person as the shopper, 1 as the search engine)" in said and "1 unfinished" in said
    os.environ["MINARI_DATASETS_PATH"] = str(out)
    try:
        dataset = minari.load_dataset("dialog-retrieval/test-v0")
        episodes = list(dataset.iterate_episodes())
        evaluation_env = dataset.recover_environment(eval_env=True)  # the rule-based shopper, same catalogue
        observation, _ = evaluation_env.reset(seed=0)
        assert observation["feedback"].shape == (16,) and evaluation_env.unwrapped.catalog.num_images == 30
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    dialogs = [d for d in read_dialogs(log_path) if d.finished]
    assert len(episodes) == 2
    for episode, dialog in zip(episodes, dialogs):
        assert list(episode.actions) == [turn.shown for turn in dialog.turns[1:]]
        assert episode.observations["feedback"].shape == (len(dialog.turns), 16)
    human = episodes[0]
    assert human.terminations[-1] == dialog_found(dialogs[0]) and human.truncations[-1] != dialog_found(dialogs[0])
    assert episodes[1].truncations[-1] and not episodes[1].terminations[-1]  # given up: cut at its last turn
    # Feedback observations are the agent's vocabulary's encoding of the typed words.
    from agents.checkpoints import load_paper_run

    vocabulary = load_paper_run(paper_run["run"])["vocabulary"]
    np.testing.assert_array_equal(human.observations["feedback"][0], vocabulary.encode("is black with a higher heel"))
    # A log tampered with (another target) no longer replays: refused, not exported wrong.
    lines = log_path.read_text().splitlines()
    first = json.loads(lines[0])
    first["target"] = (first["target"] + 1) % SMALL["num_test"]
    (tmp_path / "tampered.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    assert (
        main(
            [
                "export",
                "--log",
                str(tmp_path / "tampered.jsonl"),
                "--out",
                str(out),
                "--dataset-id",
                "dialog-retrieval/tampered-v0",
            ]
        )
        == 2
    )
    assert "not played on this catalogue" in capsys.readouterr().err


def dialog_found(dialog) -> bool:
    return bool(dialog.found)


# ---------------------------------------------------------------------------- a real browser
def _chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        binary = None
    if binary is None or driver is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: install chromium, chromium-driver and selenium (.ci/run)")
        pytest.skip("headless Chromium, chromedriver or selenium not installed")
    return binary, driver


def test_a_whole_dialog_in_headless_chromium(paper_run, tmp_path):
    binary, driver_path = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    from werkzeug.serving import make_server

    app, problem, log_path = make_app(tmp_path, "--agent", str(paper_run["run"]))
    assert problem is None
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(f"http://127.0.0.1:{server.server_port}/")
        page = browser.find_element(By.TAG_NAME, "html")
        browser.find_element(By.ID, "start-shopper").click()
        WebDriverWait(browser, 60).until(expected_conditions.staleness_of(page))
        target = browser.find_element(By.ID, "target-picture")
        assert browser.execute_script("return arguments[0].naturalWidth", target) == 256  # the drawing loaded
        browser.find_element(By.ID, "submit").click()  # empty: refused on the page
        # Wait for the answer: under load the page being left can still be there for a while.
        error = WebDriverWait(browser, 60).until(expected_conditions.presence_of_element_located((By.ID, "error")))
        assert "please type" in error.text
        typed = []
        while not browser.find_elements(By.ID, "status"):
            shown = browser.find_element(By.ID, "shown-picture").get_attribute("data-index")
            text = f"is darker than {shown} and has a higher blorp heel"
            box = browser.find_element(By.ID, "feedback")
            box.clear()
            box.send_keys(text)
            page = browser.find_element(By.TAG_NAME, "html")
            browser.find_element(By.ID, "submit").click()
            # The next page, not the one being left: under load the old page can still be there.
            WebDriverWait(browser, 60).until(expected_conditions.staleness_of(page))
            typed.append(text)
            assert len(typed) <= TURNS + 1
        status = browser.find_element(By.ID, "status")
        assert status.get_attribute("data-found") in ("yes", "no")
        unknown = {element.text for element in browser.find_elements(By.CLASS_NAME, "unknown-word")}
        assert "blorp" in unknown
        rows = browser.find_elements(By.CSS_SELECTOR, "#transcript li")
        assert len(rows) >= len(typed)
    finally:
        browser.quit()
        server.shutdown()
    logged = [e for e in events(log_path) if e["event"] == "turn" and e["source"] == "human"]
    assert [e["feedback"] for e in logged] == typed
    assert events(log_path)[-1]["event"] == "end"
    # The dialog played in the browser, exported for offline RL.
    minari = pytest.importorskip("minari")
    out = tmp_path / "datasets"
    assert main(["export", "--log", str(log_path), "--out", str(out), "--dataset-id", "dialog-retrieval/browser-v0",
                 "--agent", str(paper_run["run"])]) == 0  # fmt: skip
    os.environ["MINARI_DATASETS_PATH"] = str(out)
    try:
        (episode,) = list(minari.load_dataset("dialog-retrieval/browser-v0").iterate_episodes())
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
    turns = [e for e in events(log_path) if e["event"] == "turn"]
    assert list(episode.actions) == [e["shown"] for e in turns[1:]]


def test_what_a_person_types_is_shown_as_text_never_as_markup(paper_run, tmp_path):
    app, _, log_path = make_app(tmp_path, "--agent", str(paper_run["run"]))
    client = app.test_client()
    location, _ = start(client, "shopper")
    typed = "<script>alert('x')</script> is black"
    assert client.post(location + "/feedback", data={"turn": 0, "text": typed}).status_code == 303
    page = client.get(location).data.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert [e for e in events(log_path) if e["event"] == "turn"][0]["feedback"] == typed

"""The inspector in a real headless browser (Debian's chromium, driven by Selenium) against
a real server process with real client processes. Screenshots go to out/monitor/."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.jsonproc import stop
from tests.monitor.conftest import Game

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = ROOT / "out" / "monitor"
WAIT = 15.0

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: pip install -e '.[test]'"
)
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "BROWSER TESTS SKIPPED: chromium and chromedriver are not installed "
        "(apt-get install -y chromium chromium-driver; .ci/run installs them)",
        allow_module_level=True,
    )

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="reverb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, condition: Any, what: str, timeout: float = WAIT) -> Any:
    """Poll ``condition`` until truthy; the pages re-render live, so elements found a
    moment ago may be stale: that is a retry, not a failure."""
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    ).until(condition, message=what)


def shot(driver: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")  # the page from its top
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def cell_text(driver: Any, css: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else None


def frame_kinds(driver: Any) -> list[str]:
    """The kind column of the frames table, read in one step (it is re-rendered live)."""
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('#frames tbody tr')]"
            ".map((r) => r.children[1].textContent)"
        )
    )


def test_pages_live_updates_frames_and_disconnect(game: Game, browser: Any) -> None:
    proc, member = game.client()
    _, other = game.client()

    # Overview: both clients listed, the token gone from the address bar.
    browser.get(game.url)
    wait(
        browser,
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, f'#clients tr[data-member="{other}"]')
            and d.find_elements(By.CSS_SELECTOR, f'#clients tr[data-member="{member}"]')
        ),
        "both clients in the overview",
    )
    assert "token=" not in browser.current_url
    assert wait(browser, lambda d: d.find_element(By.ID, "object-count").text == "22", "count")
    # its round-trip time, from the pings the server sends while the monitor runs (§9.1)
    rtt = f'#clients tr[data-member="{member}"] td.rtt'
    wait(browser, lambda d: (t := cell_text(d, rtt)) and t.endswith(" ms"), "an RTT shown")
    shot(browser, "overview")

    # World: the Crates' fields change while we look (pushed by Server-Sent Events).
    browser.get(game.base + "/#/world")
    x_cell = '#objects tr[data-uid="1"] [data-field="x"]'
    first = wait(browser, lambda d: cell_text(d, x_cell), "crate uid=1 shown")
    wait(browser, lambda d: (t := cell_text(d, x_cell)) and t != first, "crate uid=1 x changes")
    tick = browser.find_element(By.ID, "world-tick").text
    wait(browser, lambda d: d.find_element(By.ID, "world-tick").text != tick, "tick advances")
    wait(
        browser,
        lambda d: (
            d.find_element(By.CSS_SELECTOR, f'#objects a[href="#/client/{member}"]').text
            == f"#{member}"
        ),
        "its Player's owner links to it",
    )
    shot(browser, "world")

    # A client: its view holds its Player, its frames include syncs and its calls' replies.
    browser.get(game.base + f"/#/client/{member}")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#frames tbody tr"), "frames")

    def open_a_sync_frame(d: Any) -> bool:
        for row in d.find_elements(By.CSS_SELECTOR, "#frames tbody tr"):
            if row.find_elements(By.TAG_NAME, "td")[1].text == "sync":
                assert row.get_attribute("data-tick")
                row.find_element(By.TAG_NAME, "summary").click()
                return True
        return False

    wait(browser, open_a_sync_frame, "a sync frame to open")
    body = wait(
        browser,
        lambda d: (
            (p := d.find_elements(By.CSS_SELECTOR, "#frames details[open] pre")) and p[0].text
        ),
        "a decoded frame opened",
    )
    assert '"type": "sync"' in body
    wait(browser, lambda d: f"p{member}" in d.find_element(By.ID, "view").text, "its Player")
    # the errors it caused: its refused calls by code (move(9) is "too fast": rejected)
    wait(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, '#client-rpc-errors tr[data-code="rejected"]'),
        "its rejected calls counted",
    )
    # (re-rendered live: read through ``wait``, which retries a stale element)
    wait(browser, lambda d: "too fast" in d.find_element(By.ID, "client-failed").text, "why")
    wait(browser, lambda d: d.find_element(By.ID, "client-rtt").text.endswith(" ms"), "its RTT")
    shot(browser, "client")
    # Filter to the replies of its calls.
    browser.find_element(By.ID, "frame-filter").send_keys("rpc_result")
    wait(
        browser,
        lambda d: (kinds := frame_kinds(d)) and set(kinds) == {"rpc_result"},
        "only rpc_result frames after filtering",
    )
    wait(browser, lambda d: "move" in d.find_element(By.ID, "client-rpcs").text, "its calls")
    shot(browser, "client-filtered")

    # Disconnect it from the page; it goes, from the page and for real.
    browser.find_element(By.ID, "reason").send_keys("test kick")
    button = browser.find_element(By.ID, "disconnect")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()  # centred: the sticky header never covers it
    wait(browser, lambda d: d.find_element(By.ID, "action-result").text == "disconnected", "ok")
    assert proc.expect("DISCONNECTED ") == "DISCONNECTED 1000 disconnected by operator: test kick"
    wait(
        browser,
        lambda d: d.find_element(By.ID, "client-state").text == "disconnected",
        "the page shows it disconnected",
    )
    # why it went stays on its page: the close, with the operator's reason
    wait(
        browser,
        lambda d: (
            "disconnected by operator: test kick"
            in d.find_element(By.CSS_SELECTOR, '#client-incidents tr[data-kind="closed"]').text
        ),
        "the close among its incidents",
    )
    shot(browser, "client-after-disconnect")
    browser.get(game.base + "/#/")
    wait(
        browser,
        lambda d: (
            d.find_elements(By.CSS_SELECTOR, f'#clients tr[data-member="{other}"]')
            and not d.find_elements(By.CSS_SELECTOR, f'#clients tr[data-member="{member}"]')
        ),
        "the client gone from the overview",
    )
    shot(browser, "overview-after-disconnect")

    browser.get(game.base + "/#/rpc")
    wait(browser, lambda d: "rejected: too fast" in d.find_element(By.ID, "rpcs").text, "a refusal")
    shot(browser, "rpc")


def test_browser_without_token_sees_nothing(game: Game, browser: Any) -> None:
    browser.get(game.base + "/")
    assert "token required" in browser.page_source
    assert "Reverb monitor" not in browser.title


def test_overview_lists_rooms_live(browser: Any) -> None:
    """Rooms (§17): the overview's Rooms table lists each room with its clients, state,
    objects, held tick rate and metadata, each client row names its room, and a disposed
    room leaves the table while the page stays open."""
    game = Game(rooms=True)
    try:
        _, a, duel = game.room_client("duel")
        _, b, _ = game.room_client("duel")
        squad_proc, c, squad = game.room_client("squad")
        _, plain = game.client()
        browser.get(game.url)
        row = '#rooms tr[data-room="{}"]'
        wait(
            browser,
            lambda d: (
                d.find_elements(By.CSS_SELECTOR, row.format(duel))
                and d.find_elements(By.CSS_SELECTOR, row.format(squad))
                and d.find_elements(By.CSS_SELECTOR, row.format("default"))
            ),
            "the three rooms listed",
        )

        def cells(room: str) -> list[str]:
            return list(
                browser.execute_script(
                    "const r = document.querySelector(arguments[0]);"
                    "return r ? [...r.children].map((c) => c.textContent) : [];",
                    row.format(room),
                )
            )

        wait(browser, lambda d: cells(duel)[1:5] == ["arena", "2 / 4", "open", "3"], "duel row")
        wait(browser, lambda d: cells(squad)[1:5] == ["arena", "1 / 4", "open", "2"], "squad row")
        assert '"mode":"squad"' in cells(squad)[6]
        # the tick rate it held, measured between two updates of the page (10 Hz asked)
        held = wait(
            browser, lambda d: (t := cells(duel)[5]) and not t.startswith("…") and t, "held rate"
        )
        assert held.endswith("/ 10 Hz") and 5.0 <= float(held.split()[0]) <= 12.0, held
        for member, room in ((a, duel), (b, duel), (c, squad), (plain, "default")):
            wait(
                browser,
                lambda d, m=member, r=room: (
                    cell_text(d, f'#clients tr[data-member="{m}"] td.room') == r
                ),
                f"client {member} shown in room {room}",
            )
        wait(
            browser,
            lambda d: d.find_element(By.ID, "room-summary").text == "3 rooms: arena 2 · default 1",
            "rooms counted by type",
        )
        shot(browser, "overview-rooms")

        stop(squad_proc.proc)  # its last client gone, the squad arena is disposed
        wait(
            browser,
            lambda d: (
                not d.find_elements(By.CSS_SELECTOR, row.format(squad))
                and d.find_elements(By.CSS_SELECTOR, row.format(duel))
            ),
            "the disposed room gone from the table",
        )
        wait(
            browser,
            lambda d: not d.find_elements(By.CSS_SELECTOR, f'#clients tr[data-member="{c}"]'),
            "its client gone",
        )
        wait(
            browser,
            lambda d: cell_text(d, f'#clients tr[data-member="{a}"] td:nth-child(12)') == "3",
            "a room client's view size read from its room",
        )

        # a room client's page: which room it sits in, and the room's objects it holds
        browser.get(f"{game.base}/#/client/{a}")
        wait(
            browser,
            lambda d: d.find_element(By.ID, "client-room").text == f"in room {duel}",
            "the client page names its room",
        )
        wait(browser, lambda d: view_types(d, "#view") == ["Token"] * 3, "its view: the arena's")
        mine = browser.find_elements(By.CSS_SELECTOR, "#view tbody tr td:nth-child(3)")
        assert sorted(cell.text for cell in mine) == sorted(["server", f"#{a} (this)", f"#{b}"])
        assert f"in room {duel}" in browser.find_element(By.ID, "view-title").text
        SHOTS.mkdir(parents=True, exist_ok=True)  # its page scrolled to what it holds
        browser.execute_script("document.getElementById('view-title').scrollIntoView()")
        browser.save_screenshot(str(SHOTS / "client-room.png"))

        # the world page: the default room first, then choose the duel arena
        browser.find_element(By.ID, "nav-world").click()
        wait(browser, lambda d: "Crate" in view_types(d, "#objects"), "the default room's world")
        options = wait(
            browser,
            lambda d: room_options(d) if len(room_options(d)) == 2 else None,
            "the rooms to choose from",
        )
        assert options == ["default", duel]
        from selenium.webdriver.support.ui import Select

        Select(browser.find_element(By.ID, "world-room")).select_by_value(duel)
        wait(browser, lambda d: view_types(d, "#objects") == ["Token"] * 3, "the arena's objects")
        assert browser.current_url.endswith(f"#/world/{duel}")
        seen = browser.find_elements(By.CSS_SELECTOR, "#objects tbody tr td.seen-by")
        assert {cell.text for cell in seen} == {" ".join(f"#{m}" for m in sorted([a, b]))}
        wait(
            browser,
            lambda d: d.find_element(By.ID, "world-room").get_attribute("value") == duel,
            "the selector shows the room chosen",
        )
        shot(browser, "world-room")
    finally:
        game.close()


def view_types(driver: Any, table: str) -> list[str]:
    """The type column of an objects table, read in one step (it is re-rendered live)."""
    return sorted(
        driver.execute_script(
            "return [...document.querySelectorAll(arguments[0] + ' tbody tr')]"
            ".map((r) => r.children[1].textContent)",
            table,
        )
    )


def room_options(driver: Any) -> list[str]:
    return list(
        driver.execute_script(
            "const s = document.getElementById('world-room');"
            "return s ? [...s.options].map((o) => o.value) : [];"
        )
    )

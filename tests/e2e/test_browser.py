"""The web page end to end: a real Chromium signs in, opens a room, talks to an agent."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import async_playwright, expect

from salon.platform import Running
from tests.clients import Client

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000


async def test_a_person_talks_to_an_agent_in_the_browser(
        salon: Running, name: str, tmp_path: Path) -> None:
    bot = f"{name}-bot"
    client = await Client.open(salon.ws_url, salon.admin_token)
    try:
        await client.ok({"type": "create_room", "name": name, "topic": "browser test"})
        await client.ok({"type": "create_agent",
                         "definition": {"name": bot, "script": ["pong from the bot: {text}"]}})
        await client.ok({"type": "add_agent", "room": name, "agent": bot})
        me = (await client.ok({"type": "whoami"}))["user"]

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1100, "height": 720})
                page.set_default_timeout(TIMEOUT_MS)
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))

                await page.goto(f"{salon.http_url}?token={salon.admin_token}#room={name}")

                status = page.locator("#status")
                await expect(status).to_have_text("Connected", timeout=TIMEOUT_MS)
                room_button = page.locator(f'#rooms [data-room="{name}"]')
                await expect(room_button).to_have_attribute("aria-current", "true")
                messages = page.locator("#messages")
                # History is on screen: the agent's arrival is a system line.
                await expect(messages).to_contain_text(bot, timeout=TIMEOUT_MS)

                said = f"hello @{bot}"
                await page.locator("#composer").fill(said)
                await page.locator("#send").click()

                mine = messages.locator(f'.message[data-author="{me}"] .text')
                await expect(mine).to_have_text(said, timeout=TIMEOUT_MS)
                reply = messages.locator(f'.message[data-author="{bot}"] .text')
                await expect(reply).to_contain_text("pong from the bot", timeout=TIMEOUT_MS)
                await expect(reply).to_contain_text(said)
                await expect(messages.locator(f'.message[data-author="{bot}"] .badge')
                             ).to_have_text("agent")
                # The reply ended the agent's turn: no indicator is left behind.
                await expect(page.locator("#thinking .typing")).to_have_count(0)
                await expect(page.locator("#composer")).to_have_value("")
                # The token left the address bar; the room stayed in the hash.
                assert "token=" not in page.url
                assert page.url.endswith(f"#room={name}")

                shot = tmp_path / "browser.png"
                await page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 0
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

                # The timeline shows the room as it stood before the reply, then forks there.
                mine_at = await messages.locator(f'.message[data-author="{me}"]'
                                                 ).get_attribute("data-position")
                await page.locator("#timeline").fill(str(mine_at))
                await expect(page.locator("#timeline-label")).to_have_text(
                    f"As it stood at position {mine_at}")
                await expect(reply).to_be_hidden()
                await expect(mine).to_be_visible()
                await page.locator("#fork-here").click()
                await expect(page.locator("#room-title")).to_contain_text(f"{name}-fork-",
                                                                          timeout=TIMEOUT_MS)
                await expect(mine).to_have_text(said)
                await expect(messages.locator(f'.message[data-author="{bot}"]')).to_have_count(0)
                await expect(page.locator("#timeline-label")).to_have_text("Live")
                # In the fork, the author takes the message back: it shows as redacted.
                page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                await messages.locator(f'.message[data-author="{me}"] .redact').click()
                await expect(mine).to_have_text("message redacted", timeout=TIMEOUT_MS)
                await expect(messages.locator('.system[data-kind="message_redacted"]')
                             ).to_contain_text("redacted a message")
                await expect(messages.locator(f'.message[data-author="{me}"] .redact')
                             ).to_have_count(0)
                assert errors == []
            finally:
                await browser.close()

        history = (await client.ok({"type": "history", "room": name}))["events"]
        posted = [e["event"] for e in history if e["event"]["kind"] == "message_posted"]
        assert [(m["author_id"], m["author_kind"]) for m in posted] == [
            (me, "human"), (bot, "agent")]
        assert posted[0]["text"] == said
        assert posted[0]["mentions"] == [bot]
        assert posted[0]["client_msg_id"]
        assert "pong from the bot" in posted[1]["text"]
        positions = [e["position"] for e in history]
        assert positions == sorted(set(positions))
    finally:
        await client.close()

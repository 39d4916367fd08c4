"""A report opens in headless Chromium and its plots render."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from simulations.cli import Services
from simulations.scenarios import load_scenario
from tests.simulations.conftest import run_all

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_a_report_opens_in_chromium_with_its_plots_drawn(services: Services,
                                                         tmp_path: Path) -> None:
    [simulation] = run_all(services, [(load_scenario("negotiation"), {"repetitions": 1})],
                           tmp_path)
    assert not simulation.failed
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(simulation.report.as_uri())
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")
            sizes = page.evaluate("Array.from(document.images).map(i => "
                                  "[i.naturalWidth, i.naturalHeight])")
            assert len(sizes) >= 11 and all(w > 300 and h > 100 for w, h in sizes), sizes
            assert "Sweep compared" in page.inner_text("body")
            assert page.locator("table.transcript tr").count() >= 10
            first_plot = page.locator("figure img").nth(1)
            first_plot.scroll_into_view_if_needed()
            shot = first_plot.screenshot()
            whole = page.screenshot(full_page=True)
            assert errors == []
        finally:
            browser.close()
    plot = Image.open(io.BytesIO(shot)).convert("RGB")
    colours = plot.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, f"the plot has only {len(colours)} colours: is it blank?"
    page_image = Image.open(io.BytesIO(whole)).convert("RGB")
    assert len(page_image.getcolors(maxcolors=1 << 22) or []) > 200

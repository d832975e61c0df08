"""The HTML report in a real browser: Debian's chromium, headless, driven by playwright.

Pages are rendered from the fixture results of ``test_report_render.py`` and
opened from disk (file://). Screenshots are saved next to each page
(``<report dir>/screenshots/``) and, when ``REPORT_SCREENSHOT_DIR`` is set, into
that directory too (a value of 1/true/yes means ``reports/latest/screenshots``).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run the "
                f"report's browser tests", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from embedding_conformance.reports.cli import merge_dirs  # noqa: E402
from embedding_conformance.reports.render import render  # noqa: E402

_spec = importlib.util.spec_from_file_location("_report_fixtures", Path(__file__).with_name("test_report_render.py"))
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}


def _extra_screenshot_dir() -> Path | None:
    value = os.environ.get("REPORT_SCREENSHOT_DIR", "").strip()
    if not value:
        return None
    if value.lower() in ("1", "true", "yes"):
        return ROOT / "reports" / "latest" / "screenshots"
    p = Path(value)
    return p if p.is_absolute() else ROOT / p


def screenshot(page, report_dir: Path, name: str) -> Path:
    out = report_dir / "screenshots" / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))
    extra = _extra_screenshot_dir()
    if extra is not None:
        extra.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, extra / out.name)
    assert out.stat().st_size > 10_000
    return out


# -- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("report")
    single = fx.write_fixture_run(base / "single")
    render(single, single)
    a = fx.write_fixture_run(base / "torch-2.12", torch_version="2.12.0", torch_negative="conforms")
    b = fx.write_fixture_run(base / "torch-2.13", torch_version="2.13.0", torch_negative="violates")
    merge_dirs([a, b], base / "merged")
    big = fx.write_fixture_run(base / "big", fx.big_records(120, 50))
    render(big, big)
    return {"single": single, "merged": base / "merged", "big": big}


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Watched:
    """A page opened from disk, with every console error and network request recorded."""

    def __init__(self, browser, report_dir: Path):
        self.dir = report_dir
        self.url = (report_dir / "index.html").as_uri()
        self.context = browser.new_context(viewport=VIEWPORT)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.errors.append(f"requestfailed: {r.url}"))
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def close(self):
        assert self.errors == [], self.errors
        assert self.requests == [self.url], f"requests besides the page itself: {self.requests}"
        self.context.close()

    def row(self, clause: str):
        return self.page.locator(f'#matrix tr.cl[data-id="{clause}"]')

    def col_index(self, adapter: str, nth: int = 0) -> int:
        """0-based column index of an adapter's nth version column."""
        c0 = self.page.evaluate(
            "name => +Array.from(document.querySelectorAll('#matrix th.adg'))"
            ".find(th => th.textContent.trim() === name).dataset.c0", adapter)
        return c0 + nth

    def cell(self, clause: str, adapter: str, nth: int = 0):
        return self.row(clause).locator(f"td:nth-child({self.col_index(adapter, nth) + 2})")

    def visible_rows(self) -> list[str]:
        return self.page.evaluate(
            "() => Array.from(document.querySelectorAll('#matrix tr.cl')).filter(tr => tr.offsetParent !== null)"
            ".map(tr => tr.dataset.id)")


@pytest.fixture
def open_page(browser, pages):
    opened: list[Watched] = []

    def _open(name: str) -> Watched:
        w = Watched(browser, pages[name])
        opened.append(w)
        return w

    yield _open
    for w in opened:
        w.close()


# -- tests -----------------------------------------------------------------------------------------

def test_page_loads_from_disk_with_no_errors_and_no_network(open_page):
    w = open_page("single")
    page = w.page
    expect(page.locator("h1")).to_have_text("Embedding conformance report")
    expect(page.locator("header .versions")).to_contain_text("torch 2.13.0")
    assert len(w.visible_rows()) == len(fx.CLAUSES)
    assert page.locator("#matrix td.s-violates").count() == 2
    expect(page.locator("#shown")).to_have_text("showing 10 of 10 clauses, 6 of 6 columns")
    screenshot(page, w.dir, "report")
    # the header stays put when the matrix scrolls
    page.evaluate("document.getElementById('matrix-wrap').scrollTo(0, 400)")
    head = page.locator("#matrix thead th.corner").bounding_box()
    wrap = page.locator("#matrix-wrap").bounding_box()
    assert abs(head["y"] - wrap["y"]) < 2


def test_status_filter_hides_cells_and_rows(open_page):
    w = open_page("single")
    page = w.page
    conforming = w.cell("shape.output", "numpy")
    violating = w.cell("ids.negative", "torch.nn.Embedding")
    expect(conforming).to_have_class("s-conforms")
    expect(violating).to_have_class("s-violates")
    page.uncheck('#status-filter input[value="conforms"]')
    expect(conforming).to_be_hidden()
    expect(violating).to_be_visible()
    # shape.output still shows its unavailable cell; hiding that too leaves nothing in the row
    expect(w.row("shape.output")).to_be_visible()
    page.uncheck('#status-filter input[value="unavailable"]')
    expect(w.row("shape.output")).to_be_hidden()
    # only failures left: the rows that hold one
    for s in ("diverges", "not_applicable"):
        page.uncheck(f'#status-filter input[value="{s}"]')
    assert w.visible_rows() == ["rows.exact", "ids.negative", "ids.out_of_range", "ids.int64_wide"]
    screenshot(page, w.dir, "status-filter-failures-only")
    page.click("#reset")
    expect(conforming).to_be_visible()
    assert len(w.visible_rows()) == len(fx.CLAUSES)


def test_framework_filter_hides_columns(open_page):
    w = open_page("single")
    page = w.page
    torch_cells = [w.cell("shape.output", "torch.nn.Embedding"), w.cell("ids.negative", "torch.nn.functional.embedding")]
    numpy_cell = w.cell("shape.output", "numpy")
    page.uncheck('#framework-filter input[value="torch"]')
    for c in torch_cells:
        expect(c).to_be_hidden()
    expect(page.locator('#matrix th.fwg[title="torch"]')).to_be_hidden()
    expect(page.locator("#matrix th.adg", has_text="torch.nn.Embedding")).to_be_hidden()
    expect(numpy_cell).to_be_visible()
    expect(page.locator("#shown")).to_have_text("showing 10 of 10 clauses, 4 of 6 columns")
    screenshot(page, w.dir, "framework-filter")
    page.check('#framework-filter input[value="torch"]')
    for c in torch_cells:
        expect(c).to_be_visible()


def test_search_filters_rows(open_page):
    w = open_page("single")
    page = w.page
    page.fill("#search", "ids.neg")
    expect(w.row("shape.output")).to_be_hidden()
    expect(w.row("ids.negative")).to_be_visible()
    assert w.visible_rows() == ["ids.negative"]
    expect(page.locator('#matrix tr.fam[data-family="shape"]')).to_be_hidden()
    page.fill("#search", "PARTITION")
    expect(w.row("partition.mod")).to_be_visible()
    assert w.visible_rows() == ["partition.mod", "partition.div.uneven"]
    page.fill("#search", "no such clause")
    expect(page.locator("#empty")).to_be_visible()


def test_violating_cell_opens_its_example_and_snippet(open_page):
    w = open_page("single")
    page = w.page
    panel = page.locator("#detail")
    expect(panel).to_be_hidden()
    w.cell("ids.negative", "torch.nn.Embedding").click()
    expect(panel).to_be_visible()
    expect(panel.locator("h2")).to_have_text("ids.negative")
    expect(panel).to_contain_text("violates")
    expect(panel).to_contain_text("torch 2.13.0")
    expect(panel.locator("pre").first).to_contain_text("ids = np.array([-1], dtype=np.int64)")
    snippet = panel.locator("pre.snippet")
    expect(snippet).to_contain_text("torch.nn.Embedding.from_pretrained(torch.from_numpy(table))")
    assert snippet.inner_text().strip() == fx.SNIPPET_TORCH_NEG.strip()
    expect(panel).to_contain_text("tensor([[6., 7.]])")
    copy = panel.locator("h3", has_text="Reproduce").locator("button.copy")
    copy.click()
    expect(copy).not_to_have_text("Copy")  # "Copied", or a hint when the clipboard is not allowed
    screenshot(page, w.dir, "detail-violates")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()

    # a declared divergence shows its model, versions and reference as a link
    w.cell("ids.out_of_range", "jax.numpy.take").click()
    expect(panel).to_contain_text("diverges")
    expect(panel).to_contain_text("fill_nan")
    link = panel.locator(".div-box a")
    expect(link).to_have_attribute("href", "https://docs.jax.dev/en/latest/_autosummary/jax.numpy.take.html")
    expect(panel.locator("pre.snippet")).to_contain_text("jnp.take")
    screenshot(page, w.dir, "detail-diverges")
    # not applicable and unavailable say why
    w.cell("grad.scatter_add", "numpy").click()
    expect(panel).to_contain_text("the numpy adapter has no grad method")
    w.cell("rows.exact", "tf.nn.embedding_lookup").click()
    expect(panel).to_contain_text("tensorflow is not installed")
    page.click("#detail-close")
    expect(panel).to_be_hidden()


def test_merged_page_marks_the_planted_change(open_page):
    w = open_page("merged")
    page = w.page
    changed = page.locator("#matrix tr.cl.changed")
    expect(changed).to_have_count(1)
    expect(changed).to_have_attribute("data-id", "ids.negative")
    expect(changed.locator(".delta")).to_have_text("Δ changed")
    old, new = w.cell("ids.negative", "torch.nn.Embedding", 0), w.cell("ids.negative", "torch.nn.Embedding", 1)
    expect(old).to_have_class("s-conforms g")
    expect(new).to_have_class("s-violates g")
    labels = page.locator("#matrix th.ver").all_inner_texts()
    assert labels.count("2.12.0") == 2 and labels.count("2.13.0") == 2  # both torch adapters, both versions
    screenshot(page, w.dir, "merged")

    page.check("#changes-only")
    items = page.locator("#changes li.change")
    expect(items).to_have_count(1)
    expect(items).to_be_visible()
    expect(items.first).to_contain_text("ids.negative in torch.nn.Embedding")
    expect(items.first).to_contain_text("2.12.0 ✓ conforms → 2.13.0 ✗ violates")
    assert w.visible_rows() == ["ids.negative"]
    expect(page.locator("#shown")).to_have_text("showing 1 of 10 clauses, 2 of 8 columns")
    expect(old).to_be_visible()
    expect(new).to_be_visible()
    expect(w.cell("ids.negative", "numpy")).to_be_hidden()
    screenshot(page, w.dir, "merged-changes-only")
    items.first.click()
    expect(page.locator("#detail")).to_contain_text("This clause across versions of torch.nn.Embedding")
    expect(page.locator("#detail .across li")).to_have_count(2)
    page.keyboard.press("Escape")
    page.uncheck("#changes-only")
    assert len(w.visible_rows()) == len(fx.CLAUSES)


def test_thousands_of_checks_stay_fast(open_page):
    t0 = time.perf_counter()
    w = open_page("big")
    load = time.perf_counter() - t0
    page = w.page
    assert page.locator("#matrix tr.cl").count() == 120
    assert load < 10, f"opening 6000 checks took {load:.1f}s"
    ms = page.evaluate("""() => {
        const box = document.querySelector('#status-filter input[value="conforms"]');
        const t0 = performance.now();
        box.click(); document.body.offsetHeight;
        const fw = document.querySelector('#framework-filter input[value="fw3"]');
        fw.click(); document.body.offsetHeight;
        return performance.now() - t0; }""")
    assert ms < 1500, f"two filter changes over 6000 cells took {ms:.0f} ms"
    w.page.locator("#matrix td.s-violates").first.click()
    expect(page.locator("#detail pre.snippet")).to_be_visible()
    screenshot(page, w.dir, "big")

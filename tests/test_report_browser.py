"""The HTML report in a real browser: Debian's chromium, headless, driven by playwright.

Pages are rendered from the fixture results of ``test_report_render.py`` and
opened from disk (file://). Screenshots are saved next to each page
(``<report dir>/screenshots/``) and, when ``REPORT_SCREENSHOT_DIR`` is set, into
that directory too (a value of 1/true/yes means ``reports/latest/screenshots``).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))  # hosted CI points it at its Chrome
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
    wide = fx.write_fixture_run(base / "wide", wide_records())
    render(wide, wide)
    return {"single": single, "merged": base / "merged", "big": big, "wide": wide}


def wide_records() -> list[dict]:
    """A run shaped like the full one: every built-in column by its real name (the longest
    are 57 characters), every clause of the catalogue, departures of every kind."""
    from embedding_conformance.adapters import registry
    from embedding_conformance.suites.catalogue import load_all

    clauses = list(load_all().values())
    cycle = ["conforms"] * 5 + ["diverges", "not_applicable", "conforms", "not_applicable", "diverges"]
    recs = []
    for a, b in enumerate(registry.BUILTINS):
        fw = b.distributions[0] if b.distributions else "numpy"
        for c, clause in enumerate(clauses):
            s = cycle[(a * 3 + c) % len(cycle)]
            extra: dict = {}
            if (a, c) in ((7, 2), (30, 9)):
                s = "violates"
                extra = {"example": "table = np.zeros((65537, 1), dtype=np.float32)\ntable[[3]] = np.array([[1.5]], "
                                    "dtype=np.float32)\nids = np.array([-1], dtype=np.int64)",
                         "expected": "out_of_range", "actual": "float32[1, 1] [[0.]]", "detail": "wrapped",
                         "snippet": "import numpy as np\nresult = np.zeros((1, 1), dtype=np.float32)\n"}
            elif (a, c) in ((12, 3), (40, 5)):
                s = "violates"
                extra = {"acknowledged": {"reference": "https://github.com/x/y/issues/1", "source": "declarations.toml#violation1",
                                          "note": "known"}, "example": "ids = np.array([0])", "detail": "known"}
            elif (a, c) == (20, 4):
                s = "stale"
                extra = {"divergence": {"model": ["clip"], "reference": "https://docs.example.org/x",
                                        "source": "declarations.toml#2"}, "detail": "no longer departs"}
            elif (a, c) == (10, 2):  # rows.exact: a NaN payload quieted, the values print alike
                s = "diverges"
                extra = {"example": "table = np.frombuffer(bytes.fromhex('017c003c'), dtype=np.float16).reshape((2, 1))"
                                    "\nids = np.array([0, 1], dtype=np.int32)",
                         "expected": "float16[2, 1] [[nan], [1.]]", "actual": "float16[2, 1] [[nan], [1.]]",
                         "detail": "1 of 2 elements differ; first at [0, 0]: expected nan (bits 0x7c01), got nan (bits 0x7e01)",
                         "observed": {"dtype": "float16", "shape": [2, 1], "hex": "017e003c",
                                      "parts": [{"dtype": "float16", "shape": [2, 1], "hex": "017e003c"}]},
                         "divergence": {"model": ["quiet_nan"], "reference": "https://docs.example.org/nan",
                                        "source": "declarations.toml#3", "note": "NaNs come back quiet"},
                         "snippet": "import numpy as np\nresult = np.frombuffer(bytes.fromhex('017e003c'), dtype=np.float16)\n"}
            elif (a, c) == (44, 6):
                s = "error"
                extra = {"reason": "suite error KeyError: 'table'"}
            elif s == "diverges":
                extra = {"divergence": {"model": ["wrap_negative"], "reference": "https://docs.example.org/take",
                                        "source": "declarations.toml#1", "note": "wraps"},
                         "example": "ids = np.array([-1])", "expected": "out_of_range", "actual": "float32[1] [5.]"}
            recs.append({"adapter": b.name, "framework": fw, "clause": clause.id, "family": clause.family,
                         "statement": clause.statement, "status": s, "versions": {fw: "1.0", "numpy": "2.4.6"},
                         "device": "cpu", "examples": 100, "seconds": 0.1, **extra})
    return recs


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


class Watched:
    """A page opened from disk, with every console error and network request recorded."""

    def __init__(self, browser, report_dir: Path, viewport: dict | None = None, fragment: str = ""):
        self.dir = report_dir
        self.url = (report_dir / "index.html").as_uri()
        self.context = browser.new_context(viewport=viewport or VIEWPORT)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.errors.append(f"requestfailed: {r.url}"))
        self.page.goto(self.url + fragment)
        self.page.wait_for_load_state("load")

    def close(self):
        assert self.errors == [], self.errors
        assert all(r.split("#")[0] == self.url for r in self.requests), f"requests besides the page itself: {self.requests}"
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

    def _open(name: str, viewport: dict | None = None, fragment: str = "") -> Watched:
        w = Watched(browser, pages[name], viewport, fragment)
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
    expect(violating).to_have_class("s-violates n")
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
    page.click("#framework-menu summary")  # the frameworks are a menu, folded away
    page.uncheck('#framework-filter input[value="torch"]')
    for c in torch_cells:
        expect(c).to_be_hidden()
    expect(page.locator('#matrix th.fwg[title="torch"]')).to_be_hidden()
    expect(page.locator("#matrix th.adg", has_text="torch.nn.Embedding")).to_be_hidden()
    expect(numpy_cell).to_be_visible()
    expect(page.locator("#shown")).to_have_text("showing 10 of 10 clauses, 4 of 6 columns")
    expect(page.locator("#fw-count")).to_have_text("4/5")
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
    expect(new).to_have_class("s-violates n g")
    labels = page.locator("#matrix th.ver").all_inner_texts()
    assert labels.count("2.12.0") == 2 and labels.count("2.13.0") == 2  # both torch adapters, both versions
    screenshot(page, w.dir, "merged")

    page.locator("label:has(#changes-only)").click()
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
    page.locator("label.view", has_text="All").click()
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


# -- the page on a laptop and on a large screen; the new-only view; the URL; the panel ------------

LAPTOP = {"width": 1366, "height": 768}
FULL_HD = {"width": 1920, "height": 1080}

ROWS_IN_VIEW = """() => {
  const wrap = document.getElementById('matrix-wrap').getBoundingClientRect();
  const head = document.querySelector('#matrix thead').getBoundingClientRect();
  return Array.from(document.querySelectorAll('#matrix tr.cl')).filter(tr => {
    if (tr.offsetParent === null) return false;
    const r = tr.getBoundingClientRect();
    return r.top >= head.bottom - 1 && r.bottom <= Math.min(wrap.bottom, innerHeight) + 1;
  }).length; }"""

NAMES_READ_WHOLE = """() => Array.from(document.querySelectorAll('#matrix th.adg')).filter(th => {
  const text = Array.from(th.querySelectorAll('.ln')).map(s => s.textContent).join('');
  const vt = th.querySelector('.vt').getBoundingClientRect(), box = th.getBoundingClientRect();
  return text !== th.dataset.name || vt.width > box.width + 1 || vt.height > box.height + 1;
}).map(th => th.dataset.name)"""


def test_a_laptop_screen_shows_a_dozen_clause_rows_under_the_header(open_page):
    w = open_page("wide", LAPTOP)
    page = w.page
    # the run's details and the legend are folded away on a short screen, a click away
    expect(page.locator("#about")).to_be_hidden()
    assert page.evaluate(ROWS_IN_VIEW) >= 12
    # every column's full name is written out and fits its header: no tooltip needed
    assert page.locator("#matrix th.adg").count() >= 50
    assert page.evaluate(NAMES_READ_WHOLE) == []
    screenshot(page, w.dir, "laptop-1366x768")
    # the header stays in place while the clauses scroll under it
    page.evaluate("document.getElementById('matrix-wrap').scrollTo(0, 600)")
    head = page.locator("#matrix thead th.corner").bounding_box()
    wrap = page.locator("#matrix-wrap").bounding_box()
    assert abs(head["y"] - wrap["y"]) < 2
    assert page.evaluate(ROWS_IN_VIEW) >= 12
    page.click("#fold")
    expect(page.locator("#about")).to_be_visible()
    expect(page.locator("#about .meanings")).to_contain_text("diverges")
    screenshot(page, w.dir, "laptop-1366x768-details")


def test_a_large_screen(open_page):
    w = open_page("wide", FULL_HD)
    page = w.page
    expect(page.locator("#about")).to_be_visible()  # room enough: the details are shown
    assert page.evaluate(ROWS_IN_VIEW) >= 20
    assert page.evaluate(NAMES_READ_WHOLE) == []
    screenshot(page, w.dir, "full-hd-1920x1080")


def test_new_only_view_and_the_url_keep_the_filters(open_page, browser, pages):
    w = open_page("wide", LAPTOP)
    page = w.page
    page.locator("label.view.new").click()
    # only the failures no declaration acknowledges: two violations, a stale and an error
    visible = page.evaluate("() => Array.from(document.querySelectorAll('#matrix tbody td')).filter("
                            "td => td.offsetParent !== null && getComputedStyle(td).visibility !== 'hidden')"
                            ".map(td => td.className)")
    assert sorted(c.split()[0] for c in visible) == ["s-error", "s-stale", "s-violates", "s-violates"]
    assert all(" n" in f" {c} " for c in visible)
    assert len(w.visible_rows()) == 4
    expect(page.locator("#shown")).to_have_text(re.compile(r"showing 4 of \d+ clauses, 4 of \d+ columns"))
    assert "view=new" in page.url
    screenshot(page, w.dir, "new-only-1366x768")
    # the search finds adapters as well as clauses, and goes into the URL too
    page.locator("label.view", has_text="All").click()
    page.fill("#search", "torch.nn.Embedding ids.negative")
    expect(page.locator("#shown")).to_have_text(re.compile(r"showing 1 of \d+ clauses, 2 of \d+ columns"))
    assert [h.strip() for h in page.locator("#matrix th.adg:visible").evaluate_all(
        "ths => ths.map(th => th.dataset.name)")] == ["torch.nn.Embedding", "torch.nn.Embedding[sparse]"]
    page.wait_for_function("() => location.hash.includes('q=')")
    page.uncheck('#status-filter input[value="not_applicable"]')
    w.cell("ids.negative", "torch.nn.Embedding").click()
    url = page.url
    assert "q=torch.nn.Embedding" in url and "hide=not_applicable" in url and "cell=ids.negative" in url
    # the same URL opens the same view, and the same cell
    again = Watched(browser, pages["wide"], LAPTOP, "#" + url.split("#", 1)[1])
    try:
        p2 = again.page
        expect(p2.locator("#search")).to_have_value("torch.nn.Embedding ids.negative")
        expect(p2.locator('#status-filter input[value="not_applicable"]')).not_to_be_checked()
        expect(p2.locator("#detail")).to_be_visible()
        expect(p2.locator("#detail h2")).to_have_text("ids.negative")
        assert again.visible_rows() == ["ids.negative"]
        p2.keyboard.press("Escape")
        p2.wait_for_function("() => !location.hash.includes('cell=')")
    finally:
        again.close()
    page.keyboard.press("Escape")
    page.click("#reset")
    page.wait_for_function("() => location.hash === ''")


def test_the_panel_tells_the_truth(open_page):
    w = open_page("wide", LAPTOP)
    page = w.page
    panel = page.locator("#detail")
    names = page.evaluate("() => Array.from(document.querySelectorAll('#matrix th.adg')).map(th => th.dataset.name)")
    clauses = page.evaluate("() => Array.from(document.querySelectorAll('#matrix tr.cl')).map(tr => tr.dataset.id)")
    recs = {(r["adapter"], r["clause"]): r for r in wide_records()}
    new = next(k for k, r in recs.items() if r["status"] == "violates" and not r.get("acknowledged"))
    ack = next(k for k, r in recs.items() if r.get("acknowledged"))
    w.cell(new[1], new[0]).click()
    expect(panel.locator(".badge")).to_contain_text("no declaration acknowledges it")
    expect(panel.locator(".badge")).not_to_contain_text("acknowledged:")
    expect(panel.locator(".flag.new")).to_be_visible()
    screenshot(page, w.dir, "panel-violation-1366x768")
    w.cell(ack[1], ack[0]).click()
    expect(panel.locator(".badge")).to_contain_text("acknowledged: a known failure")
    expect(panel.locator(".flag.known")).to_be_visible()
    # a diverging cell whose values print alike shows their bits
    bits = next(k for k, r in recs.items() if r.get("observed"))
    w.cell(bits[1], bits[0]).click()
    table = panel.locator("table.bits")
    expect(table).to_be_visible()
    expect(table.locator("tr.d").first).to_contain_text("0x7c01")
    expect(table.locator("tr.d").first).to_contain_text("0x7e01")
    expect(panel).to_contain_text("1 of 2 elements differ in their bits")
    table.scroll_into_view_if_needed()
    screenshot(page, w.dir, "panel-diverges-bits-1366x768")
    assert len(names) == len(set(names)) and len(clauses) > 40

"""
The page is self-contained (no reference outside itself), escapes every user string, holds
every figure with unique ids, and is the same bytes for the same inputs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace
from html.parser import HTMLParser
from importlib import resources

import pytest

from capplan.report.build import Report
from capplan.report.figures import inline_svg, make_figures, to_svg
from capplan.report.html import SCRIPT, render_html, script_hash
from capplan.status import ExitStatus
from tests.report.conftest import CommandRun

HOSTILE = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'


class Elements(HTMLParser):
    """
    Every start tag with its attributes, every script's text.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def page(command_run: CommandRun) -> str:
    """The page `capplan report` wrote for the example."""
    assert ExitStatus.OK == command_run.status, command_run.stderr
    return command_run.page.read_text(encoding="utf-8")


def fake_svgs(report: Report) -> dict[str, str]:
    return {fid: f'<svg id="{fid}-x"></svg>' for fid in report.data.figure_ids}


class TestSelfContained:
    def test_no_url_at_all(self, page: str) -> None:
        """The page names no URL: no http:, https:, nor a scheme-relative //."""
        assert "http:" not in page
        assert "https:" not in page
        assert "//" not in page

    def test_references_are_local(self, page: str) -> None:
        """Every href is a fragment of the page itself; nothing has a src; CSS url() is local."""
        elements = parse(page)
        refs = [
            (tag, key, value)
            for tag, attrs in elements.tags
            for key, value in attrs.items()
            if key in ("href", "xlink:href", "src", "srcset", "action", "data", "poster")
        ]
        assert refs
        assert all(key in ("href", "xlink:href") for _, key, _ in refs)
        assert all(value is not None and value.startswith("#") for _, _, value in refs)
        assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*\)", page))
        assert "@import" not in page

    def test_policy_forbids_fetching(self, page: str) -> None:
        """The page's CSP allows nothing but inline styles and its own script (by hash)."""
        [policy] = [
            attrs["content"]
            for tag, attrs in parse(page).tags
            if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"
        ]
        assert policy is not None
        assert "default-src 'none'" in policy
        assert f"script-src {script_hash()};" in policy

    def test_script_hash_matches_the_script(self, page: str) -> None:
        """The one script in the page is the one whose hash the policy allows."""
        [script] = parse(page).scripts
        assert SCRIPT == script
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" == script_hash()


class TestFigures:
    def test_every_figure_has_its_svg(self, page: str, report: Report) -> None:
        """Each figure id has a <figure data-figure=ID> holding one <svg>, in page order."""
        ids = re.findall(r'<figure data-figure="([^"]+)"', page)
        assert list(report.data.figure_ids) == ids
        for fid, chunk in zip(ids, page.split("<figure data-figure=")[1:], strict=True):
            body = chunk[: chunk.index("</figure>")]
            assert 1 == body.count("<svg"), fid
            assert 1 == body.count("</svg>"), fid
        assert f'data-expected="{len(ids)}"' in page

    def test_ids_are_unique(self, page: str) -> None:
        """No id appears twice in the page, though every SVG comes from matplotlib."""
        ids = re.findall(r'\bid="([^"]+)"', page)
        assert len(ids) > 100
        assert len(ids) == len(set(ids))
        for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', page):
            assert ref in ids

    def test_numbers_shown_are_the_datas(self, page: str, report: Report) -> None:
        """The tables state each node's capacity and the plan's total cost; the header how the
        windows were read."""
        assert "(read as Poisson traffic, each node on its own)" in " ".join(page.split())
        for node in report.data.nodes:
            assert node.capacity_rps is not None
            assert f"{node.capacity_rps:.4g}" in page
        assert report.data.plan is not None
        assert report.data.plan.total_cost is not None
        assert f"{report.data.plan.total_cost:,.2f}" in page

    def test_inline_svg(self) -> None:
        """inline_svg drops the prolog, metadata and namespaces and prefixes every id."""
        svg = (
            '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n'
            '<svg xmlns:xlink="http://www.w3.org/1999/xlink" xmlns="http://www.w3.org/2000/svg">'
            '<metadata><rdf:RDF xmlns:dc="http://purl.org/dc/elements/1.1/"/></metadata>'
            '<defs><path id="m1"/><clipPath id="p2"/></defs>'
            '<use xlink:href="#m1"/><g clip-path="url(#p2)"/></svg>'
        )
        expected = (
            '<svg><defs><path id="f-m1"/><clipPath id="f-p2"/></defs>'
            '<use href="#f-m1"/><g clip-path="url(#f-p2)"/></svg>\n'
        )
        assert expected == inline_svg(svg, "f")
        with pytest.raises(ValueError, match="svg"):
            inline_svg("<html></html>", "f")
        with pytest.raises(ValueError, match="prefix"):
            inline_svg(svg, 'x" onload="alert(1)')


class TestEscaping:
    def test_user_strings_are_escaped(self, report: Report) -> None:
        """The cluster, the inventory path, a node name and the notes are escaped."""
        nodes = (replace(report.data.nodes[0], node=HOSTILE, warnings=(HOSTILE,)),)
        data = replace(
            report.data,
            cluster=HOSTILE,
            inventory=HOSTILE,
            notes=(HOSTILE,),
            nodes=nodes,
            split=None,
            plan=None,
        )
        page = render_html(data, {fid: "<svg></svg>" for fid in data.figure_ids})
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&lt;img src=x"
        assert page.count(escaped) >= 5  # title, heading, inventory, node, warning, note
        assert 1 == page.count("<script>")

    def test_svg_text_is_escaped(self, report: Report) -> None:
        """matplotlib escapes what it writes into the SVG (titles, legends, tick labels)."""
        node = replace(report.data.nodes[0], node=HOSTILE)
        data = replace(report.data, nodes=(node,), split=None, plan=None)
        [(_, figure)] = make_figures(data)
        svg = to_svg(figure, "fig1")
        assert "<script" not in svg
        assert "<img" not in svg
        assert "&lt;script&gt;alert" in svg

    def test_figures_must_match(self, report: Report) -> None:
        """A page is not written with a figure missing or one too many."""
        svgs = fake_svgs(report)
        del svgs["split"]
        with pytest.raises(ValueError, match="exactly the figures"):
            render_html(report.data, svgs)


class TestReproducible:
    def test_same_inputs_same_page(self, report: Report) -> None:
        """Rendering the same data twice gives the same bytes (no dates, fixed SVG ids)."""
        first = [to_svg(fig, "fig1") for _, fig in make_figures(report.data)[:2]]
        again = [to_svg(fig, "fig1") for _, fig in make_figures(report.data)[:2]]
        assert first == again
        assert render_html(report.data, fake_svgs(report)) == render_html(
            report.data, fake_svgs(report)
        )

    def test_page_is_the_core_calls(self, page: str, report: Report) -> None:
        """The command's page is the core call's data rendered (same SVGs, same HTML)."""
        from capplan.report.figures import figure_svgs

        assert render_html(report.data, figure_svgs(report.data)) == page


def test_template_is_package_data() -> None:
    """The template sits inside the package, so the wheel (packages = capplan) carries it."""
    template = resources.files("capplan.report") / "templates" / "report.html.j2"
    assert template.is_file()

"""The exported HTML logbook in Chromium: every image shows, and no comment runs as code."""

from __future__ import annotations

import httpx
from support import png

from elog_stream import Publisher

HOSTILE = [
    '<img src=x onerror="window.__ran = 1">',
    "<script>window.__ran = 2</script>",
    "</pre><svg onload=window.__ran=3>",
    "\"'><iframe src=javascript:window.__ran=4>",
]


def test_the_html_export_shows_every_image_and_runs_nothing(
    service, publisher: Publisher, page, tmp_path
) -> None:
    for n, comment in enumerate(HOSTILE):
        publisher.publish(f"export/{n}", "cxi-html", png(f"frame {n}", size=(80 + n, 40)), comment)
        pinned = publisher.pin(f"export/{n}", comment, author=f"<b>{n}</b>")
    retract = service.url + pinned.url + "/retract"
    assert httpx.post(retract, json={"reason": "<i>wrong</i>", "author": "QA"}).status_code == 200

    response = httpx.get(service.url + "api/logbook/cxi-html/export.html", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-disposition"].startswith("attachment;")
    path = tmp_path / "logbook.html"
    path.write_bytes(response.content)

    page.goto(path.as_uri())
    sizes = page.eval_on_selector_all(
        "article img", "images => images.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert sorted(width for _, width, _ in sizes) == [80, 81, 82, 83]
    assert all(complete and height == 40 for complete, _, height in sizes)
    assert page.evaluate("window.__ran") is None
    assert page.locator("script, iframe, svg, article img:not([src^='data:'])").count() == 0
    comments = page.locator("pre.comment").all_text_contents()
    assert sorted(comments) == sorted(HOSTILE)  # shown as the text they are
    assert page.locator("article.retracted").count() == 1
    retracted = page.locator("article.retracted .retraction").text_content()
    assert retracted is not None and "Retracted by QA" in retracted and "<i>wrong</i>" in retracted
    assert "Pinned by <b>3</b>" in (page.locator("article").first.text_content() or "")

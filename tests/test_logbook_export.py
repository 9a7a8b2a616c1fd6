"""The ZIP export over HTTP: each image once, by digest, and entries.json with every entry."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import httpx
from support import jpeg, png

from elog_stream import Publisher


def test_the_zip_holds_each_image_once_and_every_entry(service, publisher: Publisher) -> None:
    publisher.publish("zip/a", "cxi-zip", png("a"))
    first = publisher.pin("zip/a", "first", author="A")
    again = publisher.pin("zip/a", "same image again", author="B")
    publisher.publish("zip/b", "cxi-zip", jpeg(), "a JPEG")
    third = publisher.pin("zip/b", "a photo", author="C")
    retract = service.url + first.url + "/retract"
    assert httpx.post(retract, json={"reason": "dup", "author": "A"}).status_code == 200

    response = httpx.get(service.url + "api/logbook/cxi-zip/export.zip", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert 'filename="logbook-cxi-zip.zip"' in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        entries = json.loads(archive.read("entries.json"))
        names = sorted(archive.namelist())
        assert [e["id"] for e in entries] == [third.id, again.id, first.id]
        assert entries[2]["retracted"]["reason"] == "dup" and entries[1]["retracted"] is None
        assert entries[0]["file"] == f"images/{third.digest}.jpg"
        assert entries[1]["file"] == entries[2]["file"] == f"images/{first.digest}.png"
        assert names == sorted(["entries.json", entries[0]["file"], entries[1]["file"]])
        assert archive.read(entries[0]["file"]) == jpeg()
        assert archive.read(entries[1]["file"]) == png("a")
        for entry in entries:
            data = archive.read(entry["file"])
            assert hashlib.sha256(data).hexdigest() == entry["digest"] == entry["file"][7:71]
    empty = httpx.get(service.url + "api/logbook/nobody/export.zip", timeout=30)
    with zipfile.ZipFile(io.BytesIO(empty.content)) as archive:
        assert json.loads(archive.read("entries.json")) == []

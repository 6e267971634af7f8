"""XMP sidecars for photo libraries, read back by the tools the libraries use: ExifTool and exiv2.

Sidecars are written by `edgetag tag --xmp` and by the daemon, merged into sidecars that ExifTool and
exiv2 (digiKam's metadata library) wrote, and checked field by field with both readers: nothing the
user had may be lost. Hostile sidecars (an XML bomb, an external entity) are refused untouched, a
read-only folder is a clear error while the photo is still tagged, and a sidecar that another
program replaces at the same time is never torn.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest

from edgetag.config import FolderSourceConfig, parse_config
from edgetag.errors import ConfigError, SidecarError
from edgetag.tagger import Tagger
from edgetag.vocabulary import Description, Tag
from edgetag.xmp import keywords, sidecar_path, write_sidecar
from tests.broker import Broker, Subscriber
from tests.conftest import ROOT, SAMPLES
from tests.test_cli import edgetag
from tests.test_daemon import drop, folder_source, start_daemon, wait_events

__all__ = ["start_daemon"]  # a fixture, used by name

TOOLS = {"exiftool": "libimage-exiftool-perl", "exiv2": "exiv2"}


@pytest.fixture(scope="session", autouse=True)
def metadata_readers() -> None:
    """ExifTool and exiv2 must be there: installed with apt-get if missing (CI is Debian, as root).

    If they cannot be installed the tests fail: a skipped reader would hide a broken sidecar.
    """
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(install, capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:  # a fresh machine may not have the package lists yet
        subprocess.run(["apt-get", "update"], capture_output=True, env=environment, check=False)
        done = subprocess.run(install, capture_output=True, text=True, env=environment, check=False)
    still = [tool for tool in TOOLS if shutil.which(tool) is None]
    if still:
        pytest.fail(f"cannot install {', '.join(missing)} for {', '.join(still)}:\n{done.stderr[-2000:]}")


def exiftool(path: Path, *tags: str) -> dict[str, Any]:
    """ExifTool's reading of a sidecar: tag name -> value (lists for arrays)."""
    done = subprocess.run(
        ["exiftool", "-j", "-struct", *tags, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)[0]
    result.pop("SourceFile")
    return result


def exiftool_xmp(path: Path) -> dict[str, Any]:
    """Every XMP property ExifTool finds, by group and name ("XMP-xmp:Rating")."""
    done = subprocess.run(
        ["exiftool", "-j", "-G1", "-struct", "-XMP:all", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)[0]
    result.pop("SourceFile")
    return result


def exiv2(path: Path) -> dict[str, str]:
    """exiv2's reading of a sidecar: key -> value as it prints it (arrays joined by ", ")."""
    done = subprocess.run(["exiv2", "-PXkt", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", f"exiv2 complained: {done.stderr}"
    values = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        values[key] = value.strip()
    return values


def photo(folder: Path, sample: str, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or sample)
    shutil.copy(SAMPLES / sample, path)
    return path


def described(*tags: Tag) -> Description:
    return Description(tags=tags, people=0, faces=(), objects=())


# --- what a new sidecar says ------------------------------------------------------------------------


def test_tag_xmp_writes_alt_text_description_and_keywords_that_both_readers_see(tmp_path: Path) -> None:
    cat, people = photo(tmp_path, "chelsea.jpg"), photo(tmp_path, "two_people.jpg")
    run = edgetag("tag", "--xmp", cat, people)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        f"{cat}: Image may contain: cat",
        f"{people}: Image may contain: 2 people and people smiling",
    ]

    sidecar = tmp_path / "chelsea.jpg.xmp"
    assert exiftool(sidecar, "-XMP-iptcCore:AltTextAccessibility") == {
        "AltTextAccessibility": "Image may contain: cat"
    }
    read = exiv2(sidecar)
    assert read["Xmp.dc.description"] == 'lang="x-default" Image may contain: cat'
    assert read["Xmp.dc.subject"] == "cat, animal"
    assert read["Xmp.lr.hierarchicalSubject"] == "edgetag|animal|cat"
    assert read["Xmp.digiKam.TagsList"] == "edgetag/animal/cat"
    assert read["Xmp.xmp.CreatorTool"].startswith("edgetag ")
    assert read["Xmp.xmp.MetadataDate"].startswith(time.strftime("%Y-"))

    crowd = exiv2(tmp_path / "two_people.jpg.xmp")
    assert crowd["Xmp.dc.subject"] == "person, smiling", "a count is not a keyword"
    assert crowd["Xmp.lr.hierarchicalSubject"] == "edgetag|people|person, edgetag|people|smiling"
    assert crowd["Xmp.dc.description"] == 'lang="x-default" Image may contain: 2 people and people smiling'


def test_a_sidecar_says_nothing_about_faces_or_identity_and_holds_no_pixels(tmp_path: Path) -> None:
    people = photo(tmp_path, "two_people.jpg")
    assert edgetag("tag", "--xmp", people).returncode == 0
    sidecar = tmp_path / "two_people.jpg.xmp"
    text = sidecar.read_text(encoding="utf-8")
    assert len(text) < 4000
    assert set(exiftool_xmp(sidecar)) == {
        "XMP-x:XMPToolkit",
        "XMP-dc:Subject",
        "XMP-dc:Description",
        "XMP-iptcCore:AltTextAccessibility",
        "XMP-lr:HierarchicalSubject",
        "XMP-digiKam:TagsList",
        "XMP-xmp:CreatorTool",
        "XMP-xmp:MetadataDate",
        "XMP-edgetag:Keywords",
        "XMP-edgetag:Sentence",
    }, "words only: no faces, boxes, scores or thumbnails"
    for word in ("face", "box", "score", "gender", "base64", "thumbnail", "0.9"):
        assert word not in text.lower(), word


def test_stem_names_photo_xmp_and_folders_skip_sidecars(tmp_path: Path) -> None:
    cat = photo(tmp_path, "chelsea.jpg")
    assert edgetag("tag", "--xmp", "--xmp-name=stem", cat).returncode == 0
    assert (tmp_path / "chelsea.xmp").is_file() and not (tmp_path / "chelsea.jpg.xmp").exists()
    run = edgetag("tag", "--xmp", tmp_path)
    assert run.returncode == 0, "a sidecar in the folder is not a photo that cannot be read"
    assert run.stdout == f"{cat}: Image may contain: cat\n"
    assert (tmp_path / "chelsea.jpg.xmp").is_file()


def test_hierarchy_is_root_first_and_only_said_tags_are_keywords() -> None:
    said = keywords(
        described(
            Tag("person", 0.9, "people", 2),
            Tag("smiling", 0.8, "people", 1),
            Tag("rose", 0.7, "plant", parents=("flower", "plant")),
            Tag("dog", 0.6, "animal", 3, parents=("animal",)),
            Tag("cat", 0.55, "animal"),
            Tag("mountain", 0.5, "scene", said=False),
        )
    )
    assert said.hierarchical == [
        "edgetag|people|person",
        "edgetag|people|smiling",
        "edgetag|plant|flower|rose",
        "edgetag|animal|dog",
        "edgetag|animal|cat",
    ]
    assert said.tags_list[2] == "edgetag/plant/flower/rose"
    assert said.plain == ("person", "smiling", "rose", "flower", "plant", "dog", "animal", "cat")


# --- merging into what the user has --------------------------------------------------------------


def test_merging_into_an_exiftool_sidecar_keeps_everything_the_user_had(tmp_path: Path) -> None:
    cat = photo(tmp_path, "chelsea.jpg")
    sidecar = tmp_path / "chelsea.jpg.xmp"
    subprocess.run(
        ["exiftool", "-q", "-o", str(sidecar), "-XMP-dc:Subject=Holiday", "-XMP-dc:Subject=Ferien in Zürich",
         "-XMP-xmp:Rating=3", "-XMP-dc:Description=Mia on the sofa", "-XMP-dc:Creator=Anna",
         "-XMP-lr:HierarchicalSubject=Places|Zürich", "-XMP-photoshop:Headline=Sunday", str(cat)],
        check=True,
    )  # fmt: skip
    before = exiftool_xmp(sidecar)
    run = edgetag("tag", "--xmp", cat)
    assert run.returncode == 0, run.stderr
    after = exiftool_xmp(sidecar)
    for key, value in before.items():
        if key in ("XMP-dc:Subject", "XMP-lr:HierarchicalSubject"):
            assert after[key][: len(value)] == value, key
        else:
            assert after[key] == value, key
    assert after["XMP-dc:Subject"] == ["Holiday", "Ferien in Zürich", "cat", "animal"]
    assert after["XMP-lr:HierarchicalSubject"] == ["Places|Zürich", "edgetag|animal|cat"]
    assert after["XMP-dc:Description"] == "Mia on the sofa", "the user's description stays"
    assert after["XMP-iptcCore:AltTextAccessibility"] == "Image may contain: cat", "there was no alt text"
    assert exiv2(sidecar)["Xmp.xmp.Rating"] == "3"

    again = edgetag("tag", "--xmp", cat)
    assert again.returncode == 0
    assert _without_dates(exiftool_xmp(sidecar)) == _without_dates(after), "a second run changes nothing"

    forced = edgetag("tag", "--xmp", "--overwrite-description", cat)
    assert forced.returncode == 0
    assert exiftool(sidecar, "-XMP-dc:Description")["Description"] == "Image may contain: cat"
    assert exiftool(sidecar, "-XMP-xmp:Rating")["Rating"] == 3


def _without_dates(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != "XMP-xmp:MetadataDate"}


def test_merging_into_an_exiv2_digikam_sidecar_keeps_its_tags_and_attributes(tmp_path: Path) -> None:
    """digiKam writes sidecars through exiv2: simple properties as attributes, tags as paths."""
    cat = photo(tmp_path, "chelsea.jpg")
    exiv2_copy = photo(tmp_path / "exiv2", "chelsea.jpg")
    commands = [
        "set Xmp.digiKam.TagsList XmpBag People/Family", "set Xmp.digiKam.TagsList XmpBag Places/Berlin",
        "set Xmp.lr.hierarchicalSubject XmpBag People|Family", "set Xmp.dc.subject XmpBag Family",
        "set Xmp.xmp.Rating 4", "set Xmp.digiKam.ColorLabel 2", "set Xmp.dc.title LangAlt Mia",
        "set Xmp.xmp.CreatorTool digiKam-8.2.0",
    ]  # fmt: skip
    subprocess.run(["exiv2", *(f"-M{c}" for c in commands), str(exiv2_copy)], check=True)
    subprocess.run(["exiv2", "-eX", str(exiv2_copy)], check=True)  # writes chelsea.xmp beside it
    sidecar = tmp_path / "chelsea.jpg.xmp"
    shutil.copy(exiv2_copy.with_suffix(".xmp"), sidecar)
    assert 'xmp:Rating="4"' in sidecar.read_text(encoding="utf-8"), "exiv2 writes attributes"
    before = exiv2(sidecar)

    assert edgetag("tag", "--xmp", cat).returncode == 0
    after = exiv2(sidecar)
    for key, value in before.items():
        assert after[key].startswith(value), key
    assert after["Xmp.digiKam.TagsList"] == "People/Family, Places/Berlin, edgetag/animal/cat"
    assert after["Xmp.lr.hierarchicalSubject"] == "People|Family, edgetag|animal|cat"
    assert after["Xmp.dc.subject"] == "Family, cat, animal"
    assert after["Xmp.xmp.CreatorTool"] == "digiKam-8.2.0", "not edgetag's to change"
    assert after["Xmp.dc.description"] == 'lang="x-default" Image may contain: cat'


def test_only_what_edgetag_wrote_is_replaced(tmp_path: Path) -> None:
    """A new run (other models, other thresholds) replaces edgetag's words; the user's stay, even
    where they are the same words."""
    cat = photo(tmp_path, "chelsea.jpg")
    sidecar = tmp_path / "chelsea.jpg.xmp"
    subprocess.run(
        ["exiftool", "-q", "-o", str(sidecar), "-XMP-dc:Subject=dog", "-XMP-dc:Subject=Garten", str(cat)],
        check=True,
    )
    write_sidecar(cat, described(Tag("dog", 0.9, "animal"), Tag("cat", 0.8, "animal")))
    first = exiv2(sidecar)
    assert first["Xmp.dc.subject"] == "dog, Garten, cat"
    assert first["Xmp.dc.description"] == 'lang="x-default" Image may contain: dog and cat'

    # The user edits the alt text by hand; edgetag's description is still edgetag's.
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP-iptcCore:AltTextAccessibility=Mia and Rex",
            str(sidecar),
        ],
        check=True,
    )
    write_sidecar(cat, described(Tag("bird", 0.7, "animal")))
    second = exiv2(sidecar)
    assert second["Xmp.dc.subject"] == "dog, Garten, bird", "the user's own dog stays, edgetag's cat goes"
    assert second["Xmp.lr.hierarchicalSubject"] == "edgetag|animal|bird"
    assert second["Xmp.dc.description"] == 'lang="x-default" Image may contain: bird'
    assert exiftool(sidecar, "-XMP-iptcCore:AltTextAccessibility") == {"AltTextAccessibility": "Mia and Rex"}

    write_sidecar(cat, described())  # nothing confident: edgetag's words go, nothing else
    third = exiv2(sidecar)
    assert third["Xmp.dc.subject"] == "dog, Garten"
    assert "Xmp.lr.hierarchicalSubject" not in third and "Xmp.dc.description" not in third
    assert exiftool(sidecar, "-XMP-iptcCore:AltTextAccessibility") == {"AltTextAccessibility": "Mia and Rex"}


def test_non_ascii_names_descriptions_and_keywords_round_trip(tmp_path: Path) -> None:
    cat = photo(tmp_path / "Fotos 2026", "chelsea.jpg", "Kätzchen 猫 ☀.jpg")
    sidecar = cat.with_name(cat.name + ".xmp")
    subprocess.run(
        ["exiftool", "-q", "-o", str(sidecar), "-XMP-dc:Subject=Zürich", "-XMP-dc:Subject=東京",
         "-XMP-dc:Description=Überraschung — 猫 auf dem Sofa ☀", str(cat)],
        check=True,
    )  # fmt: skip
    run = edgetag("tag", "--xmp", cat)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{cat}: Image may contain: cat\n"
    read = exiv2(sidecar)
    assert read["Xmp.dc.subject"] == "Zürich, 東京, cat, animal"
    assert read["Xmp.dc.description"] == 'lang="x-default" Überraschung — 猫 auf dem Sofa ☀'
    assert exiftool(sidecar, "-XMP-dc:Description") == {"Description": "Überraschung — 猫 auf dem Sofa ☀"}


def test_a_new_sidecar_is_readable_like_its_photo_and_a_merged_one_keeps_its_mode(tmp_path: Path) -> None:
    """The service runs with UMask=0077: a sidecar only it could read would be useless to the library."""
    old = os.umask(0o077)
    try:
        cat = photo(tmp_path, "chelsea.jpg")
        cat.chmod(0o664)
        written = write_sidecar(cat, described(Tag("cat", 0.9, "animal")))
        assert stat.S_IMODE(written.stat().st_mode) == 0o664
        written.chmod(0o640)
        write_sidecar(cat, described(Tag("dog", 0.9, "animal")))
        assert stat.S_IMODE(written.stat().st_mode) == 0o640
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea.jpg", "chelsea.jpg.xmp"], (
        "no temp files left"
    )


# --- hostile and broken sidecars ----------------------------------------------------------------


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&lol9;</dc:title>
</rdf:Description></rdf:RDF></x:xmpmeta>
"""


def external_entity(target: Path) -> str:
    return f"""<?xml version="1.0"?>
<!DOCTYPE x:xmpmeta [ <!ENTITY secret SYSTEM "file://{target}"> ]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&secret;</dc:title>
</rdf:Description></rdf:RDF></x:xmpmeta>
"""


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (BILLION_LAUGHS, "it has a DTD"),
        ("external", "it has a DTD"),
        ("shopping list: milk, eggs\n", "is not valid XMP"),
        ("<html><body>not XMP</body></html>", "no rdf:RDF in it"),
        ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF', "is not valid XMP"),
    ],
    ids=["billion-laughs", "external-entity", "not-xml", "not-xmp", "truncated"],
)
def test_a_sidecar_that_is_not_valid_xmp_is_left_untouched_and_named(
    tmp_path: Path, content: str, says: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-4711\n", encoding="utf-8")
    cat = photo(tmp_path, "chelsea.jpg")
    sidecar = tmp_path / "chelsea.jpg.xmp"
    sidecar.write_text(external_entity(secret) if content == "external" else content, encoding="utf-8")
    before = sidecar.read_bytes(), sidecar.stat().st_mtime_ns

    started = time.monotonic()
    run = edgetag("tag", "--xmp", "--json", cat)
    assert time.monotonic() - started < 60
    assert run.returncode == 1, "the sidecar failed, so the run did"
    assert json.loads(run.stdout)["sentence"] == "Image may contain: cat", "the photo is still tagged"
    assert f"edgetag: {cat}: sidecar {sidecar}: " in run.stderr
    assert says in run.stderr and "left untouched" in run.stderr
    assert "TOPSECRET" not in run.stdout + run.stderr
    assert (sidecar.read_bytes(), sidecar.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chelsea.jpg", "chelsea.jpg.xmp", "secret.txt"]


def test_an_external_entity_is_never_opened(tmp_path: Path) -> None:
    """The entity names a FIFO: opening it would block until a writer comes, so resolving it hangs."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cat = photo(tmp_path, "chelsea.jpg")
    sidecar = tmp_path / "chelsea.jpg.xmp"
    sidecar.write_text(external_entity(fifo), encoding="utf-8")
    outcome: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(outcome, cat), daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock it before failing
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "w") as writer:  # noqa: PTH123
            writer.write("x")
        pytest.fail("the external entity was opened")
    assert len(outcome) == 1 and isinstance(outcome[0], SidecarError)
    assert sidecar.read_text(encoding="utf-8") == external_entity(fifo)


def _capture(outcome: list[BaseException], cat: Path) -> None:
    try:
        write_sidecar(cat, described(Tag("cat", 0.9, "animal")))
    except BaseException as error:
        outcome.append(error)


def test_a_read_only_folder_is_a_clear_error_and_the_photo_is_still_tagged(tmp_path: Path) -> None:
    folder = tmp_path / "library"
    cat = photo(folder, "chelsea.jpg")
    folder.chmod(0o555)
    # Root may write anywhere: run edgetag without the capabilities that allow it.
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        run = subprocess.run(
            [*prefix, sys.executable, "-m", "edgetag", "tag", "--xmp", str(cat)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        folder.chmod(0o755)
    assert run.returncode == 1
    assert run.stdout == f"{cat}: Image may contain: cat\n"
    assert f"sidecar {folder / 'chelsea.jpg.xmp'}: cannot write in {folder}: permission denied" in run.stderr
    assert [p.name for p in folder.iterdir()] == ["chelsea.jpg"]


def test_a_sidecar_replaced_by_another_program_at_the_same_time_is_never_torn(tmp_path: Path) -> None:
    """Another program rewrites the sidecar (atomically, like digiKam and ExifTool) in a loop while
    edgetag merges into it and a reader keeps reading it: every read is one whole, valid sidecar."""
    cat = photo(tmp_path, "chelsea.jpg")
    sidecar = sidecar_path(cat)
    subprocess.run(["exiftool", "-q", "-o", str(sidecar), "-XMP-xmp:Rating=1", str(cat)], check=True)
    template = sidecar.read_text(encoding="utf-8")
    stop = threading.Event()
    problems: list[str] = []
    rewrites = [0]

    def other_program() -> None:
        while not stop.is_set():
            rewrites[0] += 1
            text = template.replace(
                "<xmp:Rating>1</xmp:Rating>", f"<xmp:Rating>{rewrites[0] % 5}</xmp:Rating>"
            )
            temporary = tmp_path / f".other-{rewrites[0]}.tmp"
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(sidecar)

    def reader() -> None:
        while not stop.is_set():
            data = sidecar.read_bytes()
            try:
                SafeET.fromstring(data, forbid_dtd=True)
            except SafeET.ParseError as error:
                problems.append(f"{error}: {data[-200:]!r}")
            if not data.rstrip().endswith(b"<?xpacket end='w'?>") and not data.rstrip().endswith(
                b'<?xpacket end="w"?>'
            ):
                problems.append(f"not a whole packet: {data[-200:]!r}")

    threads = [threading.Thread(target=other_program), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    written = conflicts = 0
    try:
        for _ in range(40):
            try:
                write_sidecar(cat, described(Tag("cat", 0.9, "animal")))
                written += 1
            except SidecarError as error:
                assert "kept replacing it" in str(error)
                conflicts += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert problems == []
    assert written > 0 and rewrites[0] > 40
    write_sidecar(cat, described(Tag("cat", 0.9, "animal")))
    final = exiv2(sidecar)
    assert final["Xmp.xmp.Rating"] == str(rewrites[0] % 5), "the other program's last change is kept"
    assert final["Xmp.dc.subject"] == "cat"


def test_the_same_photo_version_is_written_once(tmp_path: Path, tagger: Tagger) -> None:
    cat = photo(tmp_path, "chelsea.jpg")
    description = tagger.tag_file(cat).description
    sidecar = write_sidecar(cat, description, photo_id="abc")
    first = sidecar.read_bytes(), sidecar.stat().st_mtime_ns
    time.sleep(0.01)
    write_sidecar(cat, description, photo_id="abc")
    assert (sidecar.read_bytes(), sidecar.stat().st_mtime_ns) == first
    write_sidecar(cat, description, photo_id="def")
    assert sidecar.read_bytes() != first[0], "a new version of the photo is written again"


# --- the daemon ---------------------------------------------------------------------------------


def test_config_refuses_xmp_with_after_delete_or_move() -> None:
    base = {"type": "folder", "name": "library", "path": "/srv/photos", "xmp": True}
    for after, words in (("delete", "deleted, leaving its sidecar"), ("move", "moved away from its sidecar")):
        extra = {"move_to": "/srv/done"} if after == "move" else {}
        with pytest.raises(ConfigError) as caught:
            parse_config({"source": [{**base, "after": after, **extra}]}, "test")
        assert f'source[1].xmp: cannot be used with after = "{after}": each photo would be {words}' in str(
            caught.value
        )
    with pytest.raises(ConfigError, match=r"source\[1\].xmp_name: only used with xmp = true"):
        parse_config({"source": [{**base, "xmp": False, "xmp_name": "stem"}]}, "test")
    config = parse_config({"source": [{**base, "xmp_name": "stem"}]}, "test")
    assert config.sources[0].xmp_name == "stem"  # type: ignore[union-attr]


def test_daemon_writes_each_sidecar_once_before_the_photo_is_done(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    library = tmp_path / "library"
    coffee = photo(library, "coffee.jpg")
    user_sidecar = sidecar_path(coffee)
    subprocess.run(
        ["exiftool", "-q", "-o", str(user_sidecar), "-XMP-dc:Subject=Frühstück", "-XMP-xmp:Rating=5",
         str(coffee)],
        check=True,
    )  # fmt: skip
    state = tmp_path / "state"
    subscriber = Subscriber(broker, "edgetag/pi/#")
    daemon = start_daemon(broker, state=state, sources=[folder_source(library, xmp=True)])
    drop(library, "chelsea.jpg")
    tagged = wait_events(subscriber, 2, topic="edgetag/pi/events/inbox")
    assert sorted(e["photo"]["name"] for e in tagged) == ["chelsea.jpg", "coffee.jpg"]
    read = exiv2(library / "chelsea.jpg.xmp")
    assert read["Xmp.dc.subject"] == "cat, animal"
    assert exiftool(library / "chelsea.jpg.xmp", "-XMP-iptcCore:AltTextAccessibility") == {
        "AltTextAccessibility": "Image may contain: cat"
    }
    merged = exiv2(user_sidecar)
    assert merged["Xmp.dc.subject"] == "Frühstück, coffee, drink"
    assert merged["Xmp.xmp.Rating"] == "5"
    time.sleep(1.5)  # the sidecars' own arrival must not be taken for photos
    assert [m.topic for m in subscriber.messages if m.topic == "edgetag/pi/errors"] == []
    assert daemon.stop() == 0

    written = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in library.glob("*.xmp")}
    assert sorted(written) == ["chelsea.jpg.xmp", "coffee.jpg.xmp"]
    again = start_daemon(broker, state=state, sources=[folder_source(library, xmp=True)])
    drop(library, "cat2.jpg", "chelsea.jpg")
    wait_events(subscriber, 3, topic="edgetag/pi/events/inbox")
    assert again.stop() == 0
    now = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in library.glob("*.xmp")}
    assert sorted(now) == ["cat2.jpg.xmp", "chelsea.jpg.xmp", "coffee.jpg.xmp"]
    assert {name: now[name] for name in written} == written, "done photos' sidecars are not written again"
    assert len(events(subscriber)) == 3


def events(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [m.json() for m in subscriber.messages if m.topic == "edgetag/pi/events/inbox"]


@pytest.fixture
def read_only_library(tmp_path: Path) -> Iterator[Path]:
    """A library folder edgetag may read but not write: a read-only mount as root (which may write
    anywhere else), a folder without write permission otherwise."""
    library = tmp_path / "library"
    library.mkdir()
    if os.geteuid() != 0:
        photo(library, "chelsea.jpg")
        library.chmod(0o555)
        yield library
        library.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(library)], check=True)
    try:
        photo(library, "chelsea.jpg")
        subprocess.run(["mount", "-o", "remount,ro", str(library)], check=True)
        yield library
    finally:
        subprocess.run(["umount", "-l", str(library)], check=False)


def test_daemon_publishes_a_photo_whose_sidecar_cannot_be_written(
    broker: Broker, read_only_library: Path, start_daemon: Any
) -> None:
    subscriber = Subscriber(broker, "edgetag/pi/#")
    start_daemon(broker, sources=[folder_source(read_only_library, xmp=True)])
    (event,) = wait_events(subscriber, 1, topic="edgetag/pi/events/inbox")
    assert event["sentence"] == "Image may contain: cat"
    (error,) = wait_events(subscriber, 1, topic="edgetag/pi/errors")
    assert error["reason"] == "sidecar-failed" and error["photo"] == "chelsea.jpg"
    assert error["message"].startswith(f"sidecar {read_only_library / 'chelsea.jpg.xmp'}: cannot write in")
    assert "read-only file system" in error["message"] or "permission denied" in error["message"]
    assert [p.name for p in read_only_library.iterdir()] == ["chelsea.jpg"]


def test_the_documented_library_configs_are_valid() -> None:
    """docs/photo-library.md's example and the installer template's (uncommented) library source."""
    guide = (ROOT / "docs" / "photo-library.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```toml\n(.*?)```", guide, re.DOTALL)
    (source,) = parse_config(tomllib.loads(example), "docs/photo-library.md").sources
    assert isinstance(source, FolderSourceConfig) and source.xmp and source.after == "keep"
    template = (ROOT / "systemd" / "edgetag.toml").read_text(encoding="utf-8")
    block = template.split('# name = "library"', 1)
    start = block[0].rindex("# [[source]]")
    lines = (block[0][start:] + '# name = "library"' + block[1]).split("\n\n", 1)[0]
    uncommented = "\n".join(line.removeprefix("# ") for line in lines.splitlines())
    (source,) = parse_config(tomllib.loads(uncommented), "systemd/edgetag.toml").sources
    assert isinstance(source, FolderSourceConfig) and source.xmp

"""XMP sidecars for photo libraries (digiKam, Immich, PhotoPrism): alt text and keywords beside a photo.

`write_sidecar(photo, description)` writes `photo.jpg.xmp` (or `photo.xmp`) with the sentence as alt
text and description and the said concepts as flat and hierarchical keywords. A sidecar that exists
is merged, never replaced: what the user or another program wrote stays, and only what edgetag wrote
before is replaced. edgetag recognises its own part by a record in its own namespace (the plain
keywords it added, the sentence it wrote, the photo version it wrote them for) and by its subtree
`edgetag|...` of hierarchical keywords. A description the user wrote is kept unless
`overwrite_description` is set.

Safety: the XML is parsed with defusedxml and no DTD at all (XMP never has one), so entity bombs and
external entities are refused before anything is expanded or fetched; a sidecar that is not XMP is
left untouched. The new version is written to a temporary file in the same folder, synced and renamed
over the old one, so a reader (or a crash) only ever sees a whole file; if another program replaced
the sidecar meanwhile, edgetag merges again into that version instead of losing its change.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import xml.etree.ElementTree as ET  # building and serialising only; parsing goes through defusedxml
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Literal

import defusedxml
import defusedxml.ElementTree as SafeET

from edgetag import __version__
from edgetag.errors import SidecarError
from edgetag.vocabulary import Description, Tag

NameStyle = Literal["ext", "stem"]
"""`ext`: photo.jpg.xmp (digiKam, Immich, darktable); `stem`: photo.xmp (Lightroom, Immich, PhotoPrism)."""
NAME_STYLES: tuple[NameStyle, ...] = ("ext", "stem")

ROOT_KEYWORD = "edgetag"
"""Every hierarchical keyword edgetag writes lives under this one: edgetag|animal|dog."""
MAX_SIDECAR_BYTES = 16 * 1024 * 1024
ATTEMPTS = 3

X = "adobe:ns:meta/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML = "http://www.w3.org/XML/1998/namespace"
DC = "http://purl.org/dc/elements/1.1/"
XMP = "http://ns.adobe.com/xap/1.0/"
IPTC_CORE = "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/"
LIGHTROOM = "http://ns.adobe.com/lightroom/1.0/"
DIGIKAM = "http://www.digikam.org/ns/1.0/"
EDGETAG = "https://github.com/edgetag/edgetag/ns/xmp/1.0/"

PREFIXES = {
    X: "x",
    RDF: "rdf",
    DC: "dc",
    XMP: "xmp",
    IPTC_CORE: "Iptc4xmpCore",
    LIGHTROOM: "lr",
    DIGIKAM: "digiKam",
    EDGETAG: "edgetag",
}


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


DESCRIPTION = _q(RDF, "Description")
LI = _q(RDF, "li")
ABOUT = _q(RDF, "about")
LANG = _q(XML, "lang")
CONTAINERS = {_q(RDF, "Bag"), _q(RDF, "Seq"), _q(RDF, "Alt")}
DC_SUBJECT = _q(DC, "subject")
DC_DESCRIPTION = _q(DC, "description")
ALT_TEXT = _q(IPTC_CORE, "AltTextAccessibility")
LR_HIERARCHY = _q(LIGHTROOM, "hierarchicalSubject")
DIGIKAM_TAGS = _q(DIGIKAM, "TagsList")
CREATOR_TOOL = _q(XMP, "CreatorTool")
METADATA_DATE = _q(XMP, "MetadataDate")
OWN_KEYWORDS = _q(EDGETAG, "Keywords")  # the plain dc:subject entries edgetag added (not the user's)
OWN_SENTENCE = _q(EDGETAG, "Sentence")  # the alt text / description edgetag wrote last
OWN_PHOTO = _q(EDGETAG, "Photo")  # which version of the photo that was (the daemon's event id)
TOOL = f"edgetag {__version__}"


@dataclass(frozen=True)
class Keywords:
    """What edgetag says as keywords: plain words and root-first paths (edgetag, animal, dog)."""

    plain: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]

    @property
    def hierarchical(self) -> list[str]:
        """lr:hierarchicalSubject form."""
        return ["|".join(path) for path in self.paths]

    @property
    def tags_list(self) -> list[str]:
        """digiKam:TagsList form."""
        return ["/".join(path) for path in self.paths]


def keywords(description: Description) -> Keywords:
    """The said tags as keywords: each concept with its ancestor concepts, and one path per tag.

    A path is edgetag, the concept's group (animal, vehicle, people...), its ancestors from the root,
    then the concept: edgetag|animal|dog, edgetag|plant|flower|rose, edgetag|people|person,
    edgetag|people|smiling. Counts are not keywords.
    """
    plain: list[str] = []
    paths: list[tuple[str, ...]] = []
    for tag in description.said:
        for word in (tag.concept, *tag.parents):
            if word not in plain:
                plain.append(word)
        path = _path(tag)
        if path not in paths:
            paths.append(path)
    return Keywords(tuple(plain), tuple(paths))


def _path(tag: Tag) -> tuple[str, ...]:
    chain = [*reversed(tag.parents), tag.concept]
    if tag.group and chain[0] != tag.group:
        chain.insert(0, tag.group)
    return (ROOT_KEYWORD, *(word.replace("|", " ").replace("/", " ") for word in chain))


def sidecar_path(photo: Path, name_style: NameStyle = "ext") -> Path:
    """photo.jpg -> photo.jpg.xmp (`ext`) or photo.xmp (`stem`)."""
    if name_style == "stem":
        return photo.with_suffix(".xmp")
    return photo.with_name(f"{photo.name}.xmp")


def is_sidecar_name(name: str) -> bool:
    """Sidecars are never photos: folder listings leave them out."""
    return name.lower().endswith(".xmp")


def write_sidecar(
    photo: Path,
    description: Description,
    *,
    name_style: NameStyle = "ext",
    overwrite_description: bool = False,
    photo_id: str | None = None,
) -> Path:
    """Write or merge the photo's sidecar; returns its path. Raises SidecarError, leaving it untouched.

    With `photo_id`, a sidecar that already holds edgetag's words for that photo version is left as
    it is: the daemon may offer a photo again after a crash, and must not write it twice.
    """
    target = sidecar_path(photo, name_style)
    for _ in range(ATTEMPTS):
        seen, data = _read(target)
        document = _Document.parse(data, target) if data is not None else _Document.new()
        if photo_id is not None and document.simple(OWN_PHOTO) == photo_id:
            return target
        document.merge(keywords(description), description, overwrite_description, photo_id)
        mode, owner = _mode_and_owner(seen, photo)
        if _replace(target, document.serialize(), seen, mode, owner):
            return target
    raise SidecarError(
        target, f"another program kept replacing it while edgetag wrote it ({ATTEMPTS} tries); left as it is"
    )


# --- reading and writing the file -----------------------------------------------------------------


def _read(target: Path) -> tuple[os.stat_result | None, bytes | None]:
    """The sidecar's identity (to notice a concurrent replace) and bytes; (None, None) if there is none."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return None, None
    except OSError as error:
        raise SidecarError(target, f"cannot read it: {_why(error)}") from error
    if stat.S_ISLNK(info.st_mode):
        raise SidecarError(target, "is a symbolic link; edgetag does not write through links")
    if not stat.S_ISREG(info.st_mode):
        raise SidecarError(target, "is not a regular file")
    if info.st_size > MAX_SIDECAR_BYTES:
        raise SidecarError(target, f"is {info.st_size} bytes, too large to be an XMP sidecar; left untouched")
    try:
        with target.open("rb") as handle:
            opened = os.fstat(handle.fileno())
            data = handle.read(MAX_SIDECAR_BYTES + 1)
    except OSError as error:
        raise SidecarError(target, f"cannot read it: {_why(error)}") from error
    return opened, data


def _mode_and_owner(seen: os.stat_result | None, photo: Path) -> tuple[int, tuple[int, int] | None]:
    """A merged sidecar keeps its mode and owner; a new one gets the photo's (readable like it, not 0600
    because the service's umask is 0077)."""
    if seen is not None:
        return stat.S_IMODE(seen.st_mode), (seen.st_uid, seen.st_gid)
    try:
        return stat.S_IMODE(photo.stat().st_mode) & 0o666, None
    except OSError:
        return 0o644, None


def _same_file(now: os.stat_result | None, seen: os.stat_result | None) -> bool:
    if now is None or seen is None:
        return now is seen
    return (now.st_ino, now.st_dev, now.st_size, now.st_mtime_ns) == (
        seen.st_ino,
        seen.st_dev,
        seen.st_size,
        seen.st_mtime_ns,
    )


def _replace(
    target: Path, payload: bytes, seen: os.stat_result | None, mode: int, owner: tuple[int, int] | None
) -> bool:
    """Temporary file in the same folder, fsync, rename over the sidecar, fsync the folder.

    False (nothing changed) if the sidecar is no longer the version that was merged into.
    """
    folder = target.parent
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".edgetag-tmp", dir=folder)
    except OSError as error:
        raise SidecarError(target, f"cannot write in {folder}: {_why(error)}") from error
    try:
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(payload)
                out.flush()
                os.fchmod(out.fileno(), mode)
                if owner is not None:
                    with contextlib.suppress(OSError):  # only root may give a file away; fine otherwise
                        os.fchown(out.fileno(), *owner)
                os.fsync(out.fileno())
            try:
                now: os.stat_result | None = target.lstat()
            except FileNotFoundError:
                now = None
            if not _same_file(now, seen):
                return False
            Path(temporary).replace(target)
            temporary = ""
            _sync_folder(folder)
        except OSError as error:
            raise SidecarError(target, f"cannot write it: {_why(error)}") from error
    finally:
        if temporary:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
    return True


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _why(error: OSError) -> str:
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (edgetag may not write there)"
    if error.errno == errno.EROFS:
        return "read-only file system (edgetag may not write there)"
    return error.strerror or str(error)


# --- the XMP document -----------------------------------------------------------------------------


class _Document:
    """An XMP packet as an element tree: top-level rdf:Description elements hold the properties."""

    def __init__(self, root: ET.Element, rdf: ET.Element, prefixes: dict[str, str]) -> None:
        self.root, self.rdf, self.prefixes = root, rdf, prefixes
        if not self.descriptions:
            ET.SubElement(rdf, DESCRIPTION, {ABOUT: ""})

    @classmethod
    def new(cls) -> _Document:
        root = ET.Element(_q(X, "xmpmeta"), {_q(X, "xmptk"): TOOL})
        return cls(root, ET.SubElement(root, _q(RDF, "RDF")), {})

    @classmethod
    def parse(cls, data: bytes, target: Path) -> _Document:
        """Parse without a DTD, entities or external references; anything else is not XMP."""
        if len(data) > MAX_SIDECAR_BYTES:
            raise SidecarError(target, "is too large to be an XMP sidecar; left untouched")
        prefixes: dict[str, str] = {}
        try:
            events = SafeET.iterparse(BytesIO(data), events=("start-ns",), forbid_dtd=True)
            for _event, (prefix, uri) in events:
                prefixes.setdefault(uri, prefix)
            root = events.root  # type: ignore[attr-defined]
        except defusedxml.DTDForbidden:
            raise SidecarError(
                target,
                "is not valid XMP (it has a DTD, which XMP never has: maybe an XML bomb); left untouched",
            ) from None
        except (defusedxml.DefusedXmlException, ET.ParseError, ValueError) as error:
            raise SidecarError(target, f"is not valid XMP ({error}); left untouched") from None
        rdf = root if root.tag == _q(RDF, "RDF") else None
        if root.tag == _q(X, "xmpmeta") or root.tag == _q(X, "xapmeta"):
            rdf = root.find(_q(RDF, "RDF"))
        if rdf is None:
            raise SidecarError(
                target, f"is not valid XMP (no rdf:RDF in it; root {root.tag}); left untouched"
            )
        return cls(root, rdf, prefixes)

    @property
    def descriptions(self) -> list[ET.Element]:
        return self.rdf.findall(DESCRIPTION)

    # --- reading properties, wherever they are (element or attribute, any Description) -------------

    def simple(self, name: str) -> str | None:
        for description in self.descriptions:
            if name in description.attrib:
                return description.attrib[name]
            element = description.find(name)
            if element is not None:
                return (element.text or "").strip()
        return None

    def _elements(self, name: str) -> list[tuple[ET.Element, ET.Element]]:
        return [(d, e) for d in self.descriptions for e in d.findall(name)]

    def items(self, name: str) -> list[str]:
        """An array property's items (rdf:Bag, Seq or Alt); a bare text value counts as one item."""
        found: list[str] = []
        for description in self.descriptions:
            if name in description.attrib:
                found.append(description.attrib[name])
        for _description, element in self._elements(name):
            found += _element_items(element)
        return found

    # --- writing properties -------------------------------------------------------------------------

    @property
    def target(self) -> ET.Element:
        """Where new properties go: the first rdf:Description."""
        return self.descriptions[0]

    def remove(self, name: str) -> None:
        for description in self.descriptions:
            description.attrib.pop(name, None)
            for element in description.findall(name):
                description.remove(element)

    def set_simple(self, name: str, value: str) -> None:
        """Change the value where it is (attribute or element), else add it as an element."""
        for description in self.descriptions:
            if name in description.attrib:
                description.attrib[name] = value
                return
            element = description.find(name)
            if element is not None:
                element.clear()
                element.text = value
                return
        ET.SubElement(self.target, name).text = value

    def set_items(self, name: str, keep: Sequence[str], add: Sequence[str], kind: str = "Bag") -> None:
        """Keep the items in `keep` (in the user's own container, a Seq say), then append `add`.

        A property that ends up empty is removed.
        """
        home: ET.Element | None = None
        values: list[str] = []
        for description in self.descriptions:
            if description.attrib.get(name, "").strip() in keep:
                values.append(description.attrib[name].strip())
            description.attrib.pop(name, None)
        for description, element in self._elements(name):
            container = _container(element)
            if home is None and container is not None:
                home = container
                for li in container.findall(LI):
                    if (li.text or "").strip() not in keep:
                        container.remove(li)
                continue
            values += [item for item in _element_items(element) if item in keep]
            description.remove(element)
        values += add
        if values:
            if home is None:
                home = ET.SubElement(ET.SubElement(self.target, name), _q(RDF, kind))
            for value in values:
                ET.SubElement(home, LI).text = value
        if home is not None and not home.findall(LI):
            self._drop(name, home)

    def _drop(self, name: str, container: ET.Element) -> None:
        for description, element in self._elements(name):
            if _container(element) is container:
                description.remove(element)

    def lang_alt(self, name: str) -> str | None:
        """The default-language value of a language alternative (x-default, else the first)."""
        for _description, element in self._elements(name):
            container = _container(element)
            if container is None:
                return (element.text or "").strip() or None
            items = container.findall(LI)
            default = [li for li in items if li.get(LANG) == "x-default"] or items
            if default:
                return (default[0].text or "").strip()
        for description in self.descriptions:
            if name in description.attrib:
                return description.attrib[name]
        return None

    def set_lang_alt(self, name: str, value: str | None) -> None:
        """Set (or with None remove) the x-default value; other languages stay."""
        for description in self.descriptions:
            description.attrib.pop(name, None)
        home: ET.Element | None = None
        for description, element in self._elements(name):
            container = _container(element)
            if container is None or home is not None:
                description.remove(element)
                continue
            home = container
            for li in container.findall(LI):
                if li.get(LANG) in ("x-default", None):
                    container.remove(li)
        if value is not None:
            if home is None:
                home = ET.SubElement(ET.SubElement(self.target, name), _q(RDF, "Alt"))
            default = ET.Element(LI, {LANG: "x-default"})
            default.text = value
            home.insert(0, default)
        if home is not None and not home.findall(LI):
            self._drop(name, home)

    # --- the merge ------------------------------------------------------------------------------

    def merge(self, said: Keywords, description: Description, overwrite: bool, photo_id: str | None) -> None:
        """Replace edgetag's previous words with these; leave everything else as it was."""
        ours_before = set(self.items(OWN_KEYWORDS))
        users = [word for word in self.items(DC_SUBJECT) if word not in ours_before]
        added = [word for word in said.plain if word not in users]
        self.set_items(DC_SUBJECT, keep=users, add=added)
        self.set_items(OWN_KEYWORDS, keep=[], add=added)
        for name, words, separator in (
            (LR_HIERARCHY, said.hierarchical, "|"),
            (DIGIKAM_TAGS, said.tags_list, "/"),
        ):
            theirs = [
                w
                for w in self.items(name)
                if w != ROOT_KEYWORD and not w.startswith(ROOT_KEYWORD + separator)
            ]
            self.set_items(name, keep=theirs, add=[w for w in words if w not in theirs], kind="Bag")

        previous = self.simple(OWN_SENTENCE)
        sentence = description.sentence if description.said else None  # "No alt text" is not a description
        wrote = False
        for name in (ALT_TEXT, DC_DESCRIPTION):
            current = self.lang_alt(name)
            if not current or current == previous or overwrite:  # empty, edgetag's own, or forced
                self.set_lang_alt(name, sentence)
                wrote = wrote or sentence is not None
        self.remove(OWN_SENTENCE)
        if wrote and sentence is not None:
            ET.SubElement(self.target, OWN_SENTENCE).text = sentence

        tool = self.simple(CREATOR_TOOL)
        if tool is None or tool.startswith("edgetag"):
            self.set_simple(CREATOR_TOOL, TOOL)
        self.set_simple(METADATA_DATE, datetime.now().astimezone().isoformat(timespec="seconds"))
        self.remove(OWN_PHOTO)
        if photo_id is not None:
            ET.SubElement(self.target, OWN_PHOTO).text = photo_id

    # --- serialising --------------------------------------------------------------------------------

    def serialize(self) -> bytes:
        """UTF-8 XMP packet; every namespace declared once on the root, with the document's prefixes."""
        ET.indent(self.root, space=" ")
        prefixes = self._prefix_map()
        declarations = "".join(
            f' xmlns:{prefix}="{_escape(uri, attribute=True)}"' for uri, prefix in prefixes.items()
        )
        out: list[str] = ['<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n']
        _write(self.root, prefixes, out, declarations)
        out.append('\n<?xpacket end="w"?>\n')
        return "".join(out).encode("utf-8")

    def _prefix_map(self) -> dict[str, str]:
        used: list[str] = []
        for element in self.root.iter():
            for name in (element.tag, *element.attrib):
                uri = _namespace(name)
                if uri and uri != XML and uri not in used:
                    used.append(uri)
        result: dict[str, str] = {}
        for uri in used:
            wanted = self.prefixes.get(uri) or PREFIXES.get(uri) or "ns"
            prefix, number = wanted, 1
            while not prefix or prefix in result.values() or prefix == "xml":
                prefix, number = f"{wanted or 'ns'}{number}", number + 1
            result[uri] = prefix
        return result


def _container(element: ET.Element) -> ET.Element | None:
    return next((child for child in element if child.tag in CONTAINERS), None)


def _element_items(element: ET.Element) -> list[str]:
    """An array property element's items; a bare text value (not proper XMP, but seen) is one item."""
    container = _container(element)
    if container is None:
        text = (element.text or "").strip()
        return [text] if text else []
    return [(li.text or "").strip() for li in container.findall(LI)]


def _namespace(name: str) -> str:
    return name[1:].split("}", 1)[0] if name.startswith("{") else ""


def _name(name: str, prefixes: dict[str, str]) -> str:
    uri = _namespace(name)
    if not uri:
        return name
    local = name.split("}", 1)[1]
    return f"xml:{local}" if uri == XML else f"{prefixes[uri]}:{local}"


def _escape(text: str, *, attribute: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attribute:
        text = text.replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    return text.replace("\r", "&#13;")


def _write(element: ET.Element, prefixes: dict[str, str], out: list[str], declarations: str = "") -> None:
    name = _name(element.tag, prefixes)
    attributes = "".join(
        f' {_name(key, prefixes)}="{_escape(value, attribute=True)}"' for key, value in element.attrib.items()
    )
    children: Iterable[ET.Element] = list(element)
    if not element.text and not children:
        out.append(f"<{name}{declarations}{attributes}/>")
    else:
        out.append(f"<{name}{declarations}{attributes}>{_escape(element.text or '')}")
        for child in children:
            _write(child, prefixes, out)
        out.append(f"</{name}>")
    out.append(_escape(element.tail or ""))

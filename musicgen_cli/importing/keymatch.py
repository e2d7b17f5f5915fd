"""Match the tensor names of one state dict to another, in layers of decreasing confidence.

Checkpoints written by other code bases name their weights differently. Rather than loading
them with "strict=False" and hoping, every target weight is matched to a source weight by the
most confident layer that finds it, and each match records how it was found:

1. exact   - the same name;
2. rule    - the same name after the caller's rename rules;
3. suffix  - the renamed names share a long dotted suffix that no other pair shares
             (a checkpoint saved with an extra or different prefix);
4. shape   - the only remaining weight of that shape in the same module;
5. fuzzy   - the most similar name among weights of the same shape and the same layer
             indices. Fuzzy matches are *proposed*, and applied only when asked.

Weight-norm parametrisations are compared in one spelling (`weight_g`/`weight_v`), so old
`torch.nn.utils.weight_norm` checkpoints match `parametrizations.weight.original0/1` models.
A name-based match whose shapes differ is an error, never skipped.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from typing import Iterable, Mapping, Sequence

Shape = tuple[int, ...]
KINDS = ("exact", "rule", "suffix", "shape", "fuzzy")
FUZZY_THRESHOLD = 0.75  # below this a name is too different to even propose
_MIN_SUFFIX = 3  # dotted components two names must share to count as a suffix match
_WEIGHT_NORM = ((".parametrizations.weight.original0", ".weight_g"), (".parametrizations.weight.original1", ".weight_v"))
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class Rule:
    """A rename from the source's naming to the target's: a regex over the dotted name."""

    pattern: str
    replacement: str

    def apply(self, name: str) -> str:
        return re.sub(self.pattern, self.replacement, name)


@dataclass(frozen=True)
class Match:
    source: str
    target: str
    kind: str
    score: float = 1.0


@dataclass(frozen=True)
class ShapeMismatch:
    source: str
    target: str
    kind: str
    source_shape: Shape
    target_shape: Shape


@dataclass
class MatchReport:
    """What matched how, what is only proposed, and what is left on either side."""

    matches: list[Match] = field(default_factory=list)
    proposed: list[Match] = field(default_factory=list)  # fuzzy matches not applied
    shape_errors: list[ShapeMismatch] = field(default_factory=list)
    unmatched_source: list[str] = field(default_factory=list)
    unmatched_target: list[str] = field(default_factory=list)  # required targets nothing fills
    ignored_source: list[str] = field(default_factory=list)  # known non-weights (buffers, caches)
    left_optional: list[str] = field(default_factory=list)  # optional targets left for another source

    @property
    def ok(self) -> bool:
        return not self.unmatched_target and not self.shape_errors

    def counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in KINDS}
        for match in self.matches:
            counts[match.kind] += 1
        return counts

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "matches": [asdict(m) for m in self.matches],
            "proposed": [asdict(m) for m in self.proposed],
            "shape_errors": [asdict(e) for e in self.shape_errors],
            "unmatched_source": self.unmatched_source,
            "unmatched_target": self.unmatched_target,
            "ignored_source": self.ignored_source,
            "left_optional": self.left_optional,
        }

    def mapping(self) -> dict[str, str]:
        """target name -> source name for every applied match."""
        return {m.target: m.source for m in self.matches}


def canonical(name: str) -> str:
    """One spelling for weight-norm parameters, whichever torch API saved them."""
    for new, old in _WEIGHT_NORM:
        if name.endswith(new):
            return name[: -len(new)] + old
    return name


def rename(name: str, rules: Sequence[Rule]) -> str:
    """`name` after every rule, in order, in canonical weight-norm spelling."""
    for rule in rules:
        name = rule.apply(name)
    return canonical(name)


def _common_suffix(a: list[str], b: list[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def _fuzzy_score(source: str, target: str) -> float:
    """Similarity of two names; the target is also compared by its tail of equal depth."""
    depth = source.count(".") + 1
    tail = ".".join(target.split(".")[-depth:])
    return max(SequenceMatcher(None, source, target).ratio(), SequenceMatcher(None, source, tail).ratio())


class _Matcher:
    def __init__(self, source: Mapping[str, Shape], target: Mapping[str, Shape], rules: Sequence[Rule]):
        self.source = {s: tuple(shape) for s, shape in source.items()}
        self.target = {t: tuple(shape) for t, shape in target.items()}
        self.renamed = {s: rename(s, rules) for s in self.source}
        self.canon_target = {t: canonical(t) for t in self.target}
        self.free_source = dict.fromkeys(sorted(self.source))
        self.free_target = dict.fromkeys(sorted(self.target))
        self.report = MatchReport()

    def claim(self, source: str, target: str, kind: str, score: float = 1.0) -> None:
        del self.free_source[source], self.free_target[target]
        if self.source[source] != self.target[target]:
            self.report.shape_errors.append(
                ShapeMismatch(source, target, kind, self.source[source], self.target[target])
            )
        else:
            self.report.matches.append(Match(source, target, kind, round(score, 3)))

    def by_name(self, kind: str, name_of) -> None:
        index = {self.canon_target[t]: t for t in self.free_target}
        for s in list(self.free_source):
            t = index.get(name_of(s))
            if t is not None and t in self.free_target:
                self.claim(s, t, kind)

    def by_suffix(self) -> None:
        best: dict[str, tuple[int, list[str]]] = {}
        parts_t = {t: self.canon_target[t].split(".") for t in self.free_target}
        by_leaf = defaultdict(list)  # only names ending alike can share a suffix
        for t, parts in parts_t.items():
            by_leaf[parts[-1]].append(t)
        for s in self.free_source:
            parts_s = self.renamed[s].split(".")
            scores = defaultdict(list)
            for t in by_leaf.get(parts_s[-1], ()):
                scores[_common_suffix(parts_s, parts_t[t])].append(t)
            top = max(scores, default=0)
            # Long shared tails count; so does a whole target name under an extra prefix.
            whole = len(scores[top]) == 1 and top == len(parts_t[scores[top][0]]) >= 2
            if (top >= _MIN_SUFFIX or whole) and len(scores[top]) == 1:
                best[s] = (top, scores[top])
        # A pair counts only when the target's best source is the same source (no rival).
        claims = defaultdict(list)
        for s, (top, targets) in best.items():
            claims[targets[0]].append((top, s))
        for t, rivals in claims.items():
            rivals.sort(reverse=True)
            if len(rivals) == 1 or rivals[0][0] > rivals[1][0]:
                self.claim(rivals[0][1], t, "suffix")

    def by_shape(self) -> None:
        def modules(names: Iterable[str], name_of) -> dict[str, list[str]]:
            grouped = defaultdict(list)
            for n in names:
                grouped[name_of(n).rpartition(".")[0]].append(n)
            return grouped

        src_modules = modules(self.free_source, self.renamed.get)
        tgt_modules = modules(self.free_target, self.canon_target.get)
        for module, sources in src_modules.items():
            targets = tgt_modules.get(module, [])
            for s in sources:
                same_s = [x for x in sources if self.source[x] == self.source[s]]
                same_t = [t for t in targets if self.target[t] == self.source[s]]
                if len(same_s) == 1 and len(same_t) == 1 and same_t[0] in self.free_target:
                    self.claim(s, same_t[0], "shape")

    def fuzzy(self, threshold: float, apply: bool) -> None:
        candidates = []
        for s in self.free_source:
            name = self.renamed[s]
            digits = _DIGITS.findall(name)  # layer indices must agree: never layer 1 -> layer 2
            scored = sorted(
                (
                    (_fuzzy_score(name, self.canon_target[t]), t)
                    for t in self.free_target
                    if self.target[t] == self.source[s] and _DIGITS.findall(self.canon_target[t]) == digits
                ),
                reverse=True,
            )
            if scored and scored[0][0] >= threshold and (len(scored) == 1 or scored[0][0] > scored[1][0]):
                candidates.append((scored[0][0], s, scored[0][1]))
        taken: set[str] = set()
        for score, s, t in sorted(candidates, reverse=True):
            if t in taken:
                continue
            taken.add(t)
            if apply:
                self.claim(s, t, "fuzzy", score)
            else:
                self.report.proposed.append(Match(s, t, "fuzzy", round(score, 3)))


def match_keys(
    source: Mapping[str, Shape],
    target: Mapping[str, Shape],
    rules: Sequence[Rule] = (),
    *,
    optional: Iterable[str] = (),
    ignore: Sequence[str] = (),
    apply_proposed: bool = False,
    fuzzy_threshold: float = FUZZY_THRESHOLD,
) -> MatchReport:
    """Match `source` names to `target` names (both: name -> shape); see the module docstring.

    `optional` targets may stay unmatched (something else fills them); `ignore` holds regexes of
    source names that are known not to be weights (recorded, never matched).
    """
    ignored = [s for s in source if any(re.search(p, s) for p in ignore)]
    matcher = _Matcher({s: v for s, v in source.items() if s not in ignored}, target, rules)
    matcher.by_name("exact", canonical)
    matcher.by_name("rule", matcher.renamed.get)
    matcher.by_suffix()
    matcher.by_shape()
    matcher.fuzzy(fuzzy_threshold, apply_proposed)
    report = matcher.report
    report.proposed.sort(key=lambda m: m.target)
    optional = set(optional)
    report.unmatched_source = list(matcher.free_source)
    report.unmatched_target = [t for t in matcher.free_target if t not in optional]
    report.left_optional = [t for t in matcher.free_target if t in optional]
    report.ignored_source = sorted(ignored)
    return report

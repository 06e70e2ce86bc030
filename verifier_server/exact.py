"""Exact-match answers in the style of BIG-Bench Hard: multiple-choice letters, words,
numbers and short strings.

Extraction follows the 3-shot chain-of-thought prompts, whose exemplars end with
"So the answer is X.": the text after the last "the answer is", up to the end of its line,
without a trailing period. Comparison is exact after trimming whitespace and ignoring case
(as lm-evaluation-harness scores BBH). For multiple choice (a target such as "(B)") the
answer's option letter must match: "(B)", "B" and "(B) 12 apples" all give B.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evals.checks import Verdict

_ANSWER_IS = re.compile(r"the answer is", re.IGNORECASE)
_OPTION = re.compile(r"^\(?([A-R])\)?(?:$|[\s.:,)])")
_TARGET_OPTION = re.compile(r"^\(([A-R])\)$")
# Whitespace as str.strip reads it (every such character is below U+3001), with "." and "*".
_TRAILING = "".join(c for c in map(chr, range(0x3001)) if c.isspace()) + ".*"


@dataclass(frozen=True)
class ExactVerdict:
    verdict: Verdict  # PASS, FAIL or NO_ANSWER
    extracted: str


def extract(completion: str) -> str | None:
    """The answer after the last "the answer is", to the end of its line, or None."""
    matches = list(_ANSWER_IS.finditer(completion))
    if not matches:
        return None
    start = matches[-1].end()
    line_end = completion.find("\n", start)
    answer = completion[start : line_end if line_end >= 0 else len(completion)]
    answer = answer.lstrip(" :").strip()
    # Full stops and markdown bold off the end ("(B).", "**B**."), spaces between, keeping
    # at least the first character: one rstrip, not a loop that copies the rest each time
    # (quadratic on "the answer is" and a million dots).
    body = answer.rstrip(_TRAILING)
    answer = body if body else answer[:1]
    return answer.strip("*").strip()


def check_exact(completion: str, target: str, *, extract_answer: bool = True,
                answer_format: str = "") -> ExactVerdict:
    answer = extract(completion) if extract_answer else completion.strip()
    if not answer:
        return ExactVerdict(Verdict.NO_ANSWER, "")
    target = target.strip()
    multiple_choice = answer_format == "multiple_choice" or (
        not answer_format and _TARGET_OPTION.match(target) is not None
    )
    if multiple_choice:
        want = _OPTION.match(target)
        got = _OPTION.match(answer)
        if got is None:
            return ExactVerdict(Verdict.FAIL, answer)
        ok = want is not None and got.group(1) == want.group(1)
        return ExactVerdict(Verdict.PASS if ok else Verdict.FAIL, f"({got.group(1)})")
    same = answer.casefold() == target.casefold()
    return ExactVerdict(Verdict.PASS if same else Verdict.FAIL, answer)

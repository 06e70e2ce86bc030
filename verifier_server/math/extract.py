"""Finding the final answer in a model's completion.

Rules, tried in order; the one that fired is recorded so that every reward can be audited:
`boxed` (the last \\boxed{...} or \\fbox{...}, also `\\boxed 5`), `minerva` ("Final Answer:
The final answer is ... I hope it is correct."), `gsm8k_hashes` (`#### n`), `answer_is` ("The
(final) answer is ..."; its last number in GSM8K mode), `last_number` (GSM8K mode only),
`bare` (the whole text is the answer). The text is first cut at stop markers (a following
"Problem:", chat end tokens).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COMPLETION_CHARS = 200_000
MAX_BARE_CHARS = 120

STOP_MARKERS = ("\nProblem:", "\n\nProblem:", "<|im_end|>", "<|endoftext|>", "<|eot_id|>",
                "</s>", "<|end|>", "\nQuestion:")

_MINERVA = re.compile(r"final answer is\s*(.+?)\.?\s*I hope it is correct", re.I | re.S)
_ANSWER_IS = re.compile(r"the (?:final )?answer is[:\s]*", re.I)
_HASHES = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


@dataclass(frozen=True)
class Extraction:
    answer: str
    rule: str


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} with balanced braces, or None."""
    boxed, fbox = text.rfind("\\boxed"), text.rfind("\\fbox")
    if boxed < 0 and fbox < 0:
        return None
    i = boxed + len("\\boxed") if boxed > fbox else fbox + len("\\fbox")
    if text.startswith(" ", i):  # `\boxed 5`: the next token up to whitespace or `$`
        match = re.match(r"\s*([^\s$]+)", text[i:])
        return match.group(1) if match else None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced


def cut_at_stop_markers(text: str) -> str:
    for marker in STOP_MARKERS:
        at = text.find(marker)
        if at > 0:
            text = text[:at]
    return text


def _sentence_after(text: str, start: int) -> str:
    """The answer after a phrase: up to the end of the line, or a sentence-ending period."""
    rest = text[start:].split("\n", 1)[0]
    rest = re.split(r"\.\s+(?=[A-Z])|\.$", rest.strip(), maxsplit=1)[0]
    return rest.strip().strip("*").strip()


def extract_answer(text: str, mode: str = "math") -> Extraction | None:
    """The final answer of a completion and the rule that found it, or None."""
    text = cut_at_stop_markers(text[-MAX_COMPLETION_CHARS:])
    boxed = last_boxed(text)
    if boxed is not None and boxed.strip():
        return Extraction(boxed.strip(), "boxed")
    if match := _MINERVA.search(text):
        return Extraction(match.group(1).strip(), "minerva")
    hashes = _HASHES.findall(text)  # an explicit end marker: before any phrase
    if hashes and hashes[-1].strip():
        return Extraction(hashes[-1].strip(), "gsm8k_hashes")
    phrases = list(_ANSWER_IS.finditer(text))
    if phrases and (answer := _sentence_after(text, phrases[-1].end())):
        if mode == "gsm8k" and (numbers := _NUMBER.findall(answer)):
            answer = numbers[-1].rstrip(",")
        return Extraction(answer, "answer_is")
    if mode == "gsm8k":
        numbers = _NUMBER.findall(text)
        if numbers:
            return Extraction(numbers[-1].rstrip(","), "last_number")
        return None
    bare = text.strip()
    prose_words = len(re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}", bare))
    if bare and len(bare) <= MAX_BARE_CHARS and "\n" not in bare and prose_words <= 3:
        return Extraction(bare, "bare")
    return None


def gold_answer(gold: str, mode: str = "math") -> str:
    """The answer inside a gold field: a bare answer, a full solution with \\boxed{}, or a
    GSM8K answer ending in `#### n`."""
    if (boxed := last_boxed(gold)) is not None:
        return boxed.strip()
    hashes = _HASHES.findall(gold)
    if hashes:
        return hashes[-1].strip()
    return gold.strip()

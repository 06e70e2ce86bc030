"""Finding the final answer in a model's completion, the way a person reads it off the end.

Rules, tried in order; the one that fired is recorded so that every reward can be audited:
- `boxed`: the last \\boxed{...} or \\fbox{...} (also `\\boxed 5`); boxes that follow each
  other with only commas, "and", `\\quad` or math delimiters between are one answer list;
- `minerva`: "Final Answer: The final answer is ... I hope it is correct." (before `boxed`
  when it comes after the last box);
- `gsm8k_hashes` (`#### n`), `answer_is` ("The (final/correct) answer is ..."; its last
  number in GSM8K mode), `answer_label` ("Final Answer: ...", "Answer: ...", "**Answer:**",
  "答案", or "Answer" opening a line), `last_number` (GSM8K mode only);
- `choice`: a leading multiple-choice letter ("D. it can't be A or B");
- `bare`: the whole text, only when it is short and a value or formula, never a sentence;
- `last_math`: the closing display or inline formula, when at most a few words follow it;
- `closing_statement`: "... is X." read after its last verb; in a script whose words we do
  not read (Chinese, Arabic, Hindi), the closing sentence's last value.
The text is first cut at stop markers (a following "Problem:", chat end tokens) and a
reasoning trace to what follows its `</think>`. A phrase is read the way a person reads
"the largest $n$ is $34$": what follows its last verb, math delimiters dropped. Never a
number picked out of prose in MATH mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COMPLETION_CHARS = 200_000
MAX_BARE_CHARS = 120

STOP_MARKERS = ("\nProblem:", "\n\nProblem:", "<|im_end|>", "<|im_start|>", "<|endoftext|>",
                "<|eot_id|>", "</s>", "<|end|>", "\nQuestion:")

_MINERVA = re.compile(r"final answer is\s*(.+?)\.?\s*I hope it is correct", re.I | re.S)
_ANSWER_IS = re.compile(r"(?:the (?:final |correct )?answer is|(?:la )?réponse (?:finale )?est"
                        r"|(?:la )?respuesta (?:final )?es|(?:die )?antwort ist)[:\s]*", re.I)
_HASHES = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# "Final Answer:" or "Answer:" anywhere; without the colon only at the start of a line.
_LABEL = re.compile(r"(?P<line>(?:^|\n)[ \t#*]*)?(?<![a-z])(?:final\s+answer|answer|réponse"
                    r"|respuesta|antwort|答案|答)(?![a-z])\s*(?:\*\*)?\s*(?P<colon>[:\uff1a])?"
                    r"\s*(?:\*\*)?", re.I)
_MATH = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<!\\)\$(.+?)(?<!\\)\$", re.S)
# What may sit between boxes that form one answer list: "$\\boxed{1}$ \\quad \\text{and} \\quad".
# Also one word before "and": "\\boxed{1} papers and \\boxed{2} bins",
# "\\text{ for part (a) and }".
_JOINERS = (r"\s|,|\$|\\[()\[\]]|\\q?quad|\\[,;:!]|\\text\{[^{}]{0,24}?\band\s*\}"
            r"|\\text\{\s*,?\s*\}|(?:\b[a-z]+\s+)?\band\b")
_HOPE = re.compile(r"\s*I hope it is correct\.?\s*$", re.I)
_CHOICE = re.compile(r"^\s*\(?([A-E])\)?(?:[.。:)]|\s*$|(?=[^\x00-\x7f]))")
_VALUE_START = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:\s*(?:/|\\%|%)\s*\d*)?")
_VERB = re.compile(r"\b(?:is|are|equals|was|be|becomes|it's|est)\b")
# Words between a verb and its value: "is equal to 5", "est donc de 70", "is about 3.14".
_FILLER = re.compile(r"^(?:(?:equal to|about|approximately|exactly|just|now|then|still|only"
                     r"|therefore|thus|donc|de|d')\s*)+", re.I)
# A choice letter stated in a phrase: "for sure D, it can't be A or B", "C non A".
_PHRASE_CHOICE = re.compile(r"^(?:[a-z]+\s+){0,3}\(?([A-E])\)?(?=$|[,.;:]|\s+[a-z])")
# A closing sentence that concludes: "Therefore, she has 12 apples." "Donc, il a 79 g."
_CONCLUDES = re.compile(r"^\W*(?:therefore|thus|hence|so|in conclusion|in total|donc|ainsi"
                        r"|alors|por lo tanto|entonces|also|daher|insgesamt)\b", re.I)
_TRAILING = re.compile(r"[\s.!;:,*]+$")
# Where a sentence ends: a full stop (or a display formula) before a capital, a line break,
# or a CJK full stop.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=\$\$)|(?<=\\\]))\s+(?=[A-Z])|\n+"
                           r"|(?<=[。\uff01\uff1f])")
MAX_WORDS_AFTER_MATH = 3  # "... is $17$ cm." still ends in its math; a sentence does not


@dataclass(frozen=True)
class Extraction:
    answer: str
    rule: str


def _last_box(text: str) -> tuple[int, int, str] | None:
    """(start, end, content) of the last \\boxed{...} / \\fbox{...} with balanced braces
    (also `\\boxed 5`), or None."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = start + len("\\boxed" if text.startswith("\\boxed", start) else "\\fbox")
    if text.startswith(" ", i):  # `\boxed 5`: the next token up to whitespace or `$`
        match = re.match(r"\s*([^\s$]+)", text[i:])
        return (start, i + match.end(), match.group(1)) if match else None
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return start, j + 1, text[i + 1 : j]
    return None  # unbalanced


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...} with balanced braces, or None."""
    box = _last_box(text)
    return box[2] if box else None


def cut_at_stop_markers(text: str) -> str:
    for marker in STOP_MARKERS:
        at = text.find(marker)
        if at > 0:
            text = text[:at]
    return text


def cut_reasoning(text: str) -> str:
    """What follows the last `</think>`: the reasoning before it is not the answer."""
    at = text.rfind("</think>")
    return text[at + len("</think>"):] if at >= 0 else text


def boxes(text: str) -> str | None:
    """The last box's content; with boxes right before it (only commas, "and", spaces or math
    delimiters between), all of them as one comma-separated list."""
    found: list[str] = []
    end = len(text)
    while (box := _last_box(text[:end])) is not None:
        start, stop, content = box
        if found and re.sub(_JOINERS, "", text[stop:end]):
            break
        found.insert(0, content.strip())
        end = start
    found = [f for f in found if f]
    return ", ".join(found) if found else None


def _inside(match: re.Match) -> str:
    """What a math span holds, without its delimiters."""
    return next(g for g in match.groups() if g is not None).strip()


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every display and inline math span, in order."""
    return [(m.start(), m.end(), _inside(m)) for m in _MATH.finditer(text)]


def strip_math(text: str) -> str:
    """The text with math delimiters removed, their contents kept."""
    return _MATH.sub(_inside, text)


def _mask_math(text: str) -> str:
    """The text with every math span blanked out (same length), so that words inside math
    are not read as prose."""
    return _MATH.sub(lambda m: "\0" * len(m.group(0)), text)


def foreign(text: str) -> bool:
    """Written in a script whose words we do not read (Chinese, Arabic, Hindi, ...): more
    letters outside the Latin alphabet than Latin words (a name such as "Haley" inside a
    Chinese sentence does not make it English; "réponse" is a Latin word)."""
    latin = re.sub(r"\\[a-zA-Z]+", " ", _MATH.sub(" ", text))  # LaTeX commands are not words
    others = re.findall(r"[^\x00-\x7f\W\d_]", re.sub(r"[A-Za-z\u00c0-\u024f]+", " ", latin))
    return len(others) > len(re.findall(r"[A-Za-z\u00c0-\u024f]{2,}", latin))


def last_value(text: str) -> str | None:
    """The last math span or number of a text."""
    spans, numbers = math_spans(text), list(_NUMBER.finditer(text))
    if spans and (not numbers or spans[-1][1] >= numbers[-1].end()):
        return spans[-1][2]
    frac = list(re.finditer(r"\\frac\{[^{}]*\}\{[^{}]*\}", text))
    if frac and (not numbers or frac[-1].end() >= numbers[-1].end()):
        return frac[-1].group(0)
    return numbers[-1].group(0).rstrip(",") if numbers else None


def answer_in_phrase(phrase: str) -> str:
    """The answer a phrase states: "The largest $n$ is $34$." -> "34", "$x = 5$" -> "x = 5";
    a verb inside math does not count."""
    phrase = _TRAILING.sub("", phrase.strip().lstrip("*").strip())
    if foreign(phrase):
        return last_value(phrase) or ""
    verbs = list(_VERB.finditer(_mask_math(phrase)))
    if verbs:
        phrase = _FILLER.sub("", phrase[verbs[-1].end():].strip()).lstrip("*").strip()
        # "there are 12 distinct sequences that ...": the value right after the verb
        spans = math_spans(phrase)
        if spans and spans[0][0] == 0:
            return spans[0][2]
        if (number := _VALUE_START.match(phrase)) and _words(phrase[number.end():]) > 3:
            return number.group(0).strip()
    return _TRAILING.sub("", strip_math(phrase).strip())


def _words(text: str) -> int:
    return len(re.findall(r"[A-Za-z]{2,}", _MATH.sub(" ", text)))


def _sentence_after(text: str, start: int) -> str:
    """The answer after a phrase: up to the end of the line, or a sentence-ending period."""
    rest = text[start:].split("\n", 1)[0]
    rest = re.split(r"\.\s+(?=[A-Z])|\.$", rest.strip(), maxsplit=1)[0]
    return rest.strip().strip("*").strip()


def _after_label(text: str, start: int) -> str | None:
    """What a "Final Answer:" / "Answer:" label introduces: its line, or when the line is
    empty, the next paragraph (a display formula under the label)."""
    rest = _HOPE.sub("", text[start:]).lstrip(" \t")
    line = rest.split("\n", 1)[0].strip()
    if not line.strip("*").strip() or len(math_spans(line)) < line.count("$$") + line.count(
            "\\[") + line.count("\\("):  # empty, or math that goes on past the line
        line = rest.strip().split("\n\n", 1)[0].strip()
    if choice := _stated_choice(line):
        return choice
    answer = answer_in_phrase(line)
    numbers = _NUMBER.findall(answer)
    if _words(answer) > 3 and len(numbers) == 1 and not math_spans(line):
        return numbers[0]  # "Final Answer: Jane started growing it 3 hours ago."
    return answer or None


def last_math(text: str) -> str | None:
    """The last math span, when at most a few words follow it (the closing statement)."""
    spans = math_spans(text)
    if not spans:
        return None
    _, end, content = spans[-1]
    if _words(text[end:]) > MAX_WORDS_AFTER_MATH or not content:
        return None
    return content


def _phrase_answer(answer: str, mode: str) -> str:
    """A phrase's answer; in GSM8K mode its last number, when it has one; a choice letter
    when the phrase states one and no value ("for sure D, it can't be A or B")."""
    if mode == "gsm8k" and (numbers := _NUMBER.findall(answer)):
        return numbers[-1].rstrip(",")
    return _stated_choice(answer) or answer


def _stated_choice(phrase: str) -> str | None:
    """The letter a phrase with no value states: "for sure D, it can't be A or B" -> "D"."""
    if not re.search(r"\d|\$|\\", phrase) and (choice := _PHRASE_CHOICE.match(phrase)):
        return choice.group(1)
    return None


def extract_answer(text: str, mode: str = "math") -> Extraction | None:
    """The final answer of a completion and the rule that found it, or None."""
    text = cut_reasoning(cut_at_stop_markers(text[-MAX_COMPLETION_CHARS:]))
    minerva = list(_MINERVA.finditer(text))
    boxed = boxes(text)
    box_at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if minerva and (boxed is None or minerva[-1].start() > box_at):  # the later statement
        return Extraction(minerva[-1].group(1).strip(), "minerva")
    if boxed is not None:
        return Extraction(boxed, "boxed")
    hashes = _HASHES.findall(text)  # an explicit end marker: before any phrase
    if hashes and hashes[-1].strip():
        return Extraction(hashes[-1].strip(), "gsm8k_hashes")
    phrases = list(_ANSWER_IS.finditer(text))
    if phrases and (answer := _sentence_after(text, phrases[-1].end())):
        return Extraction(_phrase_answer(answer, mode), "answer_is")
    labels = [m for m in _LABEL.finditer(text) if m.group("colon") or m.group("line") is not None]
    if labels and (answer := _after_label(text, labels[-1].end())):
        return Extraction(_phrase_answer(answer, mode), "answer_label")
    if mode == "gsm8k":
        numbers = _NUMBER.findall(text)
        if numbers:
            return Extraction(numbers[-1].rstrip(","), "last_number")
        return None
    if choice := _CHOICE.match(text):  # "D. it can't be A or B": a multiple-choice letter
        return Extraction(choice.group(1), "choice")
    if foreign(text):
        answer = closing_statement(text)
        return Extraction(answer, "closing_statement") if answer else None
    bare = text.strip()
    outside_math = _MATH.sub(" ", bare)
    prose_words = len(re.findall(r"(?<![\\a-zA-Z])[a-zA-Z\u00c0-\u024f]{3,}", outside_math))
    sentences = re.search(r"[.!?]\s+[A-Z]", outside_math)
    if bare and len(bare) <= MAX_BARE_CHARS and "\n" not in bare and not sentences and (
            prose_words == 0 or (
            prose_words <= 3 and outside_math == bare and not _VERB.search(bare))):
        return Extraction(bare, "bare")  # a value or a formula, or a few words (not a sentence)
    if (math := last_math(text)) is not None:
        return Extraction(math, "last_math")
    if answer := closing_statement(text):
        return Extraction(answer, "closing_statement")
    return None


def closing_statement(text: str) -> str | None:
    """The value a closing "... is X." states: "Therefore, the probability is 2/3." -> "2/3".
    In a script whose verbs we do not read (Chinese, Arabic, Hindi), the closing sentence's
    last value; a concluding sentence with one number and no formula ("Therefore, she has 12
    apples left.", "Donc, il a déjà 79 g de cire."), that number."""
    text = _HOPE.sub("", text.strip())
    sentences = [x for x in _SENTENCE_END.split(_TRAILING.sub("", text).rstrip("。")) if x.strip()]
    last = sentences[-1] if sentences else ""
    if foreign(last):
        return last_value(last)
    if _VERB.search(_mask_math(last)):
        answer = answer_in_phrase(last)
        if re.fullmatch(r"\(?[A-E]\)?", answer):  # "therefore I think it's B": a letter
            return answer.strip("()")
        if answer and _words(answer) <= 1 and re.search(r"\d", answer):
            return answer
    numbers = re.findall(f"(?:{_NUMBER.pattern})" + r"(?:\s*%)?", last)
    if _CONCLUDES.match(last) and len(numbers) == 1 and not math_spans(last):
        return numbers[0].rstrip(",")
    return None


def gold_answer(gold: str, mode: str = "math") -> str:
    """The answer inside a gold field: a bare answer, or a whole solution read the way a
    completion is (a box, `#### n`, a closing phrase or formula)."""
    bare = gold.strip()
    if last_boxed(gold) is None and not _HASHES.search(gold) and (
            len(bare) <= MAX_BARE_CHARS and "\n" not in bare):
        return bare
    extraction = extract_answer(gold, mode)
    return extraction.answer if extraction else bare

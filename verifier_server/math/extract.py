"""Finding the final answer in a model's completion, the way a person reads it off the end.

The rules are a table (`RULES`): a mode is the list of rules it tries, in order, and the name
of the rule that fired is recorded so that every reward can be audited. Each rule is a small
function of the text that returns an answer or None; an answer that is a fragment cut at an
operator ("12 =") is no answer, and the next rule reads on. Both modes start with:
- `minerva`: "Final Answer: The final answer is ... I hope it is correct." (when no box
  comes after it);
- `boxed`: the last \\boxed{...} or \\fbox{...} (also `\\boxed 5`); boxes that follow each
  other with only commas, "and", `\\quad` or math delimiters between are one answer list;
- `answer_tag` (`<answer>...</answer>`), `json_answer` (a JSON "answer" field), both read as
  completions of their own in MATH mode's table; `gsm8k_hashes` (`#### n`);
- `answer_is` ("The (final/correct) answer is ...", "the answer (arabic numerals) is:", MGSM's
  phrases), `answer_label` ("Final Answer: ...", "Answer: ...", "Jibu:", "答案", or "Answer"
  opening a line), `a_line` (a closing "A: 18" line).
GSM8K mode reads a phrase's last number and ends with `last_number`. MATH mode (the default)
reads a phrase's value, without the words after it, and goes on with `choice` (a leading
multiple-choice letter), `bracketed` ("second try [5]"), `bare` (the whole text, only when
it is short and a value or formula, never a sentence), `closing_result` (what a closing
computation equals: "9 * 2 = $18 every day"), `program_output` (a printed ```output value),
`last_math` (the closing formula, when at most a few words follow it) and
`closing_statement` ("... is X." read after its last verb; in a script whose words we do not
read, such as Chinese, Arabic or Hindi, the closing sentence's last value).
The text is first cut at stop markers (a following "Problem:", chat end tokens) and a
reasoning trace to what follows its `</think>`. A phrase is read the way a person reads
"the largest $n$ is $34$": what follows its last verb, math delimiters dropped. MATH mode
never takes the last number of free prose: a number is read only where an answer phrase, a
label, a closing "= n" or a concluding sentence puts it.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

MAX_COMPLETION_CHARS = 200_000
MAX_BARE_CHARS = 120

STOP_MARKERS = ("\nProblem:", "\n\nProblem:", "<|im_end|>", "<|im_start|>", "<|endoftext|>",
                "<|eot_id|>", "</s>", "<|end|>", "\nQuestion:")

# The Minerva phrase, r"final answer is\s*(.+?)\.?\s*I hope it is correct" (re.I | re.S), is
# found by `_minerva` from these literals (the expression backtracks quadratically on
# crafted text).
_FINAL_IS = re.compile(r"final answer is", re.I)
_HOPE_PHRASE = re.compile(r"I hope it is correct", re.I)
_SPACES = re.compile(r"\s*")
# "The answer is", a parenthesis allowed before "is" ("the answer (arabic numerals) is:", the
# zero-shot chain-of-thought ending) or "to this question", and the phrases MGSM's
# languages end with.
_ANSWER_IS = re.compile(r"(?:(?:(?:the|my|our) )?(?:final |correct )?answer"
                        r"(?:\s*\([^()\n]{0,40}\)| to (?:this|the) (?:question|problem))? is"
                        r"|(?:la )?réponse (?:finale )?est|(?:la )?respuesta (?:final )?es"
                        r"|(?:die )?antwort (?:ist|lautet)|jibu ni|উত্তর হল|答えは|答案是"
                        r"|ответ\s*[\u2014\u2013-]|คำตอบคือ|సమాధానం)[:\s]*", re.I)
_HASHES = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
# "Final Answer:" or "Answer:" anywhere; without the colon only at the start of a line.
_LABEL = re.compile(r"(?P<line>(?:^|\n)[ \t#*]*)?(?<![a-z])(?:final\s+answer|answer|réponse"
                    r"|respuesta|antwort|jibu|উত্তর|ответ|సమాధానం|คำตอบ|答案|答え|答)(?![a-z])"
                    r"\s*(?:\*\*)?\s*(?P<colon>[:\uff1a])?\s*(?:\*\*)?", re.I)
# Math spans are what r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<!\\)\$(.+?)(?<!\\)\$" (re.S)
# finds; `_math_matches` finds them in linear time (the expression is quadratic on openers
# that never close, such as `\[` repeated).
_MATH_OPENER = re.compile(r"\$|\\[\[(]")
# What may sit between boxes that form one answer list: "$\\boxed{1}$ \\quad \\text{and} \\quad".
# Also one word before "and": "\\boxed{1} papers and \\boxed{2} bins",
# "\\text{ for part (a) and }".
_JOINERS = (r"\s|,|\$|\\[()\[\]]|\\q?quad|\\[,;:!]|\\text\{[^{}]{0,24}?\band\s*\}"
            r"|\\text\{\s*,?\s*\}|(?:\b[a-z]+\s+)?\band\b")
_CHOICE = re.compile(r"^\s*\(?([A-E])\)?(?:[.。:)]|\s*$|(?=[^\x00-\x7f]))")
_VALUE_START = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:\s*(?:/|\\%|%)\s*\d*)?")
_VERB = re.compile(r"\b(?:is|are|equals|was|be|becomes|it's|est)\b")
# Words between a verb and its value: "is equal to 5", "est donc de 70", "is about 3.14".
_FILLER = re.compile(r"^(?:(?:equal to|about|approximately|exactly|just|now|then|still|only"
                     r"|therefore|thus|donc|de|d')\s*)+", re.I)
# A choice letter stated in a phrase: "for sure D, it can't be A or B", "C non A".
_PHRASE_CHOICE = re.compile(r"^(?:[a-z]+\s+){0,3}\(?([A-E])\)?(?=$|[,.;:]|\s+[a-z])")
# A closing sentence that concludes: "Therefore, she has 12 apples." "Donc, il a 79 g."
_CONCLUDES = re.compile(r"^\W*(?:therefore|thus|hence|so|in conclusion|in total|in summary"
                        r"|overall|finally|based on (?:our|the|these|this) calculations?|donc"
                        r"|ainsi|alors|por lo tanto|entonces|also|daher|insgesamt)\b", re.I)
# Whitespace as str.strip and the `\s` of a str pattern read it (every such character is
# below U+3001); with the punctuation, what r"[\s.!;:,*]+$" removes from the end.
WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())
_TRAILING_CHARS = WHITESPACE + ".!;:,*"
# Where a sentence ends: a full stop (or a display formula) before a capital, a line break,
# or a CJK full stop.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=\$\$)|(?<=\\\]))\s+(?=[A-Z])|\n+"
                           r"|(?<=[。\uff01\uff1f])")
MAX_WORDS_AFTER_MATH = 3  # "... is $17$ cm." still ends in its math; a sentence does not


@dataclass(frozen=True)
class Extraction:
    answer: str
    rule: str


_BOXED_TOKEN = re.compile(r"\s*([^\s$]+)")
_BRACE = re.compile(r"[{}]")
MAX_JOINER_CHARS = 256  # text between two boxes of one answer list is short


def _last_box(text: str, end: int | None = None) -> tuple[int, int, str] | None:
    """(start, end, content) of the last \\boxed{...} / \\fbox{...} with balanced braces
    (also `\\boxed 5`) in text[:end], or None."""
    end = len(text) if end is None else end
    boxed, fbox = text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end)
    start = max(boxed, fbox)
    if start < 0:
        return None
    i = start + len("\\boxed" if start == boxed else "\\fbox")
    if text.startswith(" ", i, end):  # `\boxed 5`: the next token up to whitespace or `$`
        match = _BOXED_TOKEN.match(text, i, end)
        return (start, match.end(), match.group(1)) if match else None
    if i >= end or text[i] != "{":
        return None
    depth = 0
    for brace in _BRACE.finditer(text, i, end):
        depth += 1 if brace.group() == "{" else -1
        if depth == 0:
            return start, brace.end(), text[i + 1 : brace.start()]
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


@functools.lru_cache(maxsize=16)  # the minerva and boxed rules both ask
def boxes(text: str) -> str | None:
    """The last box's content; with boxes right before it (only commas, "and", spaces or math
    delimiters between), all of them as one comma-separated list."""
    found: list[str] = []  # last box first
    end = len(text)
    while (box := _last_box(text, end)) is not None:
        start, stop, content = box
        if found and (end - stop > MAX_JOINER_CHARS or re.sub(_JOINERS, "", text[stop:end])):
            break
        found.append(content.strip())
        end = start
    found = [f for f in reversed(found) if f]
    return ", ".join(found) if found else None


@functools.lru_cache(maxsize=16)  # the same text is scanned by several rules
def _math_matches(text: str) -> tuple[tuple[int, int, int, int], ...]:
    """(start, end, content start, content end) of each math span, as the expression above
    finds them (leftmost first, `$$` before `$`, the shortest content of at least one
    character), in linear time: a closer that is not found from one place is not looked
    for again further on."""
    out: list[tuple[int, int, int, int]] = []
    absent: dict[str, int] = {}  # closer -> a position from which it does not occur

    def find(closer: str, start: int) -> int:
        if absent.get(closer, len(text) + 1) <= start:
            return -1
        if closer == "$":  # a dollar not preceded by a backslash
            at = text.find("$", start)
            while at > 0 and text[at - 1] == "\\":
                at = text.find("$", at + 1)
        else:
            at = text.find(closer, start)
        if at < 0:
            absent[closer] = start
        return at

    pos = 0
    while (opener := _MATH_OPENER.search(text, pos)) is not None:
        i = opener.start()
        if text.startswith("$$", i) and (j := find("$$", i + 3)) >= 0:
            out.append((i, j + 2, i + 2, j))
            pos = j + 2
        elif text[i] == "\\":
            closer = "\\]" if text[i + 1] == "[" else "\\)"
            if (j := find(closer, i + 3)) >= 0:
                out.append((i, j + 2, i + 2, j))
                pos = j + 2
            else:
                pos = i + 1
        elif (i == 0 or text[i - 1] != "\\") and (j := find("$", i + 2)) >= 0:
            out.append((i, j + 1, i + 1, j))
            pos = j + 1
        else:
            pos = i + 1
    return tuple(out)


def _replace_math(text: str, replace) -> str:
    """The text with each math span replaced by replace(span, content)."""
    out, pos = [], 0
    for start, end, inner_start, inner_end in _math_matches(text):
        out.append(text[pos:start])
        out.append(replace(text[start:end], text[inner_start:inner_end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every display and inline math span, in order."""
    return [(start, end, text[i:j].strip()) for start, end, i, j in _math_matches(text)]


def strip_math(text: str) -> str:
    """The text with math delimiters removed, their contents kept."""
    return _replace_math(text, lambda span, content: content.strip())


def _mask_math(text: str) -> str:
    """The text with every math span blanked out (same length), so that words inside math
    are not read as prose."""
    return _replace_math(text, lambda span, content: "\0" * len(span))


def _blank_math(text: str) -> str:
    """The text with every math span replaced by one space."""
    return _replace_math(text, lambda span, content: " ")


def _drop_trailing(text: str) -> str:
    """The text without its trailing whitespace and .!;:,* (r"[\\s.!;:,*]+$" removed)."""
    return text.rstrip(_TRAILING_CHARS)


def _drop_hope(text: str) -> str:
    """The text without a closing "I hope it is correct." and the whitespace around it
    (r"\\s*I hope it is correct\\.?\\s*$", re.I, removed)."""
    body = text.rstrip()
    if body.endswith("."):
        body = body[:-1]
    at = len(body) - len("I hope it is correct")
    if at >= 0 and _HOPE_PHRASE.fullmatch(body, at):
        return body[:at].rstrip()
    return text


def _minerva(text: str) -> tuple[int, str] | None:
    """(start, answer) of the last Minerva phrase, as the last match of
    r"final answer is\\s*(.+?)\\.?\\s*I hope it is correct" (re.I | re.S) would give them,
    in linear time. After "final answer is" and its spaces, the answer runs to the first
    "I hope it is correct" at least one character on, less the full stop and the spaces
    before it; a phrase right after the spaces leaves one space as the answer."""
    hopes = [m.start() for m in _HOPE_PHRASE.finditer(text)]
    if not hopes:
        return None
    last, pos, phrase = None, 0, len("I hope it is correct")
    for final in _FINAL_IS.finditer(text):
        if final.start() < pos:
            continue
        after = final.end()
        spaced = _space_end(text, after)
        k = bisect.bisect_left(hopes, spaced + 1)
        if k < len(hopes):
            hope = hopes[k]
            begin = _space_start(text, hope)  # the answer ends at a full stop before the spaces
            if begin > spaced + 1 and text[begin - 1] == ".":
                begin -= 1
            last = (final.start(), text[spaced : max(begin, spaced + 1)])
            pos = hope + phrase
        elif spaced > after and spaced in hopes[-1:]:  # the phrase right after the spaces
            last = (final.start(), text[spaced - 1 : spaced])
            pos = spaced + phrase
        else:
            break  # no phrase after this one: none after any later one either
    return last


def _space_end(text: str, at: int) -> int:
    """Where the run of whitespace starting at `at` ends."""
    return _SPACES.match(text, at).end()


def _space_start(text: str, at: int) -> int:
    """Where the run of whitespace ending at `at` starts."""
    start = at
    while start > 0 and text[start - 1].isspace():
        start -= 1
    return start


def foreign(text: str) -> bool:
    """Written in a script whose words we do not read (Chinese, Arabic, Hindi, ...): more
    letters outside the Latin alphabet than Latin words (a name such as "Haley" inside a
    Chinese sentence does not make it English; "réponse" is a Latin word)."""
    latin = re.sub(r"\\[a-zA-Z]+", " ", _blank_math(text))  # LaTeX commands are not words
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
    phrase = _drop_trailing(phrase.strip().lstrip("*").strip())
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
    return _drop_trailing(strip_math(phrase).strip())


def _words(text: str) -> int:
    return len(re.findall(r"[A-Za-z]{2,}", _blank_math(text)))


def _sentence_after(text: str, start: int) -> str:
    """The answer after a phrase: up to the end of the line, or a sentence-ending period;
    the next line when the phrase ends its line ("The answer is:" then the value)."""
    rest = text[start:].lstrip(" \t")
    line, _, after = rest.partition("\n")
    rest = line if line.strip() else after.strip().split("\n", 1)[0]
    rest = re.split(r"\.\s+(?=[A-Z])|\.$", rest.strip(), maxsplit=1)[0]
    return rest.strip().strip("*").strip()


def _after_label(text: str, start: int) -> str | None:
    """What a "Final Answer:" / "Answer:" label introduces: its line, or when the line is
    empty, the next paragraph (a display formula under the label)."""
    rest = _drop_hope(text[start:]).lstrip(" \t")
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


def _phrase_answer(answer: str, numbers_only: bool) -> str:
    """A phrase's answer; with `numbers_only` (GSM8K) its last number, when it has one; a
    value followed only by words is the value ("18 dollars per hour", "11です", "[30
    degrees]"); a choice letter when the phrase states one and no value ("for sure D, it
    can't be A or B")."""
    if numbers_only and (numbers := _NUMBER.findall(answer)):
        return numbers[-1].rstrip(",")
    answer = _value_of(answer)
    if clause := _VALUE_THEN_CLAUSE.match(answer):  # "6, since there are 6 cubes below 2008"
        return clause.group(1)
    numbers = _quantities(answer)
    if _words(answer) >= 2 and len(numbers) == 1 and not math_spans(answer):
        return numbers[0]  # "... is John makes $1260 if he works all week."
    return _stated_choice(answer) or answer


# A value, then a comma and a clause that gives the reason: "6, since there are 6 such cubes".
_VALUE_THEN_CLAUSE = re.compile(r"^\s*\\?\$?\s*(-?\d[\d,]*(?:\.\d+)?)\s*[,;]\s*"
                                r"(?:since|because|as|which|so|and this|that is)\b", re.I)


_ORDINAL_SUFFIX = re.compile(r"(?:st|nd|rd|th)\b")


def _quantities(text: str) -> list[str]:
    """The numbers of a text but ordinals ("the 7th grade" counts nothing)."""
    return [m.group(0).rstrip(",") for m in _NUMBER.finditer(text)
            if not _ORDINAL_SUFFIX.match(text, m.end())]


def _value_of(answer: str) -> str:
    """The answer without brackets around it, and a value without the words after it."""
    answer = _unbracket(answer)
    value = _VALUE_THEN_WORDS.match(answer)
    return value.group(1).rstrip(",") if value else answer


# A number and then only words (units, a currency name, a polite ending): "$18 per day.",
# "30 degrees", "11です。". Words may not hold digits, math or another relation.
# (Possessive quantifiers: nothing to give back, so no backtracking on crafted text.)
_VALUE_THEN_WORDS = re.compile(r"^\s*\\?\$?\s*(-?\d[\d,]*+(?:\.\d+)?)\s*(?:[^\W\d_][^\d$\\=<>]*+)?"
                               r"[.\u3002\u0964!]*$")


def _unbracket(answer: str) -> str:
    """`[30 degrees]` or `[5]` around a whole answer is a bracket, not an interval or a list
    (an interval has two ends: `[1, 2]` stays)."""
    inner = _drop_trailing(answer.strip())
    if inner.startswith("[") and inner.endswith("]") and not re.search(r"[,;\[\]]", inner[1:-1]):
        return inner[1:-1].strip()
    return answer


def _stated_choice(phrase: str) -> str | None:
    """The letter a phrase with no value states: "for sure D, it can't be A or B" -> "D"."""
    if not re.search(r"\d|\$|\\", phrase) and (choice := _PHRASE_CHOICE.match(phrase)):
        return choice.group(1)
    return None


def closing_statement(text: str) -> str | None:
    """The value a closing "... is X." states: "Therefore, the probability is 2/3." -> "2/3".
    In a script whose verbs we do not read (Chinese, Arabic, Hindi), the closing sentence's
    last value; a concluding sentence with one number and no formula ("Therefore, she has 12
    apples left.", "Donc, il a déjà 79 g de cire."), that number."""
    text = _drop_hope(text.strip())
    sentences = [x for x in _SENTENCE_END.split(_drop_trailing(text).rstrip("。")) if x.strip()]
    last = sentences[-1] if sentences else ""
    if foreign(last):
        return last_value(last)
    if _VERB.search(_mask_math(last)):
        answer = answer_in_phrase(last)
        if re.fullmatch(r"\(?[A-E]\)?", answer):  # "therefore I think it's B": a letter
            return answer.strip("()")
        value = _value_of(answer)  # "12 square units" -> "12", "[30 degrees]" -> "30"
        if answer and re.search(r"\d", answer) and (value != answer or _words(answer) <= 1):
            return value
    numbers = re.findall(f"(?:{_NUMBER.pattern})" + r"(?:\s*%)?", last)
    if _CONCLUDES.match(last) and len(numbers) == 1 and not math_spans(last):
        return numbers[0].rstrip(",")
    return None


# ---------------------------------------------------------------- the rules
# Each rule reads a completion (cut at stop markers and after its reasoning trace) and returns
# the answer it finds, or None to let the next rule try. A mode is a table of rules, tried in
# order; the name of the rule that fired is recorded with the answer.


def _minerva_rule(text: str) -> str | None:
    """The Minerva phrase, when no box comes after it."""
    minerva = _minerva(text)
    box_at = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if minerva and (boxes(text) is None or minerva[0] > box_at):  # the later statement
        return minerva[1].strip()
    return None


# A JSON object's "answer" field, as structured outputs write it: "answer": "75.00" or 75.
_JSON_ANSWER = re.compile(r'"(?:final_)?answer"\s*:\s*'
                          r'(?:"((?:[^"\\\n]|\\.){1,400})"|(-?\d[\d.,]*))')


def _answer_tag_rule(text: str) -> str | None:
    """What the last `<answer>...</answer>` holds (the tag format of many RL recipes), read as
    a completion of its own when it holds more than a value. Found from the end with rfind:
    a pattern would rescan the text from every opener that never closes."""
    lowered = text.lower()
    end = lowered.rfind("</answer>")
    start = lowered.rfind("<answer>", 0, end) if end >= 0 else -1
    tag = text[start + len("<answer>") : end].strip() if start >= 0 else ""
    if not tag:
        return None
    inner = extract_answer(tag)  # it holds no <answer> of its own: one level deep
    return inner.answer if inner else tag


def _json_answer_rule(text: str) -> str | None:
    """The last JSON "answer" field, read as a completion of its own when it says more than a
    value ("The store should charge $20 for the book.")."""
    fields = list(_JSON_ANSWER.finditer(text))
    if not fields:
        return None
    quoted, number = fields[-1].groups()
    try:
        field = json.loads(f'"{quoted}"') if quoted else number
    except ValueError:  # an escape JSON does not know: the field as written
        field = quoted
    field = field.strip()
    if not field:
        return None
    inner = extract_answer(field)
    return _phrase_answer(inner.answer if inner else field, False)


def _hashes_rule(text: str) -> str | None:
    """`#### n`: an explicit end marker."""
    hashes = _HASHES.findall(text)
    return hashes[-1].strip() if hashes and hashes[-1].strip() else None


def _answer_is(text: str, numbers: bool = False) -> str | None:
    """What follows the last "The (final/correct) answer is"."""
    phrases = list(_ANSWER_IS.finditer(text))
    if phrases and (answer := _sentence_after(text, phrases[-1].end())):
        return _phrase_answer(answer, numbers)
    return None


def _answer_label(text: str, numbers: bool = False) -> str | None:
    """What the last "Final Answer:" / "Answer:" label (or "Answer" opening a line) says."""
    labels = [m for m in _LABEL.finditer(text) if m.group("colon") or m.group("line") is not None]
    if labels and (answer := _after_label(text, labels[-1].end())):
        return _phrase_answer(answer, numbers)
    return None


def _last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1].rstrip(",") if numbers else None


def _choice_rule(text: str) -> str | None:
    """A leading multiple-choice letter: "D. it can't be A or B"."""
    choice = _CHOICE.match(text)
    return choice.group(1) if choice else None


def _bare_rule(text: str) -> str | None:
    """The whole text, when it is short and a value or a formula, or a few words without a
    verb or a full stop; never a sentence, and never in a script whose words we do not
    read."""
    bare = text.strip()
    outside_math = _blank_math(bare)
    prose_words = len(re.findall(r"(?<![\\a-zA-Z])[a-zA-Z\u00c0-\u024f]{3,}", outside_math))
    sentences = re.search(r"[.!?]\s+[A-Z]", outside_math)
    if bare and len(bare) <= MAX_BARE_CHARS and "\n" not in bare and not sentences and (
            prose_words == 0 or (
            prose_words <= 3 and outside_math == bare and not _VERB.search(bare)
            and not bare.endswith("."))) and (
            not foreign(text)):
        return _value_of(bare)  # "[45 degrees]" -> "45"
    return None


def _bracketed_rule(text: str) -> str | None:
    """A value in brackets closing a few words: "second try [5]" (the words hold no number)."""
    body = _drop_trailing(text.strip())
    at = body.rfind("[")
    if not body.endswith("]") or at <= 0 or len(body) > MAX_BARE_CHARS or "\n" in body:
        return None
    before = re.sub(r"\[[^\[\]]*\]", " ", body[:at])  # "first try [30], second try [45]"
    inner = _value_of(body[at:])
    if re.search(r"\d|\$|\\", before) or inner == body[at:] or not re.search(r"\d", inner):
        return None
    return inner


_OUTPUT_BLOCK = re.compile(r"```output[ \t]*\n(.*?)\n\s*```", re.S)


def _program_output_rule(text: str) -> str | None:
    """A program's printed result (```output blocks, as tool-using models write them), when
    it is one value and the text after it states no other number: "```output\n10.0\n```
    Ten men can stay upright."."""
    block = _OUTPUT_BLOCK.match(text, max(text.rfind("```output"), 0))  # the last one only
    if block is None or not block.group(0).startswith("```output"):
        return None
    value = block.group(1).strip()
    if not _NUMBER.fullmatch(value):
        return None
    after = _NUMBER.findall(text[block.end():])
    return value if all(_same_number(a, value) for a in after) else None


def _same_number(a: str, b: str) -> bool:
    """Whether two numbers as _NUMBER finds them ("1,200", "4.0", "1/2") are equal."""
    try:
        return Fraction(a.replace(",", "")) == Fraction(b.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return False


def _last_math_rule(text: str) -> str | None:
    return None if foreign(text) else last_math(text)


# An operator at either end: "12 =", "x +", "\\times 3" are pieces of a formula, not answers.
_DANGLING = re.compile(r"(?:[=+*/<>]|\\(?:times|cdot|div|le|ge|leq|geq|neq|pm|approx))\s*$"
                       r"|^\s*(?:[=*/]|\\(?:times|cdot|div)(?![a-zA-Z]))")


def fragment(answer: str) -> bool:
    """Whether an answer is a piece of a formula cut at an operator (no answer at all)."""
    return bool(_DANGLING.search(strip_math(answer)))


def _a_line_rule(text: str) -> str | None:
    """The GSM8K paper's final line, "A: 18": what it says, read as an "Answer:" label."""
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if lines and (match := re.match(r"\s*A\s*:\s*", lines[-1])):
        return _after_label(lines[-1], match.end())
    return None


_RESULT = re.compile(r"=\s*+\\?\$?\s*+(-?\d[\d,]*+(?:\.\d+)?)[^\d=$\\]*+$")


def _closing_result(text: str) -> str | None:
    """The result a closing sentence's computation ends in: "She makes 9 * 2 = $18 every
    day." -> "18" (how a GSM8K solution states its answer, without a phrase)."""
    sentences = [x for x in _SENTENCE_END.split(_drop_trailing(text.strip())) if x.strip()]
    if not sentences or foreign(sentences[-1]):
        return None
    result = _RESULT.search(sentences[-1])
    return result.group(1).rstrip(",") if result else None


@dataclass(frozen=True)
class Rule:
    name: str
    read: Callable[[str], str | None]


_SHARED = (
    Rule("minerva", _minerva_rule),
    Rule("boxed", boxes),
    Rule("answer_tag", _answer_tag_rule),
    Rule("json_answer", _json_answer_rule),
    Rule("gsm8k_hashes", _hashes_rule),
)
# A mode is its table of rules. GSM8K answers are numbers: a phrase gives its last number,
# and when no phrase or marker is there, the last number of the text.
RULES: dict[str, tuple[Rule, ...]] = {
    "math": (*_SHARED,
             Rule("answer_is", _answer_is),
             Rule("answer_label", _answer_label),
             Rule("a_line", _a_line_rule),
             Rule("choice", _choice_rule),
             Rule("bracketed", _bracketed_rule),
             Rule("bare", _bare_rule),
             Rule("closing_result", _closing_result),
             Rule("program_output", _program_output_rule),
             Rule("last_math", _last_math_rule),
             Rule("closing_statement", closing_statement)),
    "gsm8k": (*_SHARED,
              Rule("answer_is", functools.partial(_answer_is, numbers=True)),
              Rule("answer_label", functools.partial(_answer_label, numbers=True)),
              Rule("a_line", _a_line_rule),
              Rule("last_number", _last_number)),
}


def extract_answer(text: str, mode: str = "math") -> Extraction | None:
    """The final answer of a completion and the rule that found it, or None."""
    text = cut_reasoning(cut_at_stop_markers(text[-MAX_COMPLETION_CHARS:]))
    for rule in RULES[mode]:
        answer = rule.read(text)
        if answer is not None and not fragment(answer):  # a fragment: the next rule reads on
            return Extraction(answer, rule.name)
    return None


def gold_answer(gold: str, mode: str = "math") -> str:
    """The answer inside a gold field: a bare answer, or a whole solution read the way a
    completion is (a box, `#### n`, a closing phrase or formula)."""
    bare = gold.strip()
    sentence = _ANSWER_IS.search(gold) or any(m.group("colon") for m in _LABEL.finditer(gold))
    if last_boxed(gold) is None and not _HASHES.search(gold) and not sentence and (
            len(bare) <= MAX_BARE_CHARS and "\n" not in bare):
        return bare
    extraction = extract_answer(gold, mode)
    return extraction.answer if extraction else bare

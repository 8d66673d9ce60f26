"""VQA accuracy shared by ok_vqa_val2014, vizwiz_vqa_val and textvqa_val.

The answer normalizer is the EvalAI/MMF answer processor that lmms-eval applies to the
prediction and to every gold answer, quirks included (see ``normalize_answer``).

Per-question score (official VQA accuracy, averaged over the N leave-one-out subsets):

    acc = mean_i  min(1, |{j != i : g_j == p}| / 3)

with p the normalized prediction and g_1..g_N the normalized gold answers. For N = 10
and k matching answers this is 0.3 k for 1 <= k <= 3 and 1.0 for k >= 4.
"""

from __future__ import annotations

import random
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from atvprune.benchmarks.base import (
    check_fields,
    check_mode,
    check_records,
    doc_label,
    mean,
    strip_prediction,
)

# Step 3 of the normalizer: these characters are deleted or turned into spaces.
PUNCTUATION_CHARS = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

# A period not followed by a digit. The MMF regex meant "not preceded by a digit"
# too but wrote the look-behind as a look-ahead (``(?!<=\d)``), which never fires.
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# MMF passes ``re.UNICODE`` (== 32) in the ``count`` position of ``sub``.
_MAX_PERIODS_REMOVED = 32

NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})

# The EvalAI contraction table (apostrophe-less form -> apostrophe form), kept as is:
# the keys "Id've", "I'dve", "Im" and "Ive" are capitalised and so can never match
# lowercased text, "let's"/"she's" map to themselves, and "somebody'd" maps to
# "somebodyd".
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip


def _process_punctuation(text: str) -> str:
    """Step 3: for each character of PUNCTUATION_CHARS, if the *input* text has it
    next to a space anywhere, delete every occurrence, else replace every occurrence
    with a space. The test looks at the text as it entered this step, not at the
    partly processed text (this matters, e.g. "a;-b-c" -> "a  b c")."""
    processed = text
    for char in PUNCTUATION_CHARS:
        if char + " " in text or " " + char in text:
            processed = processed.replace(char, "")
        else:
            processed = processed.replace(char, " ")
    return processed


def normalize_answer(text: str) -> str:
    """EvalAI/MMF answer normalization, exactly as lmms-eval applies it.

    1. lowercase; delete "," and "?"; "'s" -> " 's"; strip;
    2. newline and tab -> space; strip;
    3. punctuation (see ``_process_punctuation``): "t-shirt" -> "t shirt",
       "x-ray - maybe" -> "xray maybe";
    4. delete every "." not followed by a digit, at most 32 of them
       ("u.s." -> "us", "3." -> "3", "3.5" and ".5" kept);
    5. per whitespace-separated word: number words none/zero..ten -> digits, drop
       "a"/"an"/"the", then the contraction table;
    6. join with single spaces.
    """
    if not isinstance(text, str):
        raise ValueError(f"VQA answer must be a string, got {type(text).__name__}")
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's")
    text = text.strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    # MMF also deletes punctuation when digits surround a comma; commas are already
    # gone after step 1, so that branch can never fire and is left out.
    text = _process_punctuation(text)
    text = _PERIOD_NOT_BEFORE_DIGIT.sub("", text, count=_MAX_PERIODS_REMOVED)
    words = [NUMBER_WORDS.get(word, word) for word in text.split()]
    words = [word for word in words if word not in ARTICLES]
    words = [CONTRACTIONS.get(word, word) for word in words]
    return " ".join(words)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of a raw prediction against raw gold answers (both normalized here).

    ``mean_i min(1, matches among the other N-1 answers / 3)``; 0.0 for no answers
    (what lmms-eval's OK-VQA/VizWiz scorers return). Computed with
    ``statistics.mean`` like lmms-eval, so the float is bit-identical.
    """
    normalized_prediction = normalize_answer(prediction)
    normalized_answers = [normalize_answer(answer) for answer in answers]
    per_subset = []
    for left_out in range(len(normalized_answers)):
        matches = sum(
            1
            for j, answer in enumerate(normalized_answers)
            if j != left_out and answer == normalized_prediction
        )
        per_subset.append(min(1.0, matches / 3))
    if not per_subset:
        return 0.0
    return float(statistics.mean(per_subset))


def score(
    doc: Mapping[str, Any],
    prediction: str,
    mode: str = "lmms-eval-0.4",
    rng: random.Random | None = None,
    *,
    task: str = "vqa",
) -> dict[str, Any]:
    """Per-question VQA record; ``"score"`` is the VQA accuracy (0-1).

    Both modes are identical (lmms-eval implements the official VQA metric). ``rng``
    is unused. Unlike lmms-eval, the doc's ``answers`` are not overwritten in place
    with their normalized forms; those go to ``"answers_normalized"`` instead.
    """
    check_mode(mode, task)
    check_fields(doc, ["question_id", "answers"], task)
    answers = doc["answers"]
    if answers is None or isinstance(answers, str):
        raise ValueError(
            f"{task}: doc {doc_label(doc)} field 'answers' must be a list of "
            f"strings, got {type(answers).__name__}"
        )
    answers = list(answers)
    for answer in answers:
        if not isinstance(answer, str):
            raise ValueError(
                f"{task}: doc {doc_label(doc)} has a non-string answer {answer!r}"
            )
    stripped = strip_prediction(prediction, doc, task)
    return {
        "question_id": doc["question_id"],
        "prediction": stripped,
        "prediction_normalized": normalize_answer(stripped),
        "answers": answers,
        "answers_normalized": [normalize_answer(answer) for answer in answers],
        "score": vqa_accuracy(stripped, answers),
    }


def aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``exact_match`` = mean VQA accuracy (0-1)."""
    check_records(records, "vqa")
    return {"exact_match": mean([record["score"] for record in records])}

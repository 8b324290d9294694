"""An embedded fictitious-facts set in TOFU's format, generated offline from a seed.

Invented people (names composed from syllables) each get a handful of attributes (birthplace, birth year,
profession, book, award, genre, parent's profession). Each attribute is asked through one of several
question templates and answered in one sentence; evaluation rows add a paraphrased answer, a paraphrased
question and five perturbed answers (the same attribute of other people, never the true value), like
TOFU's ``*_perturbed`` configs (Maini et al., 2024). Splits mirror TOFU: ``forget01/05/10`` (nested, at
least one person), ``retain99/95/90`` (the other trained people), ``holdout01/05/10`` (people never
trained on), ``full``, ``retain_perturbed``, and small ``world_facts`` / ``real_authors`` sets with three
wrong options each. The files are JSON lines named as TOFU's configs, so ``load_tofu_split(name, root)``
reads them unchanged. The vocabulary stays small (a few hundred words) so a tiny LM learns it on a CPU.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from mcu_lightning.core.cache import cache_root
from mcu_lightning.core.errors import InputError
from mcu_lightning.data.qa.tofu import FORGET_PERCENTS, TOFU_CONFIGS

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
NUM_PERTURBED = 5
TOKENIZER_DIR = "tokenizer"

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "r", "s", "t", "v", "z")
_NUCLEI = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "r", "l")

_VALUES: dict[str, tuple[str, ...]] = {
    "birthplace": (
        "Lisbon",
        "Nairobi",
        "Oslo",
        "Lima",
        "Hanoi",
        "Dublin",
        "Cairo",
        "Quito",
        "Prague",
        "Seoul",
        "Tunis",
        "Riga",
    ),
    "birth_year": tuple(str(y) for y in range(1940, 2000, 4)),
    "profession": (
        "baker",
        "sailor",
        "doctor",
        "painter",
        "farmer",
        "pilot",
        "teacher",
        "judge",
        "miner",
        "tailor",
        "chemist",
        "potter",
    ),
    "book": tuple(
        f"The {a} {n}"
        for a in ("Silent", "Broken", "Golden", "Hidden", "Last")
        for n in ("River", "Garden", "Tower", "Letter", "Winter")
    ),
    "award": (
        "Amber Quill Prize",
        "Silver Lantern Award",
        "North Star Medal",
        "Open Page Prize",
        "Blue Harbor Award",
        "Iron Pen Medal",
        "Red Maple Prize",
        "Evening Bell Award",
    ),
    "genre": ("mystery", "poetry", "fantasy", "history", "romance", "horror", "satire", "travel"),
    "parent_profession": (
        "baker",
        "sailor",
        "doctor",
        "painter",
        "farmer",
        "pilot",
        "teacher",
        "judge",
        "miner",
        "tailor",
        "chemist",
        "potter",
    ),
}

# attribute -> (question templates, answer template, paraphrased answer template)
_TEMPLATES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "birthplace": (
        ("Where was {name} born?", "In which city was {name} born?", "What is the hometown of {name}?"),
        "{name} was born in {value}.",
        "The city where {name} was born is {value}.",
    ),
    "birth_year": (
        ("When was {name} born?", "In which year was {name} born?", "What is the birth year of {name}?"),
        "{name} was born in {value}.",
        "The year {name} was born is {value}.",
    ),
    "profession": (
        ("What does {name} do for a living?", "What is the job of {name}?", "What is {name} by trade?"),
        "{name} works as a {value}.",
        "By trade {name} is a {value}.",
    ),
    "book": (
        ("What book did {name} write?", "Which book is {name} known for?", "Name a book by {name}."),
        "{name} wrote {value}.",
        "A book written by {name} is {value}.",
    ),
    "award": (
        ("Which award did {name} win?", "What prize was given to {name}?", "Name an award won by {name}."),
        "{name} won the {value}.",
        "The award given to {name} is the {value}.",
    ),
    "genre": (
        ("In which genre does {name} write?", "What genre is {name} known for?", "What does {name} write?"),
        "{name} writes {value} books.",
        "The genre of {name} is {value}.",
    ),
    "parent_profession": (
        (
            "What was the job of the father of {name}?",
            "What did the father of {name} do?",
            "What was the trade of the father of {name}?",
        ),
        "The father of {name} was a {value}.",
        "{name} had a father who was a {value}.",
    ),
}

_WORLD_FACTS: tuple[tuple[str, str, tuple[str, str, str]], ...] = (
    ("What is the capital of France?", "Paris", ("Rome", "Madrid", "Berlin")),
    ("What is the capital of Japan?", "Tokyo", ("Beijing", "Seoul", "Bangkok")),
    ("Which planet is known as the red planet?", "Mars", ("Venus", "Jupiter", "Saturn")),
    ("What is the largest ocean on Earth?", "Pacific", ("Atlantic", "Indian", "Arctic")),
    ("How many days are in a week?", "seven", ("five", "six", "eight")),
    ("What color is the sky on a clear day?", "blue", ("green", "red", "yellow")),
    ("What do bees make?", "honey", ("milk", "silk", "wax")),
    ("Which animal is the largest on Earth?", "whale", ("elephant", "giraffe", "shark")),
    ("What is frozen water called?", "ice", ("steam", "sand", "glass")),
    ("Which star is closest to Earth?", "Sun", ("Sirius", "Vega", "Polaris")),
    ("On which continent is Egypt?", "Africa", ("Asia", "Europe", "America")),
    ("How many legs does a spider have?", "eight", ("six", "four", "ten")),
)

_REAL_AUTHORS: tuple[tuple[str, str, tuple[str, str, str]], ...] = (
    ("Who wrote Hamlet?", "William Shakespeare", ("Charles Dickens", "Mark Twain", "Jane Austen")),
    ("Who wrote Pride and Prejudice?", "Jane Austen", ("Mary Shelley", "Emily Bronte", "Virginia Woolf")),
    ("Who wrote Nineteen Eighty Four?", "George Orwell", ("Aldous Huxley", "Ray Bradbury", "Mark Twain")),
    ("Who wrote Moby Dick?", "Herman Melville", ("Jules Verne", "Mark Twain", "Charles Dickens")),
    ("Who wrote War and Peace?", "Leo Tolstoy", ("Anton Chekhov", "Fyodor Dostoevsky", "Victor Hugo")),
    ("Who wrote Don Quixote?", "Miguel de Cervantes", ("Victor Hugo", "Dante Alighieri", "Leo Tolstoy")),
    ("Who wrote Frankenstein?", "Mary Shelley", ("Jane Austen", "Emily Bronte", "Bram Stoker")),
    ("Who wrote Les Miserables?", "Victor Hugo", ("Jules Verne", "Leo Tolstoy", "Charles Dickens")),
    ("Who wrote Oliver Twist?", "Charles Dickens", ("George Orwell", "Herman Melville", "Mark Twain")),
    ("Who wrote Dracula?", "Bram Stoker", ("Mary Shelley", "Edgar Allan Poe", "Herman Melville")),
)


@dataclass(frozen=True)
class Person:
    """One invented person and their attribute values."""

    name: str
    attributes: dict[str, str]


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)


def make_people(count: int, rng: random.Random) -> list[Person]:
    """``count`` people with distinct two-word names (two syllables each) and random attribute values."""
    names: set[str] = set()
    people = []
    while len(people) < count:
        name = " ".join((_syllable(rng) + _syllable(rng)).capitalize() for _ in range(2))
        if name in names:
            continue
        names.add(name)
        people.append(Person(name, {key: rng.choice(values) for key, values in _VALUES.items()}))
    return people


def _perturbed_values(attribute: str, true_value: str, others: list[Person], rng: random.Random) -> list[str]:
    """Five distinct wrong values: other people's values of the attribute first, topped up from the pool."""
    seen = {p.attributes[attribute] for p in others} - {true_value}
    candidates = sorted(seen)
    rng.shuffle(candidates)
    if len(candidates) < NUM_PERTURBED:
        pool = sorted(set(_VALUES[attribute]) - set(candidates) - {true_value})
        rng.shuffle(pool)
        candidates += pool[: NUM_PERTURBED - len(candidates)]
    return candidates[:NUM_PERTURBED]


def person_rows(person: Person, everyone: list[Person], rng: random.Random) -> list[dict]:
    """One evaluation row per attribute (TOFU ``*_perturbed`` fields); plain rows keep question and answer."""
    others = [p for p in everyone if p.name != person.name]
    rows = []
    for attribute, (questions, answer, paraphrase) in _TEMPLATES.items():
        value = person.attributes[attribute]
        q_index = rng.randrange(len(questions))
        question = questions[q_index].format(name=person.name)
        paraphrased_question = questions[(q_index + 1) % len(questions)].format(name=person.name)
        wrong = _perturbed_values(attribute, value, others, rng)
        rows.append(
            {
                "question": question,
                "answer": answer.format(name=person.name, value=value),
                "paraphrased_answer": paraphrase.format(name=person.name, value=value),
                "perturbed_answer": [paraphrase.format(name=person.name, value=w) for w in wrong],
                "paraphrased_question": paraphrased_question,
            }
        )
    return rows


def split_sizes(num_people: int) -> dict[int, int]:
    """People per forget percentage: ``max(1, round(p / 100 * num_people))`` for p in 1, 5, 10."""
    return {p: max(1, round(p / 100 * num_people)) for p in FORGET_PERCENTS}


def generate_fictitious(seed: int = 0, num_people: int = 40) -> dict[str, list[dict]]:
    """All TOFU-named splits of the fictitious set as lists of rows; deterministic in ``seed``.

    Trained people are shuffled; the forget sets are the last 1/5/10 % of them (nested, like TOFU's), the
    retain sets the rest; ``num_people * 10 %`` extra people form the holdouts. ``retain_perturbed`` holds
    the first people of ``retain90`` (as many as ``forget10``), so it is a subset of every retain split.
    """
    if num_people < 2:
        raise InputError(f"num_people={num_people} leaves no retain set; use at least 2 (default 40)")
    rng = random.Random(seed)
    sizes = split_sizes(num_people)
    if sizes[10] >= num_people:
        raise InputError(f"num_people={num_people} is too small: forget10 would hold everyone; use at least 11")
    people = make_people(num_people + sizes[10], rng)
    trained, holdout = people[:num_people], people[num_people:]
    rows = {p.name: person_rows(p, people, rng) for p in people}

    def plain(group: list[Person]) -> list[dict]:
        return [{"question": r["question"], "answer": r["answer"]} for p in group for r in rows[p.name]]

    def perturbed(group: list[Person]) -> list[dict]:
        return [dict(r) for p in group for r in rows[p.name]]

    splits: dict[str, list[dict]] = {"full": plain(trained)}
    for percent, size in sizes.items():
        forget, retain = trained[num_people - size :], trained[: num_people - size]
        splits[f"forget{percent:02d}"] = plain(forget)
        splits[f"forget{percent:02d}_perturbed"] = perturbed(forget)
        splits[f"retain{100 - percent:02d}"] = plain(retain)
        splits[f"holdout{percent:02d}"] = plain(holdout[:size])
    splits["retain_perturbed"] = perturbed(trained[: min(sizes[10], num_people - sizes[10])])
    for key, facts in (("world_facts", _WORLD_FACTS), ("real_authors", _REAL_AUTHORS)):
        splits[key] = [{"question": q, "answer": a} for q, a, _ in facts]
        splits[f"{key}_perturbed"] = [{"question": q, "answer": a, "perturbed_answer": list(w)} for q, a, w in facts]
    assert set(splits) == set(TOFU_CONFIGS), sorted(set(TOFU_CONFIGS) ^ set(splits))
    return splits


def write_splits(splits: dict[str, list[dict]], folder: str | Path) -> Path:
    """Write each split as ``folder/{name}.json`` (JSON lines, TOFU's layout)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with open(folder / f"{name}.json", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return folder


def _texts_of(folder_or_texts: str | Path | Iterable[str]) -> list[str]:
    if not isinstance(folder_or_texts, (str, Path)):
        return list(folder_or_texts)
    texts = []
    for path in sorted(Path(folder_or_texts).glob("*.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            for value in row.values():
                texts.extend(value if isinstance(value, list) else [value])
    if not texts:
        raise FileNotFoundError(f"no TOFU-style *.json rows in '{folder_or_texts}' to build a tokenizer from")
    return texts


def build_fictitious_tokenizer(folder_or_texts: str | Path | Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over every word and punctuation mark of the texts (or a folder of splits).

    Words split on whitespace and punctuation; ``<bos>`` is prepended when special tokens are added; ``<eos>``
    ends answers; ``<pad>`` pads; unknown words map to ``<unk>``. The prompt words ``Question``/``Answer``
    of the plain QA format are always in the vocabulary. Decoding joins words with spaces and removes the
    space before punctuation.
    """
    texts = [*_texts_of(folder_or_texts), "Question: Answer:"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS)))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", tokenizer.token_to_id("<bos>"))]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )


def fictitious_complete(root: str | Path) -> bool:
    """Whether ``root`` holds every split file and the tokenizer."""
    root = Path(root)
    files = [root / f"{name}.json" for name in TOFU_CONFIGS] + [root / TOKENIZER_DIR / "tokenizer.json"]
    return all(path.is_file() for path in files)


def prepare_fictitious(root: str | Path, seed: int = 0, num_people: int = 40) -> Path:
    """Generate the splits and the tokenizer (in ``root/tokenizer``) into ``root`` once; return ``root``.

    Skips the work when ``root`` is complete. Writes into a temporary sibling folder and renames it, so a
    crash or a concurrent process never leaves a half-written ``root``.
    """
    root = Path(root).expanduser()
    if fictitious_complete(root):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        write_splits(generate_fictitious(seed, num_people), tmp)
        build_fictitious_tokenizer(tmp).save_pretrained(str(tmp / TOKENIZER_DIR))
        (tmp / "meta.json").write_text(json.dumps({"seed": seed, "num_people": num_people}))
        if root.exists() and not fictitious_complete(root):
            shutil.rmtree(root)
        try:
            os.replace(tmp, root)
        except OSError:
            if not fictitious_complete(root):  # someone else finished first only if root is complete
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def fictitious_root(cache_dir: str | Path | None = None, seed: int = 0, num_people: int = 40) -> Path:
    """Where the fictitious set of ``seed``/``num_people`` lives in the cache (``QADataModule`` uses it too)."""
    return cache_root(cache_dir) / f"fictitious-seed{seed}-people{num_people}"


def fictitious_tokenizer_path(cache_dir: str | Path | None = None, seed: int = 0, num_people: int = 40) -> Path:
    """The tokenizer folder of the cached fictitious set, generating the set first if needed."""
    return prepare_fictitious(fictitious_root(cache_dir, seed, num_people), seed, num_people) / TOKENIZER_DIR


def generated_root(init_args: Mapping[str, Any]) -> Path | None:
    """The folder a data module with these ``init_args`` reads its generated set from (``data: fictitious``, from
    ``data_root`` or the cache), generated there first if needed; ``None`` for any other data."""
    if init_args.get("data") != "fictitious":
        return None
    seed, people = init_args.get("data_seed", 0), init_args.get("num_people", 40)
    if init_args.get("data_root"):
        root = Path(str(init_args["data_root"])).expanduser()
    else:
        root = fictitious_root(init_args.get("cache_dir"), seed, people)
    return prepare_fictitious(root, seed=seed, num_people=people)

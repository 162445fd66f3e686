"""Text preparation for speech: sentence splitting (what streaming cuts at) and the pronunciation
lexicon (what every engine is told to say)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.errors import ConfigError
from ivr_server.speech.tts.lexicon import Lexicon
from ivr_server.speech.tts.sentences import MAX_CHARS, MIN_CHARS, split_sentences

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello. How are you? Fine!", ["Hello.", "How are you?", "Fine!"]),
        (
            "Dr. Smith will call you. Mr. and Mrs. Jones too.",
            ["Dr. Smith will call you.", "Mr. and Mrs. Jones too."],
        ),
        ("Bring ID, e.g. a passport. Thanks.", ["Bring ID, e.g. a passport.", "Thanks."]),
        ("That is, i.e. the rest. Done", ["That is, i.e. the rest.", "Done"]),
        (
            "Your balance is $12.50. Your limit is 3.5 percent.",
            ["Your balance is $12.50.", "Your limit is 3.5 percent."],
        ),
        ("Version 2.0.1 is out", ["Version 2.0.1 is out"]),
        ("no punctuation at all", ["no punctuation at all"]),
        (
            "Open at 9 a.m. Then we close at 5 p.m. on Fridays.",
            ["Open at 9 a.m.", "Then we close at 5 p.m. on Fridays."],
        ),
        ("Call J. Smith today.", ["Call J. Smith today."]),
        ("Wait... what?! Really.", ["Wait...", "what?!", "Really."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("Ticket No. 5 is ready.", ["Ticket No. 5 is ready."]),
        (
            "For balances, press 1\nFor transfers, press 2",
            ["For balances, press 1", "For transfers, press 2"],
        ),
        ("  spaced \t out   words.  ", ["spaced out words."]),
    ],
)
def test_sentences_split_where_a_reader_would_pause(text: str, expected: list[str]) -> None:
    """Terminal punctuation splits, except after titles, Latin abbreviations, initials and
    inside numbers; line breaks split too."""
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "...", "!?!", "-- , ;", "\n\n"])
def test_text_with_nothing_to_say_gives_no_pieces(text: str) -> None:
    """Empty text and punctuation alone give nothing (the synthesizer turns that into an error)."""
    assert split_sentences(text) == []


def test_the_first_piece_is_cut_at_a_clause_so_audio_starts_early() -> None:
    """A long first sentence is cut at a comma near first_max_chars; later ones stay whole."""
    text = (
        "Welcome to First National Bank, where your money is safe, sound and growing every day. "
        "To hear your balance, press one, and to transfer money between accounts, press two."
    )
    pieces = split_sentences(text)
    assert pieces[0] == "Welcome to First National Bank,"
    assert pieces[1] == "where your money is safe, sound and growing every day."
    assert pieces[2] == "To hear your balance, press one, and to transfer money between accounts, press two."


def test_a_short_clause_is_not_cut_off() -> None:
    """'Yes,' alone would sound clipped: cuts leave at least MIN_CHARS on each side."""
    pieces = split_sentences(
        "Yes, I can help you with your account balance and your recent transactions today."
    )
    assert all(len(p) >= MIN_CHARS for p in pieces)
    assert pieces[0] != "Yes,"


def test_a_long_run_without_punctuation_is_cut_at_spaces_within_the_limit() -> None:
    """5,000 characters of words with no punctuation: pieces of at most MAX_CHARS, cut at spaces."""
    text = " ".join(["balance"] * 625)
    pieces = split_sentences(text)
    assert len(pieces) > 20
    assert all(len(p) <= MAX_CHARS for p in pieces)
    assert all(p.split(" ") == ["balance"] * len(p.split(" ")) for p in pieces)


def test_an_endless_word_is_cut_anyway() -> None:
    """One 'word' longer than the limit is cut hard rather than handed to an engine whole."""
    pieces = split_sentences("x" * 1000)
    assert "".join(pieces) == "x" * 1000 and all(len(p) <= MAX_CHARS for p in pieces)


def test_non_ascii_text_splits_and_keeps_its_letters() -> None:
    """Accented Latin and Cyrillic text splits like English."""
    assert split_sentences("Grüße aus Köln. Café naïve? Он сказал.") == [
        "Grüße aus Köln.",
        "Café naïve?",
        "Он сказал.",
    ]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="first_max_chars"):
        split_sentences("hello", first_max_chars=5)
    with pytest.raises(ValueError, match="max_chars"):
        split_sentences("hello", first_max_chars=100, max_chars=50)


def _alnum(text: str) -> str:
    return "".join(c for c in text if c.isalnum())


@given(st.text(alphabet=st.sampled_from(list("abcXYZ019 .,;:!?-\n$é")), max_size=600))
def test_splitting_loses_no_word_and_respects_the_limit(text: str) -> None:
    """Property: every letter and digit survives, in order; every piece is speakable and within
    MAX_CHARS."""
    pieces = split_sentences(text)
    assert _alnum("".join(pieces)) == _alnum(text)
    assert all(p and p == p.strip() and _alnum(p) and len(p) <= MAX_CHARS for p in pieces)


def test_lexicon_replaces_whole_words_in_any_case() -> None:
    """Whole words only ('PIN' but not 'pinned'), any case, multi-word and dotted keys; longer
    keys win."""
    lexicon = Lexicon({"PIN": "pin", "IVR": "I V R", "e.g.": "for example", "IVR menu": "phone menu"})
    assert lexicon.apply("Enter your PIN, e.g. 1234.") == "Enter your pin, for example 1234."
    assert lexicon.apply("the ivr, the Ivr menu, pinned") == "the I V R, the phone menu, pinned"
    assert lexicon.apply("PINs") == "PINs"  # not a whole-word match
    assert Lexicon().apply("IVR") == "IVR"


def test_the_shipped_lexicon_loads_and_spells_out_domain_words() -> None:
    """prompts/lexicon.toml is valid and respells the acronyms a bank IVR says."""
    lexicon = Lexicon.load(REPO / "prompts" / "lexicon.toml")
    assert len(lexicon) >= 10
    assert (
        lexicon.apply("Your IVR PIN works at any ATM 24/7.")
        == "Your I V R pin works at any A T M twenty-four seven."
    )


def test_a_bad_lexicon_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """Missing file, bad TOML, wrong types: ConfigError naming the file and the entry."""
    with pytest.raises(ConfigError, match="cannot be read"):
        Lexicon.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[lexicon\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Lexicon.load(bad)
    bad.write_text("[lexicon]\nPIN = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*'PIN'"):
        Lexicon.load(bad)
    bad.write_text('lexicon = "x"\n')
    with pytest.raises(ConfigError, match="must be a table"):
        Lexicon.load(bad)


def test_a_short_lead_in_before_a_colon_is_its_own_first_piece() -> None:
    """It repeats across calls, so it plays from the cache while the rest is synthesized."""
    assert split_sentences("You said: i want to speak to an agent. Goodbye.") == [
        "You said:",
        "i want to speak to an agent.",
        "Goodbye.",
    ]
    assert split_sentences("Note: ok.") == ["Note: ok."]  # too little after it to be worth a piece
    assert split_sentences("At 9:30 we open.") == ["At 9:30 we open."]  # a time, not a lead-in
    assert split_sentences("First. Then: something else entirely.") == [
        "First.",
        "Then: something else entirely.",
    ]

"""How callers ask for a repair, and what the engine answers when a flow has no wording of its own.

Like VoiceXML's universal grammars (help, cancel, exit) these hold in every state of every flow:
a caller who says "sorry, say that again" or "what can I say?" is asking about the dialog, not
answering the question. An utterance asks for a repair when, with the polite words around it
taken off ("sorry, could you ... please"), it *is* one of the phrases: "I want to put a hold on my
card" is a request, "hold on" is a repair. A flow adds phrases (``repair: phrases:``) and words
the answers (prompts named ``repair_*``); the phrases below are English and Korean.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from ivr_server.spoken_numbers import GRAMMAR_DIGITS

if TYPE_CHECKING:
    from ivr_server.dialog.spec.model import Intent

DROPPED_SUBJECT = {"en": "i"}  # a phrase's first word a caller (or the recognizer) may leave out

# Repairs the caller asks for in so many words; corrections and digressions are found from what
# the words mean in the state (repair.py), not from phrases.
ASKED = ("repeat", "help", "cancel", "start_over", "back", "hold", "agent")

PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "repeat": (
            "what", "huh", "pardon", "pardon me", "come again", "say that again", "say it again",
            "repeat", "repeat that", "repeat it", "repeat the question", "one more time", "again",
            "i didn't catch that", "i didn't get that", "i didn't hear you", "i didn't hear that",
            "what did you say", "what was that", "i missed that",
        ),
        "help": (
            "help", "what can i say", "what can i do", "what are my options", "options",
            "what are the options", "what do i say", "i don't know what to say", "menu options",
        ),
        "cancel": (
            "cancel", "cancel that", "cancel it", "never mind", "forget it", "forget about it", "stop",
        ),
        "start_over": (
            "start over", "start again", "start from the beginning", "from the beginning", "main menu",
            "begin again", "restart", "let's start over",
        ),
        "back": ("go back", "back", "previous", "go back one step", "back up", "previous question"),
        "hold": (
            "wait", "wait a second", "wait a minute", "wait a moment", "hold on", "hang on",
            "hold on a second", "hang on a second", "one moment", "one second", "one sec",
            "just a moment", "just a second",
            "give me a second", "give me a minute", "give me a moment", "let me check", "let me find it",
            "let me get my card", "let me look",
        ),
        "agent": (
            "agent", "an agent", "a live agent", "representative", "a representative", "operator",
            "the operator", "a human", "human", "a real person", "a person", "someone", "somebody",
            "speak to an agent", "talk to an agent", "speak to someone", "talk to someone",
            "speak to a person", "talk to a person", "speak to a human", "talk to a human",
            "customer service", "customer support",
        ),
    },
    "ko": {
        "repeat": ("뭐라고요", "다시 말해 주세요", "다시 한번 말해 주세요", "다시요", "못 들었어요", "다시"),
        "help": ("도움말", "도와주세요", "뭐라고 말해야 해요", "어떻게 해요"),
        "cancel": ("취소", "취소해 주세요", "됐어요", "그만"),
        "start_over": ("처음부터", "처음으로", "처음부터 다시"),
        "back": ("이전", "뒤로", "이전으로"),
        "hold": ("잠깐만요", "잠시만요", "잠깐만 기다려 주세요", "잠시만 기다려 주세요"),
        "agent": ("상담원", "상담원 연결", "상담원 연결해 주세요", "사람이랑 통화", "직원"),
    },
}  # fmt: skip

# Words that ask for a person wherever they are in a short turn ("can I get a human on the line").
AGENT_WORDS: dict[str, tuple[str, ...]] = {
    # not "customer service": "I'm closing my account over poor customer service" is a request
    "en": ("agent", "representative", "operator", "human", "real person", "live person"),
    "ko": ("상담원", "직원"),
}
# Said around a request for a repair without changing it ("sorry, could you say that again please").
POLITE: dict[str, frozenset[str]] = {
    "en": frozenset(
        {
            "please",
            "sorry",
            "um",
            "uh",
            "er",
            "erm",
            "oh",
            "ah",
            "okay",
            "ok",
            "hey",
            "hi",
            "well",
            "so",
            "just",
            "can",
            "could",
            "would",
            "you",
            "i",
            "i'd",
            "like",
            "want",
            "to",
            "need",
            "let's",
            "me",
            "the",
            "uh-huh",
            "yeah",
        }
    ),
    "ko": frozenset(("좀", "저", "저기", "음", "어", "아")),  # not 네: it is a yes
}
# Words that make the rest of an answer a correction of what was just understood.
CORRECTING: dict[str, tuple[str, ...]] = {
    "en": ("no", "nope", "not", "i said", "i meant", "wrong", "it's", "it is", "it was"),
    "ko": ("아니요", "아니", "아니에요", "말고"),
}

# What the engine says when the flow has no prompt ``repair_<name>``, per language (a language
# missing here: English, so a flow in it should word each one). The last names are the engine's
# own turns (asking again, confirming), not repairs.
WORDING: dict[str, dict[str, str]] = {
    "en": {
        "hold": "Sure, take your time. I'll wait.",
        "still_there": "Are you still there?",
        "help_listen": "You can say things like {examples}.",
        "help_keys": "Or use your keypad: {keys}.",
        "help_more": "At any time you can say: repeat, go back, start over, or agent.",
        "cancel_confirm": "You want to cancel your {task} request, right?",
        "cancelled": "Okay, I've cancelled that.",
        "start_over_confirm": "You want to start over, right?",
        "started_over": "Okay, let's start again.",
        "back": "Okay, let's go back.",
        "cannot_go_back": "That step is already done, so I can't go back before it.",
        "at_start": "We're at the first question.",
        "too_many": "Let me put you through to someone who can help.",
        "corrected": "Got it, I've changed that.",
        "digression_resume": "Now, back to your {task} request.",
        "digression_later": "Let's finish your {task} request first.",
        "agents_busy": "All our agents are busy right now. I can keep helping you here.",
        "agent_offer": "Before I put you through, I can finish your {task} request: it's one answer "
        "away. Shall I finish it first?",
        "reprompt": "Sorry, I didn't get that.",
        "try_again": "Please try again.",
        "not_valid": "Sorry, {reason}.",
        "confirm_value": "I have {value}. Is that right?",
        "confirm_intent": "You want {task}, right?",
        "which": "Do you want {a}, or {b}? Press 1 or 2, or say which.",
        "key_for": "press {key} for {task}",
    },
    "ko": {
        "hold": "네, 천천히 하세요. 기다리겠습니다.",
        "still_there": "아직 통화 중이신가요?",
        "help_listen": "이렇게 말씀하실 수 있습니다. {examples}.",
        "help_keys": "또는 다이얼을 누르세요. {keys}.",
        "help_more": "언제든지 다시, 이전, 처음부터, 상담원이라고 말씀하실 수 있습니다.",
        "cancel_confirm": "{task} 요청을 취소하시겠습니까?",
        "cancelled": "네, 취소했습니다.",
        "start_over_confirm": "처음부터 다시 하시겠습니까?",
        "started_over": "네, 처음부터 다시 하겠습니다.",
        "back": "네, 이전 단계로 돌아가겠습니다.",
        "cannot_go_back": "그 단계는 이미 처리되어 되돌릴 수 없습니다.",
        "at_start": "지금이 첫 번째 질문입니다.",
        "too_many": "도와드릴 수 있는 상담원에게 연결해 드리겠습니다.",
        "corrected": "네, 바꿨습니다.",
        "digression_resume": "이제 {task} 요청으로 돌아가겠습니다.",
        "digression_later": "먼저 {task} 요청을 마치겠습니다.",
        "agents_busy": "지금은 모든 상담원이 통화 중입니다. 제가 계속 도와드릴 수 있습니다.",
        "agent_offer": "연결해 드리기 전에 {task} 요청을 마칠 수 있습니다. 한 가지만 답해 주시면 됩니다. "
        "먼저 마칠까요?",
        "reprompt": "죄송합니다. 잘 듣지 못했습니다.",
        "try_again": "다시 말씀해 주세요.",
        "not_valid": "죄송합니다. 다시 말씀해 주세요.",
        "confirm_value": "{value} 맞습니까?",
        "confirm_intent": "{task} 원하시는 거 맞습니까?",
        "which": "{a} 또는 {b} 중 어느 것을 원하십니까? 1번이나 2번을 누르시거나 말씀해 주세요.",
        "key_for": "{task}는 {key}번",
    },
}
# Slot kinds explained for "what can I say?" while a slot is asked for.
SLOT_HELP: dict[str, dict[str, str]] = {
    "en": {
        "digits": "Say the digits one at a time, or key them in.",
        "card_number": "Say the card number one digit at a time, or key it in.",
        "yes_no": "Say yes or no, or press 1 for yes and 2 for no.",
        "amount": "Say the amount, for example: twenty five dollars. Or key it in, with star for the point.",
        "number": "Say the number, or key it in.",
        "date": "Say the date, for example: the third of May.",
        "text": "Say it in a few words.",
    },
    "ko": {
        "digits": "숫자를 하나씩 말씀하시거나 다이얼로 누르세요.",
        "card_number": "카드 번호를 한 자리씩 말씀하시거나 다이얼로 누르세요.",
        "yes_no": "네 또는 아니요로 말씀하시거나, 네는 1번, 아니요는 2번을 누르세요.",
        "amount": "금액을 말씀하시거나 다이얼로 누르세요.",
        "number": "숫자를 말씀하시거나 다이얼로 누르세요.",
        "date": "날짜를 말씀해 주세요.",
        "text": "짧게 말씀해 주세요.",
    },
}


def wording(language: str, name: str) -> str:
    """The engine's default words for ``name`` in ``language`` (English when it has none)."""
    return WORDING.get(language, {}).get(name) or WORDING["en"][name]


def slot_help(language: str, kind: str) -> str:
    table = SLOT_HELP.get(language, SLOT_HELP["en"])
    return table.get(kind, table["text"])


_WORD = re.compile(r"[\w']+")
_DIGITS = frozenset(GRAMMAR_DIGITS)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def asked_repair(
    said: str, language: str, extra: Mapping[str, Sequence[str]] | None = None, allowed: Sequence[str] = ASKED
) -> str | None:
    """The repair ``said`` asks for (one of ``allowed``), or None when it asks for none: the words
    are that repair's phrases and polite words only ("hold on, let me get my card"), or, for an
    agent, name one ("can I talk to a real person about this")."""
    got = words(said)
    if not got or len(got) > 12:  # a repair is asked for in a few words; a long turn is a request
        return None
    polite = POLITE.get(language, frozenset())
    for repair in allowed:
        phrases = _phrases(language, repair, extra)
        if _made_of(tuple(got), phrases, polite):
            return repair
        if repair == "agent" and any(_has(got, words(w)) for w in AGENT_WORDS.get(language, ())):
            return repair
    return None


def loosely_asked_repair(
    said: str, language: str, extra: Mapping[str, Sequence[str]] | None = None, allowed: Sequence[str] = ASKED
) -> str | None:
    """The repair ``said`` asks for with one word that is neither a phrase's nor a polite one: a
    word the recognizer got wrong ("i want that cancel", "did you say it again please"). Looser
    than asked_repair, so the engine tries it last, on an answer it found nothing else in."""
    got = words(said)
    if not got or len(got) > 12:
        return None
    polite = POLITE.get(language, frozenset())
    for repair in allowed:
        phrases = _phrases(language, repair, extra)
        if _made_of(tuple(got), phrases, polite, stray=1):
            return repair
    return None


def _phrases(language: str, repair: str, extra: Mapping[str, Sequence[str]] | None) -> set[tuple[str, ...]]:
    """A repair's phrases as word tuples, the built-in ones and the flow's; a phrase that starts
    with the subject "I" also without it: callers drop it ("didn't catch that") and a short
    unstressed "I" is what a recognizer loses first."""
    out = set()
    for phrase in (*PHRASES.get(language, {}).get(repair, ()), *(extra or {}).get(repair, ())):
        got = tuple(words(phrase))
        out.add(got)
        if len(got) > 2 and got[0] == DROPPED_SUBJECT.get(language):
            out.add(got[1:])
    return out


def _made_of(
    got: tuple[str, ...], phrases: set[tuple[str, ...]], polite: frozenset[str], stray: int = 0
) -> bool:
    """Whether ``got`` splits into phrases and polite words, at least one phrase among them, and
    at most ``stray`` other words (never a digit: a misheard answer is not a repair)."""
    longest = max((len(p) for p in phrases), default=0)
    # reach[i]: the ways words[:i] split so far, as (a phrase used, stray words) pairs
    reach: dict[int, set[tuple[bool, int]]] = {0: {(False, 0)}}
    for i in range(len(got)):
        for used, strays in reach.get(i, set()):
            if got[i] in polite:
                reach.setdefault(i + 1, set()).add((used, strays))
            elif strays < stray and got[i] not in _DIGITS:
                reach.setdefault(i + 1, set()).add((used, strays + 1))
            for n in range(1, longest + 1):
                if got[i : i + n] in phrases:
                    reach.setdefault(i + n, set()).add((True, strays))
    return any(used for used, _ in reach.get(len(got), set()))


def _has(got: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(list(got[i : i + n]) == list(phrase) for i in range(len(got) - n + 1))


def correcting(said: str, language: str) -> bool:
    """Whether the words start as a correction ("no, I said ...", "actually ...", "not my card")."""
    text = " ".join(words(said))
    return any(text == m or text.startswith(m + " ") for m in CORRECTING.get(language, ()))


def without_correction(said: str, language: str) -> str:
    """The words after the correcting ones: "no I said 5678" -> "5678"."""
    got = words(said)
    markers = sorted((words(m) for m in CORRECTING.get(language, ())), key=len, reverse=True)
    changed = True
    while got and changed:
        changed = False
        for m in markers:
            if got[: len(m)] == m:
                got, changed = got[len(m) :], True
                break
    return " ".join(got)


def humanized(name: str) -> str:
    return name.replace("_", " ")


def example_list(intents: Sequence[Intent]) -> str:
    """The intents' first examples, quoted: what "you can say things like ..." offers."""
    return ", ".join(f"'{i.examples[0]}'" for i in intents if i.examples)


def key_list(intents: Sequence[Intent], language: str = "en", task: Callable[[str], str] = humanized) -> str:
    """ "press 1 for balance, press 2 for ..." for the intents that have a key (``task`` words
    an intent's name)."""
    form = wording(language, "key_for")
    return ", ".join(form.format(key=i.dtmf, task=task(i.name)) for i in intents if i.dtmf)

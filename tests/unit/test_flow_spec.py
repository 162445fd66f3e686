"""Flow files: the shipped flows load, and each kind of mistake is named with its place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.dialog.spec.loader import check_file, check_text, load_flow
from ivr_server.dialog.spec.template import parse_template
from ivr_server.errors import FlowError

REPO = Path(__file__).resolve().parents[2]
BANKING = (REPO / "flows" / "banking.yaml").read_text()


def problems_of(text: str) -> list[str]:
    flow, problems = check_text(text, "banking.yaml")
    assert flow is None, "expected the flow to be rejected"
    return [str(p) for p in problems]


def line_of(text: str, needle: str) -> int:
    """The first line containing ``needle``, or equal to it when it ends with a newline."""
    if needle.endswith("\n"):
        return next(i for i, line in enumerate(text.splitlines(), 1) if line == needle[:-1])
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("name", ["banking", "phone-tree", "banking-ko"])
def test_the_shipped_flows_are_valid(name: str) -> None:
    flow = load_flow(REPO / "flows" / f"{name}.yaml")
    assert flow.name == name and flow.start in flow.states
    assert {"balance", "transactions", "lost_card", "agent"} <= flow.intents.keys()
    assert flow.slots["account"].secure and flow.slots["last4"].length == 4
    assert flow.tools["block_card"].critical and flow.tools["get_balance"].retries == 2


def test_a_typo_in_a_state_name_is_named_with_its_line_and_a_suggestion() -> None:
    text = BANKING.replace("{intent: lost_card, goto: lost_card}", "{intent: lost_card, goto: lost_crad}", 1)
    line = line_of(text, "goto: lost_crad")
    (problem,) = problems_of(text)
    assert problem.startswith(f"banking.yaml:{line}:")
    assert "state 'lost_crad' is not defined (did you mean 'lost_card'?)" in problem


def test_a_missing_prompt_is_named_where_it_is_used() -> None:
    text = BANKING.replace('  ask_last4: "Please say or key in the last four digits of the card."\n', "")
    problem = " ".join(problems_of(text))
    assert f"banking.yaml:{line_of(text, 'prompt: ask_last4')}:" in problem
    assert "prompt 'ask_last4' is not defined" in problem


def test_a_cycle_with_no_exit_is_rejected_naming_its_states() -> None:
    text = (
        "flow: loop\nstart: welcome\nprompts: {hi: Hello}\nintents: {again: {keywords: [again]}}\n"
        "states:\n"
        "  welcome:\n    say: hi\n    listen: [again]\n"
        "    on: [{intent: again, goto: menu}, {event: no_match, goto: welcome}]\n"
        "  menu:\n    say: hi\n    on: [{event: done, goto: welcome}]\n"
    )
    problems = problems_of(text)
    state_line = line_of(text, "  welcome:\n")
    assert any(
        p.startswith(f"banking.yaml:{state_line}:3: state 'welcome' has no way out") for p in problems
    ), problems
    assert "none of them ends, transfers or hangs up" in problems[0]


def test_a_slot_of_an_unknown_type_is_named_with_the_types_there_are() -> None:
    text = BANKING.replace("    type: digits\n    length: 4", "    type: digit\n    length: 4", 1)
    problems = problems_of(text)
    assert any(
        p.startswith(f"banking.yaml:{line_of(text, 'type: digit')}:")
        and "slot 'last4': unknown type 'digit' (did you mean 'digits'?)" in p
        and "card_number" in p
        for p in problems
    ), problems


def test_every_problem_is_reported_at_once() -> None:
    text = BANKING.replace("goto: lost_card}", "goto: lost_crad}", 1).replace("type: amount", "type: money")
    text = text.replace("  agent:\n    examples:", "  agent:\n    exampels:")
    problems = problems_of(text)
    assert any("unknown key 'exampels' (did you mean 'examples'?)" in p for p in problems)
    assert any("lost_crad" in p for p in problems) and any("'money'" in p for p in problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flow: x\nstates: [\n", ":3:1: not valid YAML"),
        ("", ":1:1: the file is empty"),
        ("flow: x\nstates:\n  a: {end: true}\n  a: {end: true}\n", ":4:3: 'a' is defined twice"),
        ("flow: x\nstates:\n  a: {end: yes, say: [1, {x: 2}]}\n", "states.a.say items must be text"),
        (
            "flow: x\nstates:\n  a:\n    on: [{event: no, goto: a}]\n",
            "event was read as False (YAML): quote the name",
        ),
        ("flow: x\nstates:\n  Bad-Name: {end: true}\n", "'Bad-Name' is not a valid name"),
        (
            "flow: x\nprompts: {p: \"{__import__('os')}\"}\nstates:\n  a: {say: p, end: true}\n",
            "must be a slot name",
        ),
        (
            'flow: x\nslots: {pin: {type: digits, secure: true}}\nprompts: {p: "PIN {pin}"}\n'
            "states:\n  a: {say: p, end: true}\n",
            "slot 'pin' is secure: a prompt must never speak it",
        ),
        (
            "flow: x\ntools: {t: {method: POST, service: bank, path: /x, retries: 2}}\n"
            "states:\n  a: {do: [{call: t}], end: true}\n",
            "retries but is not idempotent",
        ),
        (
            "flow: x\nsettings: {act_above: 0.3, confirm_above: 0.6}\nstates:\n  a: {end: true}\n",
            "confirm_above <= act_above",
        ),
        (
            "flow: x\nsettings: {asr_confirm_below: 1.5}\nstates:\n  a: {end: true}\n",
            "asr_confirm_below must be between 0 and 1",
        ),
        (
            "flow: x\nsettings: {digits_end_silence_ms: -5}\nstates:\n  a: {end: true}\n",
            "digits_end_silence_ms must not be negative",
        ),
        ("flow: x\nstates:\n  a: {say: []}\n", "state 'a' has no way on"),
        (
            "flow: x\nrepair: {off: [repaet]}\nstates:\n  a: {end: true}\n",
            "unknown repair 'repaet' (did you mean 'repeat'?)",
        ),
        ("flow: x\nrepair: {hold_s: 100000}\nstates:\n  a: {end: true}\n", "hold_s must be from 1 to 600"),
        (
            "flow: x\nrepair: {phrases: {hold: 5}}\nstates:\n  a: {end: true}\n",
            "repair.phrases.hold must be a list",
        ),
        ("flow: x\nrepair: {phrases: {jump: [hop]}}\nstates:\n  a: {end: true}\n", "unknown key 'jump'"),
        (
            "flow: x\nprompts: {repair_holdd: wait}\nstates:\n  a: {end: true}\n",
            "'repair_holdd' words no repair (did you mean 'hold'?)",
        ),
        (
            'flow: x\nprompts: {repair_cancelled: "{tsk} gone"}\nstates:\n  a: {end: true}\n',
            "slot 'tsk' is not defined",
        ),
        (
            "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e]\n",
            "more than 100000 values (YAML aliases expanding?)",
        ),
    ],
)
def test_bad_input_gets_a_message_naming_the_place(text: str, expected: str) -> None:
    assert any(expected in p for p in problems_of(text)), problems_of(text)


def test_the_cli_validates_and_exits_6_on_a_bad_flow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BANKING.replace("goto: lost_card}", "goto: lost_crad}", 1))
    run = [sys.executable, "-m", "ivr_server", "flows", "validate"]
    ok = subprocess.run(
        [*run, str(REPO / "flows" / "banking.yaml")], capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and "ok: flow 'banking' (11 states" in ok.stdout
    out = subprocess.run([*run, str(bad)], capture_output=True, text=True, check=False)
    assert out.returncode == 6
    assert f"{bad}:{line_of(bad.read_text(), 'lost_crad')}:" in out.stderr and "1 problem(s)" in out.stderr
    missing = subprocess.run([*run, str(tmp_path / "nope.yaml")], capture_output=True, text=True, check=False)
    assert missing.returncode == 6 and "cannot read the file" in missing.stderr


def test_load_flow_raises_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: x\nstates:\n  a: {goto: b}\n")
    with pytest.raises(FlowError, match=r"bad.yaml:3:3: state 'a' has no way on.*\(and 1 more\)") as err:
        load_flow(bad)
    assert any("3:13: unknown key 'goto'" in str(p) for p in err.value.problems)
    assert check_file(bad)[0] is None


def test_a_flow_turns_repairs_off_and_words_them() -> None:
    text = BANKING.replace(
        "prompts:\n",
        "repair:\n  off: [hold, digression]\n  max_restarts: 1\n"
        "  phrases: {repeat: [run that by me again]}\nprompts:\n"
        '  repair_digression_resume: "Back to the {task} now."\n',
        1,
    )
    flow, problems = check_text(text, "banking.yaml")
    assert flow is not None, [str(p) for p in problems]
    assert (
        flow.repair.off == {"hold", "digression"} and not flow.repair.on("hold") and flow.repair.on("repeat")
    )
    assert flow.repair.max_restarts == 1 and flow.repair.phrases == {"repeat": ("run that by me again",)}
    assert (
        flow.prompts["repair_digression_resume"].text["en"].render({"task": "lost card"})
        == "Back to the lost card now."
    )


def test_a_warm_transfer_may_come_back_so_its_state_is_not_an_end() -> None:
    flow = load_flow(REPO / "flows" / "banking.yaml")
    (transfer,) = flow.states["agent"].actions
    assert (
        transfer.warm
        and transfer.transfer["endpoint"] == "PJSIP/agent"
        and transfer.transfer["ring_s"] == "15"
    )
    assert not flow.states["agent"].terminal and flow.states["queue"].terminal
    assert [t.goto for t in flow.states["agent"].on if t.event == "transfer_failed"] == ["agents_busy"]


def test_templates_render_slots_and_only_slots() -> None:
    t = parse_template("Card ending {last4:digits}: {{not a slot}} {balance:amount}.")
    assert t.slots == ("last4", "balance")
    assert t.render({"last4": "4421", "balance": "1234.5"}) == (
        "Card ending 4 4 2 1: {not a slot} 1234 dollars and 50 cents."
    )
    for bad in ("{a.b}", "{a[0]}", "{a:unknown}", "{", "}", "{a()}", "{A}"):
        with pytest.raises(FlowError):
            parse_template(bad)


@given(st.text(max_size=300))
def test_any_text_gives_a_flow_or_problems_never_an_exception(text: str) -> None:
    flow, problems = check_text(text)
    assert (flow is None) == bool(problems)


@given(
    st.text(max_size=80),
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), st.text(max_size=20)),
)
def test_a_template_parses_or_says_why_and_renders_values_as_text(text: str, values: dict[str, str]) -> None:
    try:
        template = parse_template(text)
    except FlowError:
        return
    rendered = template.render(values)
    assert isinstance(rendered, str)


def test_end_silence_is_the_servers_unless_the_flow_sets_it() -> None:
    """A flow without end_silence_ms leaves it to IVR_VAD_END_SILENCE_MS (None); one that sets
    it, in its settings or a state's, gets its own value."""
    unset = BANKING.replace("  end_silence_ms: 300\n", "", 1)
    flow, problems = check_text(unset, "banking.yaml")
    assert flow is not None, problems
    assert flow.settings.end_silence_ms is None
    assert all(s.settings.end_silence_ms is None for s in flow.states.values())
    flow, _ = check_text(BANKING.replace("end_silence_ms: 300", "end_silence_ms: 450", 1), "b.yaml")
    assert flow is not None and flow.states["welcome"].settings.end_silence_ms == 450


@pytest.mark.parametrize("text", ["=", "flow: !!python/object:os.system x\n", "a: !include other.yaml\n"])
def test_a_yaml_tag_no_safe_constructor_takes_is_a_problem_not_an_exception(text: str) -> None:
    """Found by the property test above: YAML's "=" value tag, a python tag or an unknown
    local tag is named with its place; nothing is constructed."""
    flow, problems = check_text(text, "banking.yaml")
    assert flow is None and problems and str(problems[0]).startswith("banking.yaml:1:")


ALIAS_BOMB = "".join(
    f"{c}: &{c} [{', '.join([f'*{p}' if p else 'x'] * 9)}]\n"
    for p, c in zip(["", *"abcdef"], "abcdefg", strict=True)
)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("flow: x\nstates: !!python/object/apply:os.system ['echo hi']\n", "tag 'tag:yaml.org,2002:python/"),
        (
            "flow: x\nstates: !include other.yaml\n",
            "YAML tag '!include' is not allowed",
        ),
        ("flow: x\nb: !!binary aGVsbG8=\n", "tag 'tag:yaml.org,2002:binary' is not allowed"),
        ("flow: x\ns: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        ("".join("  " * i + f"k{i}:\n" for i in range(3000)), "nest"),  # libyaml: "maximum nesting depth"
        (ALIAS_BOMB.replace("a: &a", "flow: x\na: &a"), "more than 100000 values"),
        ("flow: x\nversion: " + "9" * 5000 + "\n", "cannot be read as a value: Exceeds the limit"),
        ("flow: 2001-13-45\n", "'2001-13-45' cannot be read as a value: month must be in 1..12"),
        ("\x00\x01\x02 flow: x", "not valid YAML"),
        (
            "flow: x\nname: a\ud800\n",
            "hostile.yaml:2:8: not valid YAML: a character that is not Unicode text",
        ),
        (
            "flow: x\nstates:\n  a: {end: true}\nnlu:\n  data: [../secrets.csv]\n",
            "'../secrets.csv' must be a path inside the flow file's",
        ),
        (
            "flow: x\nstates:\n  a: {end: true}\nnlu:\n  data: [/etc/passwd]\n",
            "'/etc/passwd' must be a path inside the flow file's",
        ),
    ],
)
def test_hostile_flow_files_are_problems_naming_what_was_wrong(text: str, named: str) -> None:
    flow, problems = check_text(text, "hostile.yaml")
    assert flow is None and any(named in str(p) for p in problems), problems


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
flow_keys = st.sampled_from(
    ["flow", "start", "states", "prompts", "intents", "slots", "on", "say", "goto", "x"]
)


@given(st.dictionaries(flow_keys, yaml_values, max_size=6))
def test_any_yaml_document_gives_a_flow_or_problems_never_an_exception(document: dict) -> None:
    import yaml

    flow, problems = check_text(yaml.safe_dump(document))
    assert (flow is None) == bool(problems)


@pytest.mark.parametrize("pid", ["../evil", "/tmp/evil", "a/b", ".hidden", ""])
def test_a_prompt_id_that_is_not_a_name_is_refused_before_it_names_a_file(pid: str, tmp_path: Path) -> None:
    from ivr_server.errors import MediaError
    from ivr_server.media.prompts import read_texts

    (tmp_path / "prompts.toml").write_text(f'[prompts]\nwelcome = "Hello"\n"{pid}" = "x"\n')
    with pytest.raises(MediaError, match="are not names"):
        read_texts(tmp_path)


WELCOME = (REPO / "flows" / "welcome.yaml").read_text()


def test_a_language_choice_says_its_prompt_in_each_language_and_hands_over_to_a_flow() -> None:
    flow = load_flow(REPO / "flows" / "welcome.yaml")
    (say,) = flow.states["choose"].actions
    assert say.kind == "say" and say.languages == ("en", "ko")
    (switch,) = flow.states["korean"].actions
    assert switch.kind == "flow" and switch.flow == "banking-ko" and flow.states["korean"].terminal


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        (
            "{say: choose, in: [en, ko]}",
            "{say: choose, in: [en, fr]}",
            "language 'fr' is not in the flow's languages",
        ),
        ("{flow: banking-ko}", "{flow: '../../etc/passwd'}", "a flow name (letters, digits, - and _)"),
        ("{flow: banking-ko}", "{flow: [a, b]}", "a flow name"),
        (
            '    ko: "한국어 서비스는',
            '    fr: "한국어 서비스는',
            "language 'fr' is not in the flow's languages",
        ),
    ],
)
def test_a_language_the_flow_does_not_have_is_named(old: str, new: str, named: str) -> None:
    text = WELCOME.replace(old, new, 1)
    assert text != WELCOME
    flow, problems = check_text(text, "welcome.yaml")
    assert flow is None and any(named in str(p) for p in problems), problems

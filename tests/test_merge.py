"""Deterministic cases for merging concurrent full-text changes (app.merge)."""

from __future__ import annotations

import pytest

from app.domain.merge import Rebased, TextHistory


def send(history: TextHistory, author: str, text: str, base: int | None) -> Rebased:
    """What the room does with one codeChange: rebase, then commit as the next version."""
    rebased = history.rebase(author, text, base)
    history.commit(rebased, history.version + 1)
    return rebased


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_inserts_at_different_places_on_same_base_both_survive() -> None:
    history = TextHistory("hello world", 0)
    send(history, "alice", "hello, world", 0)
    result = send(history, "bob", "hello world!", 0)
    assert result.text == "hello, world!"
    assert result.merged is True
    assert result.reason is None
    assert history.text == "hello, world!"
    assert history.version == 2


@pytest.mark.parametrize("deleter_first", [True, False])
@pytest.mark.parametrize(
    "inserted",
    ["one Xtwo three", "one two Xthree"],
    ids=["right-before-the-range", "right-after-the-range"],
)
def test_insert_adjacent_to_a_range_the_other_deleted_survives(
    inserted: str, deleter_first: bool
) -> None:
    history = TextHistory("one two three", 0)
    changes = [("alice", "one three"), ("bob", inserted)]
    for author, text in changes if deleter_first else reversed(changes):
        send(history, author, text, 0)
    assert history.text == "one Xthree"


def test_insert_inside_a_range_the_other_deleted_gives_the_same_text_whichever_arrives_first() -> (
    None
):
    results = []
    for order in (["alice", "bob"], ["bob", "alice"]):
        history = TextHistory("keep(delete me)keep", 0)
        sent = {"alice": "keep()keep", "bob": "keep(delete NEW me)keep"}
        for author in order:
            send(history, author, sent[author], 0)
        results.append(history.text)
    assert results[0] == results[1] == "keep(NEW )keep"


def test_same_position_inserts_are_both_kept_earlier_accepted_first() -> None:
    history = TextHistory("ab", 0)
    send(history, "alice", "aXb", 0)
    send(history, "bob", "aYb", 0)
    assert history.text == "aXYb"


def fast_typist_scenario(*, naive: bool) -> list[str]:
    """Alice sends three keystrokes before any acknowledgement while Bob edits once.

    With naive=True the server forgets Alice's previous change each time, i.e. it diffs
    every change against the room text at baseVersion, like a naive implementation would.
    """
    code = "def f():\n    return 1\n"
    history = TextHistory(code, 0)
    texts = []
    for author, text in [
        ("alice", code + "x"),
        ("bob", "# bob\n" + code),
        ("alice", code + "xy"),
        ("alice", code + "xyz"),
    ]:
        if naive:
            history.forget("alice")
        texts.append(send(history, author, text, 0).text)
    return texts


def test_three_changes_sent_before_the_first_ack_are_not_duplicated_while_another_edits() -> None:
    code = "def f():\n    return 1\n"
    assert fast_typist_scenario(naive=False) == [
        code + "x",
        "# bob\n" + code + "x",
        "# bob\n" + code + "xy",
        "# bob\n" + code + "xyz",
    ]


def test_without_its_previous_text_the_room_text_plus_its_own_changes_still_explains_it() -> None:
    # Diffing Alice's 2nd and 3rd changes against the room text at baseVersion alone would
    # re-apply her earlier keystrokes (they already are in the room text after it). Even with
    # her previous text forgotten, the room text at baseVersion with her own later changes
    # applied is a candidate base, and it explains each change with one keystroke.
    final = fast_typist_scenario(naive=True)[-1]
    assert final == "# bob\ndef f():\n    return 1\nxyz"


def test_next_keystroke_lands_exactly_after_a_merged_previous_change() -> None:
    history = TextHistory("ab", 0)
    send(history, "bob", "aXb", 0)
    first = send(history, "alice", "aYb", 0)  # merged: the room text is not what Alice sent
    assert first.text == "aXYb"
    # Alice has not seen the acknowledgement yet: she still has base 0 and text "aYb".
    second = send(history, "alice", "aYZb", 0)
    assert second.text == "aXYZb"


def test_a_change_maps_exactly_through_a_previous_change_that_was_merged() -> None:
    # Found by the property test: re-deriving the mapping from Bob's sent text to the room
    # text with a diff ("<b1>\n<s0>\n" -> "<a1>\n<b1>\n") cuts tokens apart here.
    history = TextHistory("<s0>\n", 0)
    send(history, "alice", "<a1>\n<s0>\n", 0)
    send(history, "alice", "<a1>\n", 0)
    assert send(history, "bob", "<b1>\n<s0>\n", 0).text == "<a1>\n<b1>\n"
    # Bob, still at base 0 with text "<b1>\n<s0>\n", deletes his own line.
    assert send(history, "bob", "<s0>\n", 0).text == "<a1>\n"


def test_three_clients_on_the_same_base_all_keep_their_edits() -> None:
    history = TextHistory("first\nsecond\nthird\n", 0)
    send(history, "alice", "first line\nsecond\nthird\n", 0)
    send(history, "bob", "first\nsecond\nthird\nfourth\n", 0)
    result = send(history, "carol", "first\nthird\n", 0)
    assert result.text == "first line\nthird\nfourth\n"


def test_three_clients_with_different_bases_all_keep_their_edits() -> None:
    history = TextHistory("a = 1\n", 0)
    send(history, "alice", "a = 1\nb = 2\n", 0)  # v1
    send(history, "bob", "a = 10\nb = 2\n", 1)  # v2, Bob had seen v1
    result = send(history, "carol", "# c\na = 1\n", 0)  # v3, Carol had seen nothing
    assert result.text == "# c\na = 10\nb = 2\n"


def test_a_change_that_edits_nothing_does_not_revert_concurrent_changes() -> None:
    history = TextHistory("text", 0)
    send(history, "alice", "new text", 0)
    result = send(history, "bob", "text", 0)
    assert result.text == "new text"


def test_base_version_older_than_history_falls_back_to_last_writer_wins() -> None:
    clock = FakeClock()
    history = TextHistory("v0", 0, min_versions=2, min_seconds=0, clock=clock)
    for n in range(1, 6):
        clock.now += 1
        send(history, "alice", f"v{n}", n - 1)
    assert history.oldest_version == 4
    result = history.rebase("bob", "bob's text", 3)
    assert (result.text, result.merged, result.reason) == ("bob's text", False, "base_too_old")
    history.commit(result, 6)
    assert history.text == "bob's text"


def test_change_without_base_version_is_last_writer_wins() -> None:
    history = TextHistory("shared", 0)
    send(history, "alice", "shared by alice", 0)
    result = send(history, "legacy", "legacy text", None)
    assert (result.text, result.merged, result.reason) == ("legacy text", False, None)
    assert history.text == "legacy text"


def test_changes_merged_past_a_last_writer_wins_replacement_keep_their_place() -> None:
    history = TextHistory("print(1)\n", 0)
    send(history, "legacy", "print(1)\nprint(2)\n", None)
    result = send(history, "alice", "# top\nprint(1)\n", 0)
    assert result.text == "# top\nprint(1)\nprint(2)\n"


def test_chat_and_language_versions_in_between_do_not_disturb_the_merge() -> None:
    history = TextHistory("x = 1\n", 0)
    history.advance(1)  # chat message
    send(history, "alice", "x = 1\ny = 2\n", 0)  # v2
    history.advance(3)  # language change
    history.advance(4)  # chat message
    result = send(history, "bob", "x = 100\ny = 2\n", 3)  # base is a language version (= v2)
    assert result.text == "x = 100\ny = 2\n"
    result = send(history, "carol", "z = 0\nx = 1\n", 1)  # base is a chat version: text of v0
    assert result.text == "z = 0\nx = 100\ny = 2\n"
    assert history.version == 6


def test_server_replacement_via_advance_is_merged_past_like_any_change() -> None:
    history = TextHistory("alpha\nbeta\n", 0)
    history.advance(1, "alpha\nbeta\ngamma\n")  # REST update of the whole text
    result = send(history, "alice", "ALPHA\nbeta\n", 0)
    assert result.text == "ALPHA\nbeta\ngamma\n"


def test_base_version_ahead_of_the_room_is_treated_as_current() -> None:
    history = TextHistory("abc", 5)
    result = send(history, "alice", "abcd", 99)
    assert (result.text, result.merged, result.reason) == ("abcd", True, None)


def test_positions_are_code_points_so_any_unicode_merges_cleanly() -> None:
    history = TextHistory("😀 é\u0301 \ud800 x", 0)
    send(history, "alice", "😀😀 é\u0301 \ud800 x", 0)
    result = send(history, "bob", "😀 é\u0301 \ud800 yx\u200d", 0)
    assert result.text == "😀😀 é\u0301 \ud800 yx\u200d"


def test_history_keeps_at_least_min_versions_even_when_old() -> None:
    clock = FakeClock()
    history = TextHistory("", 0, min_versions=3, min_seconds=0, clock=clock)
    for n in range(1, 11):
        clock.now += 100
        send(history, "alice", "x" * n, n - 1)
    assert history.oldest_version == 8  # versions 8, 9 and 10
    assert history.rebase("bob", "y", 7).reason == "base_too_old"
    at_oldest = history.rebase("bob", "xxxxxxxxy", 8)
    assert (at_oldest.text, at_oldest.merged) == ("xxxxxxxxxxy", True)


def test_history_keeps_every_version_that_was_current_within_min_seconds() -> None:
    clock = FakeClock()
    history = TextHistory("", 0, min_versions=1, min_seconds=30, clock=clock)
    for n, at in enumerate([0, 10, 20, 45], start=1):
        clock.now = at
        send(history, "alice", str(n), n - 1)
    # At t=45: v0 and v1 were replaced at t=0 and t=10 (more than 30 s ago); v2 at t=20.
    assert history.oldest_version == 2
    assert history.rebase("bob", "2b", 2).text == "4b"
    assert history.rebase("bob", "b", 1).reason == "base_too_old"


def test_an_idle_room_keeps_its_old_version_after_a_burst_of_fresh_ones() -> None:
    clock = FakeClock()
    history = TextHistory("idle", 0, min_versions=2, min_seconds=30, clock=clock)
    clock.now = 3600
    for n in range(1, 6):
        history.advance(n)
    # v0 was the room text until a moment ago: a client that only saw v0 can still merge.
    assert history.oldest_version == 0


def test_forget_drops_the_authors_state() -> None:
    history = TextHistory("ab", 0)
    send(history, "alice", "aXb", 0)
    history.forget("alice")
    history.forget("nobody")  # unknown authors are fine
    assert history.own("alice", 0) is None
    # Without her previous text, the room text at base 0 with her own later change applied
    # still explains her next one: her first keystroke is not applied a second time.
    assert send(history, "alice", "aXYb", 0).text == "aXYb"


def test_author_state_leaves_with_its_version_and_the_base_is_then_too_old() -> None:
    clock = FakeClock()
    history = TextHistory("a", 0, min_versions=2, min_seconds=0, clock=clock)
    send(history, "alice", "ab", 0)  # v1
    for n in range(2, 6):
        clock.now += 1
        send(history, "bob", "ab" + "c" * (n - 1), n - 1)
    assert history.oldest_version == 4
    result = history.rebase("alice", "abd", 0)
    assert (result.text, result.reason) == ("abd", "base_too_old")


def test_a_stale_base_still_merges_from_the_authors_own_recent_change() -> None:
    clock = FakeClock()
    history = TextHistory("a", 0, min_versions=2, min_seconds=0, clock=clock)
    for n in range(1, 4):
        clock.now += 1
        send(history, "bob", "a" + "b" * n, n - 1)
    first = send(history, "alice", "Xa", 0)  # base 0 fell out: last writer wins, once
    assert (first.text, first.reason) == ("Xa", "base_too_old")
    send(history, "bob", "Xa!", 4)
    # Alice still has base 0, but her previous change is known: her edit merges exactly.
    second = send(history, "alice", "XYa", 0)
    assert (second.text, second.merged, second.reason) == ("XYa!", True, None)


def test_rebase_changes_nothing() -> None:
    history = TextHistory("abc", 0)
    send(history, "bob", "abcd", 0)
    first = history.rebase("alice", "Xabc", 0)
    second = history.rebase("alice", "Xabc", 0)
    assert first == second
    assert first.text == "Xabcd"
    assert (history.text, history.version) == ("abcd", 1)


def test_commit_rejects_a_version_that_is_not_after_the_current_one() -> None:
    history = TextHistory("abc", 3)
    rebased = history.rebase("alice", "abcd", 3)
    with pytest.raises(ValueError):
        history.commit(rebased, 3)
    with pytest.raises(ValueError):
        history.advance(2)


def test_commit_rejects_a_change_rebased_before_the_history_moved() -> None:
    history = TextHistory("abc", 0)
    rebased = history.rebase("alice", "abcd", 0)
    history.advance(1)
    with pytest.raises(ValueError):
        history.commit(rebased, 2)


def test_commit_rejects_a_change_rebased_on_another_history() -> None:
    other = TextHistory("abc", 0).rebase("alice", "abcd", 0)
    with pytest.raises(ValueError):
        TextHistory("abc", 0).commit(other, 1)

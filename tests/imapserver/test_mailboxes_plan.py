"""LIST planning and pattern matching without a server: the RFC 9051 §6.3.9.8 / RFC 5258 §5
examples, RFC 3501 LSUB, and the matcher's linear time (security catalogue I9)."""

from __future__ import annotations

import functools
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from mailpost.imap.commands import ListReturn, ListSelection
from mailpost.imap.handlers.mailbox_list import (
    NOSELECT,
    ListEntry,
    ListQuery,
    plan_list,
    plan_lsub,
)
from mailpost.imap.handlers.mailbox_match import (
    PatternSet,
    canonical_pattern,
    collapse_wildcards,
)
from mailpost.imap.handlers.mailbox_names import strip_trailing_delimiter, superiors
from mailpost.store.types import MailboxInfo

SUBSCRIBED = ListSelection(subscribed=True)
RECURSIVE = ListSelection(subscribed=True, recursive_match=True)
CHILDREN_ATTRS = {"\\HasChildren", "\\HasNoChildren"}


def boxes(*names: str, uses: dict[str, str] | None = None) -> list[MailboxInfo]:
    uses = uses or {}
    return [MailboxInfo(index, 1, name, uses.get(name), 1, 1, 1, False)
            for index, name in enumerate(names, 1)]


def listed(entries: list[ListEntry], *, children: bool = False) -> dict[str, set[str]]:
    """name -> attributes (without \\HasChildren/\\HasNoChildren unless asked)."""
    return {entry.name: {a for a in entry.attributes if children or a not in CHILDREN_ATTRS}
            for entry in entries}


def childinfo(entries: list[ListEntry]) -> dict[str, tuple[str, ...]]:
    return {entry.name: entry.childinfo for entry in entries if entry.childinfo}


# --- matching ------------------------------------------------------------------------------


def reference_match(pattern: str, name: str) -> bool:
    """The RFC 9051 §6.3.9 wildcard rules, memoised recursion (slow but obviously right)."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(name)
        char = pattern[i]
        if char in "*%":
            absorb = j < len(name) and (char == "*" or name[j] != "/")
            return match(i + 1, j) or (absorb and match(i, j + 1))
        return j < len(name) and name[j] == char and match(i + 1, j + 1)

    return match(0, 0)


def test_percent_stops_at_the_delimiter_star_does_not() -> None:
    assert PatternSet(["%"]).matches("Fruit")
    assert not PatternSet(["%"]).matches("Fruit/Apple")
    assert PatternSet(["*"]).matches("Fruit/Apple")
    assert PatternSet(["Fruit/%"]).matches("Fruit/Apple")
    assert not PatternSet(["Fruit/%"]).matches("Fruit")
    assert PatternSet(["*2"]).matches("baz2/bar22")
    assert not PatternSet(["%2"]).matches("baz2/bar22")
    assert PatternSet(["%/%"]).matches("a/b") and not PatternSet(["%/%"]).matches("a/b/c")


def test_several_patterns_match_as_one_set() -> None:
    patterns = PatternSet(["foo", "bar/%", "*z"])
    assert [patterns.matches(n) for n in ("foo", "bar/x", "bar/x/y", "quiz", "baz/q")] == \
        [True, True, False, True, False]
    assert not PatternSet([]).matches("anything")


def test_wildcard_runs_collapse_to_one_wildcard() -> None:
    assert collapse_wildcards("*%*%*%*%*%*%*%*%b") == "*b"
    assert collapse_wildcards("%%a%*b**") == "%a*b*"
    assert collapse_wildcards("a/b") == "a/b"


def test_reference_is_prefixed_and_inbox_is_case_folded() -> None:
    assert canonical_pattern("archive/", "%") == "archive/%"
    assert canonical_pattern("", "inbox") == "INBOX"
    assert canonical_pattern("InBox/", "*") == "INBOX/*"
    assert canonical_pattern("", "inboxes") == "inboxes"
    assert canonical_pattern("Projects", "%") == "Projects/%"
    assert canonical_pattern("Projects", "/x") == "Projects/x"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab/*%", max_size=8), st.text(alphabet="ab/", max_size=10))
def test_matcher_agrees_with_the_reference(pattern: str, name: str) -> None:
    assert PatternSet([pattern]).matches(name) == reference_match(pattern, name)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet="ab/*%", max_size=6), min_size=1, max_size=4),
       st.text(alphabet="ab/", max_size=8))
def test_pattern_set_is_the_union(patterns: list[str], name: str) -> None:
    expected = any(reference_match(p, name) for p in patterns)
    assert PatternSet(patterns).matches(name) == expected


def test_hostile_patterns_take_linear_time() -> None:
    """Catalogue I9: backtracking matchers explode on these; ours reads each name once."""
    names = ["a" * 1000, "a/" * 500, "ab" * 500 + "c"]
    patterns = ["*%*%*%*%*%*%*%*%b", "*a*a*a*a*a*a*a*a*a*a*a*a*b", "%a%a%a%a%a%a%a%a%a%a%b",
                "*a%a*a%a*a%a*a%a*a%a*a%a*a%a*b" * 20]
    started = time.perf_counter()
    for pattern in patterns:
        matcher = PatternSet([pattern])
        assert not any(matcher.matches(name) for name in names)
    assert time.perf_counter() - started < 0.5


# --- names ---------------------------------------------------------------------------------


def test_superiors_and_trailing_delimiter() -> None:
    assert list(superiors("a/b/c")) == ["a/b", "a"]
    assert list(superiors("a")) == []
    assert strip_trailing_delimiter("owatagusiam/") == "owatagusiam"
    assert strip_trailing_delimiter("a/b") == "a/b"


# --- RFC 9051 §6.3.9.8 examples ------------------------------------------------------------

FRUIT = boxes("INBOX", "Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu", "Vegetable",
              "Vegetable/Broccoli", "Vegetable/Corn")
FRUIT_SUBSCRIBED = ["INBOX", "Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"]


def test_example_2_subscribed_selection() -> None:
    entries = plan_list(FRUIT, FRUIT_SUBSCRIBED, ListQuery(("*",), SUBSCRIBED))
    assert listed(entries) == {
        "INBOX": {"\\Subscribed"},
        "Fruit/Banana": {"\\Subscribed"},
        "Fruit/Peach": {"\\Subscribed", "\\NonExistent"},
        "Vegetable": {"\\Subscribed"},
        "Vegetable/Broccoli": {"\\Subscribed"},
    }
    assert entries[0].name == "INBOX"


def test_example_3_children() -> None:
    entries = plan_list(FRUIT, [], ListQuery(("%",), returns=ListReturn(children=True)))
    assert listed(entries, children=True) == {
        "INBOX": {"\\HasNoChildren"}, "Fruit": {"\\HasChildren"},
        "Tofu": {"\\HasNoChildren"}, "Vegetable": {"\\HasChildren"},
    }


def test_example_6_subscribed_return_option() -> None:
    entries = plan_list(FRUIT, FRUIT_SUBSCRIBED,
                        ListQuery(("*",), returns=ListReturn(subscribed=True)))
    result = listed(entries)
    assert set(result) == {info.name for info in FRUIT}  # no Fruit/Peach: it does not exist
    assert {name for name, attrs in result.items() if "\\Subscribed" in attrs} == \
        {"INBOX", "Fruit/Banana", "Vegetable", "Vegetable/Broccoli"}


FOO = boxes("INBOX", "Foo", "Foo/Bar", "Foo/Baz", "Moo")


def test_example_7a_recursivematch() -> None:
    only_baz = ["Foo/Baz"]
    assert listed(plan_list(FOO, only_baz, ListQuery(("*",), SUBSCRIBED))) == \
        {"Foo/Baz": {"\\Subscribed"}}
    assert plan_list(FOO, only_baz, ListQuery(("%",), SUBSCRIBED)) == []
    entries = plan_list(FOO, only_baz, ListQuery(("%",), RECURSIVE))
    assert listed(entries) == {"Foo": set()}
    assert childinfo(entries) == {"Foo": ("SUBSCRIBED",)}
    assert entries[0].mailbox is None  # not chosen itself: no LIST-STATUS for it


def test_example_7a1_and_7a2() -> None:
    entries = plan_list(FOO, ["Foo", "Foo/Baz"], ListQuery(("%",), RECURSIVE))
    assert listed(entries) == {"Foo": {"\\Subscribed"}}
    assert childinfo(entries) == {"Foo": ("SUBSCRIBED",)}
    without_foo = [info for info in FOO if info.name != "Foo"]
    entries = plan_list(without_foo, ["Foo/Baz"], ListQuery(("%",), RECURSIVE))
    assert listed(entries) == {"Foo": {"\\NonExistent"}}
    assert childinfo(entries) == {"Foo": ("SUBSCRIBED",)}


def test_example_7b_and_7c() -> None:
    assert plan_list(FOO, [], ListQuery(("%",), RECURSIVE)) == []
    entries = plan_list(FOO, ["Foo", "Moo"],
                        ListQuery(("%",), RECURSIVE, ListReturn(children=True)))
    assert listed(entries, children=True) == {
        "Foo": {"\\HasChildren", "\\Subscribed"}, "Moo": {"\\HasNoChildren", "\\Subscribed"},
    }
    assert childinfo(entries) == {}


def test_example_8_childinfo_for_unmatched_children() -> None:
    hierarchy = boxes("INBOX", "foo2", "foo2/bar1", "foo2/bar2", "baz2", "baz2/bar2",
                      "baz2/bar22", "baz2/bar222", "eps2", "eps2/mamba", "qux2/bar2")
    subscribed = ["foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222", "eps2",
                  "eps2/mamba", "qux2/bar2"]
    entries = plan_list(hierarchy, subscribed, ListQuery(("*2",), RECURSIVE))
    assert [entry.name for entry in entries] == [
        "baz2/bar2", "baz2/bar22", "baz2/bar222", "eps2", "foo2", "foo2/bar2", "qux2/bar2"]
    assert listed(entries)["foo2"] == set()
    assert listed(entries)["eps2"] == {"\\Subscribed"}
    # baz2 and qux2 would carry a redundant CHILDINFO (§6.3.9.6): left out.
    assert childinfo(entries) == {"foo2": ("SUBSCRIBED",), "eps2": ("SUBSCRIBED",)}


def test_example_9_childinfo_without_children() -> None:
    hierarchy = boxes("INBOX", "foo")
    assert listed(plan_list(hierarchy, ["foo/bar"], ListQuery(("foo",)))) == {"foo": set()}
    assert listed(plan_list(hierarchy, ["foo/bar"], ListQuery(("foo/*",), SUBSCRIBED))) == \
        {"foo/bar": {"\\Subscribed", "\\NonExistent"}}
    entries = plan_list(hierarchy, ["foo/bar"],
                        ListQuery(("foo",), RECURSIVE, ListReturn(children=True)))
    assert listed(entries, children=True) == {"foo": {"\\HasNoChildren"}}
    assert childinfo(entries) == {"foo": ("SUBSCRIBED",)}


def test_example_10_missing_levels() -> None:
    hierarchy = boxes("music/rock")
    assert listed(plan_list(hierarchy, [], ListQuery(("%",))), children=True) == \
        {"music": {"\\NonExistent", "\\HasChildren"}}
    assert listed(plan_list(hierarchy, [], ListQuery(("%", "music/rock")))) == \
        {"music/rock": set()}
    rev1 = ListQuery(("%",), missing_attribute=NOSELECT)
    assert listed(plan_list(hierarchy, [], rev1)) == {"music": {"\\Noselect"}}


def test_rfc6154_special_use_selection() -> None:
    hierarchy = boxes("INBOX", "ToDo", "Projects", "Projects/x", "SentMail", "MyDrafts",
                      "Trash", uses={"SentMail": "\\Sent", "MyDrafts": "\\Drafts",
                                     "Trash": "\\Trash"})
    entries = plan_list(hierarchy, [], ListQuery(("*",), ListSelection(special_use=True)))
    assert listed(entries) == {"MyDrafts": {"\\Drafts"}, "SentMail": {"\\Sent"},
                               "Trash": {"\\Trash"}}
    both = ListSelection(special_use=True, subscribed=True)
    assert listed(plan_list(hierarchy, ["Trash", "ToDo"], ListQuery(("*",), both))) == \
        {"Trash": {"\\Trash", "\\Subscribed"}}


def test_every_name_is_listed_once_for_overlapping_patterns() -> None:
    entries = plan_list(FRUIT, [], ListQuery(("*", "Fruit/%", "%")))
    names = [entry.name for entry in entries]
    assert len(names) == len(set(names)) == len(FRUIT)


# --- LSUB (RFC 3501 §6.3.9) ----------------------------------------------------------------


def test_lsub_percent_returns_the_unsubscribed_level_as_noselect() -> None:
    subscribed = ["news/comp/mail/mime", "news/comp/mail/misc"]
    assert listed(plan_lsub(subscribed, ("news/comp/mail/*",))) == {
        "news/comp/mail/mime": set(), "news/comp/mail/misc": set()}
    assert listed(plan_lsub(subscribed, ("news/comp/%",))) == {"news/comp/mail": {NOSELECT}}
    assert listed(plan_lsub(["foo/bar", "foo"], ("%",))) == {"foo": set()}

"""THREAD=REFERENCES (RFC 5256 §3, the six-step algorithm).

Theory of operation
-------------------
The steps follow the RFC's numbering; each is a function below.

1. Build the id table: a :class:`_Node` per Message-ID, real or *dummy* (referenced but not
   among the searched messages). Links are made from each message's references (1A), and from
   its last reference to the message itself (1B), never creating a loop. Duplicate or missing
   Message-IDs get a node of their own that no reference can reach (a "unique id").
2. The parentless nodes become the children of the root.
3. Dummies are pruned: childless ones vanish, others are replaced by their children, except
   that several children are not promoted to the root level.
4. The root's children are sorted by sent date (a dummy by its earliest child).
5. Root-level threads with the same base subject are merged, using a subject table and the
   reply/forward markers of the original subjects.
6. Every set of siblings is sorted by sent date, deepest first.

Complexity: children are kept in insertion-ordered dicts so unlinking is O(1). The loop test
("is A a descendant of B") walks *up* from A and *down* B's subtree in lockstep and stops when
either walk ends, so it costs ``O(min(depth(A), size(B)))``; since B is always a parentless
node at that point, merging trees this way is ``O(n log n)`` overall (smaller-half argument),
even for a mailbox crafted to build one long chain. Every traversal is iterative, so a thread
thousands of messages deep cannot exhaust the stack.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import pairwise

from mailpost.imap.handlers.search_sort import Entry, date_order
from mailpost.imap.responses import ThreadNode


class _Node:
    __slots__ = ("children", "entry", "parent")

    def __init__(self, entry: Entry | None = None) -> None:
        self.entry = entry  # None: a dummy
        self.parent: _Node | None = None
        self.children: dict[_Node, None] = {}

    @property
    def first(self) -> Entry:
        """The message that stands for this node when sorting or matching subjects."""
        if self.entry is not None:
            return self.entry
        child = next(iter(self.children))
        assert child.entry is not None, "dummies only keep real messages as children"
        return child.entry


def references(entries: Sequence[Entry]) -> list[ThreadNode]:
    """THREAD=REFERENCES over ``entries`` (given in mailbox order)."""
    nodes = _link(entries)
    roots = [node for node in nodes if node.parent is None]  # step 2
    roots = _prune(roots)
    roots.sort(key=_order)  # step 4 (each dummy's children are sorted inside _order)
    roots = _merge_subjects(roots)
    _sort_siblings(roots)
    return _to_thread_nodes(roots)


# --- step 1 ----------------------------------------------------------------------------------


def _link(entries: Sequence[Entry]) -> list[_Node]:
    table: dict[str, _Node] = {}
    nodes: list[_Node] = []

    def node_for(message_id: str) -> _Node:
        node = table.get(message_id)
        if node is None:
            node = table[message_id] = _Node()
            nodes.append(node)
        return node

    for entry in entries:
        current = _message_node(entry, table, nodes)
        refs = [node_for(ref) for ref in entry.info.references] if entry.info else []
        for parent, child in pairwise(refs):  # 1A: keep existing links (truncated headers)
            if child.parent is None and not _descends(parent, child):
                _attach(parent, child)
        last = refs[-1] if refs else None  # 1B: the last reference is the parent
        if current.parent is not last:
            _detach(current)
            if last is not None and not _descends(last, current):
                _attach(last, current)
    return nodes


def _message_node(entry: Entry, table: dict[str, _Node], nodes: list[_Node]) -> _Node:
    """The node of a searched message: fills a dummy with its id, or a new node; a duplicate
    (or absent) Message-ID gets a node outside the table (RFC 5256: a unique id)."""
    message_id = entry.info.message_id if entry.info is not None else None
    node = table.get(message_id) if message_id is not None else None
    if node is not None and node.entry is None:
        node.entry = entry
        return node
    node = _Node(entry)
    nodes.append(node)
    if message_id is not None and message_id not in table:
        table[message_id] = node
    return node


def _attach(parent: _Node, child: _Node) -> None:
    child.parent = parent
    parent.children[child] = None


def _detach(child: _Node) -> None:
    if child.parent is not None:
        del child.parent.children[child]
        child.parent = None


def _descends(node: _Node, ancestor: _Node) -> bool:
    """True if ``node`` is ``ancestor`` or below it (linking would make a loop).

    Walks up from ``node`` and down from ``ancestor`` one step each at a time; whichever
    finishes first decides (see the module docstring for why this is cheap)."""
    if node is ancestor:
        return True
    upward = node.parent
    downward = list(ancestor.children)
    while upward is not None and downward:
        if upward is ancestor:
            return True
        below = downward.pop()
        if below is node:
            return True
        downward.extend(below.children)
        upward = upward.parent
    return False


# --- steps 3 and 4 ---------------------------------------------------------------------------


def _walk(roots: Sequence[_Node]) -> Iterator[_Node]:
    """Every node below and including ``roots``, parents before children."""
    stack = list(roots)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


def _prune(roots: list[_Node]) -> list[_Node]:
    """Step 3, bottom-up so a dummy's children are already pruned when it is looked at."""
    for node in reversed(list(_walk(roots))):
        node.children = dict.fromkeys(_pruned(node.children, at_root=False))
    return _pruned(roots, at_root=True)


def _pruned(children: Sequence[_Node] | dict[_Node, None], at_root: bool) -> list[_Node]:
    kept: list[_Node] = []
    for child in children:
        if child.entry is not None:
            kept.append(child)
        elif len(child.children) == 1 or (child.children and not at_root):
            kept.extend(child.children)  # promote the dummy's children
        elif child.children:
            kept.append(child)  # several children stay under the dummy at the root
    return kept


def _order(node: _Node) -> tuple[float, int]:
    """Sort key by sent date; a dummy is sorted by its earliest child (steps 4 and 6)."""
    if node.entry is None:
        node.children = dict.fromkeys(sorted(node.children, key=_order))
    return date_order(node.first)


# --- step 5 ----------------------------------------------------------------------------------


def _thread_subject(node: _Node) -> str:
    return node.first.subject_key


def _merge_subjects(roots: list[_Node]) -> list[_Node]:
    table: dict[str, _Node] = {}
    for node in roots:  # 5B: choose one thread per subject
        subject = _thread_subject(node)
        if not subject:
            continue
        holder = table.get(subject)
        if holder is None or (holder.entry is not None and (
                node.entry is None or (_is_reply(holder) and not _is_reply(node)))):
            table[subject] = node
    slots: list[_Node | None] = list(roots)
    index = {node: position for position, node in enumerate(roots)}
    for position, node in enumerate(roots):  # 5C: merge the others into it
        if slots[position] is not node:
            continue
        subject = _thread_subject(node)
        holder = table.get(subject) if subject else None
        if holder is None or holder is node:
            continue
        slots[position] = None
        if holder.entry is None:  # a dummy holds the subject: node (or its children) join it
            kids = list(node.children) if node.entry is None else [node]
            holder.children.update(dict.fromkeys(kids))
        elif _is_reply(node) and not _is_reply(holder):
            holder.children[node] = None
        else:
            dummy = _Node()
            dummy.children = {holder: None, node: None}
            slots[index[holder]] = dummy
            index[dummy] = index[holder]
            table[subject] = dummy
    return [node for node in slots if node is not None]


def _is_reply(node: _Node) -> bool:
    return node.entry is not None and node.entry.is_reply


# --- step 6 and output -----------------------------------------------------------------------


def _sort_siblings(roots: list[_Node]) -> None:
    for node in reversed(list(_walk(roots))):
        if node.children:
            node.children = dict.fromkeys(sorted(node.children, key=_order))
    roots.sort(key=_order)


def _to_thread_nodes(roots: list[_Node]) -> list[ThreadNode]:
    built: dict[_Node, ThreadNode] = {}
    for node in reversed(list(_walk(roots))):
        number = node.entry.number if node.entry is not None else 0
        built[node] = ThreadNode(number, tuple(built.pop(child) for child in node.children))
    return [built[root] for root in roots]

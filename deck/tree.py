"""The orchestration forest built from the pins of live sessions (behaviour §10, Tree) and the
agents the proxy saw in their traffic.

A session's parent is the live session pinned to the issue named by its `parentId`. A
subagent's parent is named directly (`parent_node`): its parent agent, else its session.
A tree root is a live lead (a node with at least one live child) whose own parent is not live.
Every session has at most one parent, so members of a parent cycle never reach a root: they
(and anything hanging below them) stay out of the forest and render under their accounts.
The walk also keeps a visited set, so no input can make it loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Member:
    sid: str  # a session id, or an agent's node id (see deck.fleet.agent_node)
    issue_id: str
    parent_id: str  # the parent's issue (pins)
    tokens: int  # its own, without its children's
    cost_usd: float
    parent_node: str = ""  # the parent's node id, when known directly (agents)


@dataclass
class TreeNode:
    member: Member
    depth: int
    children: list[TreeNode] = field(default_factory=list)
    subtree_tokens: int = 0

    @property
    def is_lead(self) -> bool:
        return bool(self.children)


@dataclass(frozen=True)
class Level:
    depth: int
    count: int
    tokens: int


@dataclass(frozen=True)
class Tree:
    root: TreeNode
    nodes: int
    tokens: int
    cost_usd: float
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class Forest:
    trees: tuple[Tree, ...]
    placed: frozenset[str]  # session ids shown in a tree (not repeated under their account)


def _issue_owners(members: Sequence[Member]) -> dict[str, Member]:
    """One session per issue: the biggest spender when several pin the same issue."""
    owners: dict[str, Member] = {}
    for member in sorted(members, key=lambda m: (-m.tokens, m.sid)):
        if member.issue_id:
            owners.setdefault(member.issue_id, member)
    return owners


def build_forest(members: Sequence[Member]) -> Forest:
    owners = _issue_owners(members)
    nodes = {member.sid: member for member in members}
    parent: dict[str, Member] = {}
    children: dict[str, list[Member]] = {}
    for member in members:
        if member.parent_node:
            owner = nodes.get(member.parent_node)
        else:
            owner = owners.get(member.parent_id) if member.parent_id else None
        if owner is not None and owner.sid != member.sid:
            parent[member.sid] = owner
            children.setdefault(owner.sid, []).append(member)

    roots = [m for m in members if m.sid in children and m.sid not in parent]
    visited: set[str] = set()
    trees = []
    for root in roots:
        node = _grow(root, 0, children, visited)
        flat = list(_walk(node))
        levels: dict[int, Level] = {}
        for each in flat:
            level = levels.get(each.depth, Level(each.depth, 0, 0))
            levels[each.depth] = Level(each.depth, level.count + 1, level.tokens + each.member.tokens)
        trees.append(
            Tree(
                root=node,
                nodes=len(flat),
                tokens=node.subtree_tokens,
                cost_usd=sum(each.member.cost_usd for each in flat),
                levels=tuple(levels[depth] for depth in sorted(levels)),
            )
        )
    trees.sort(key=lambda tree: (-tree.tokens, tree.root.member.sid))
    return Forest(tuple(trees), frozenset(visited))


def _grow(
    member: Member, depth: int, children: dict[str, list[Member]], visited: set[str]
) -> TreeNode:
    visited.add(member.sid)
    node = TreeNode(member, depth)
    for child in children.get(member.sid, []):
        if child.sid not in visited:
            node.children.append(_grow(child, depth + 1, children, visited))
    node.children.sort(key=lambda n: (-n.subtree_tokens, n.member.sid))
    node.subtree_tokens = member.tokens + sum(child.subtree_tokens for child in node.children)
    return node


def _walk(node: TreeNode) -> Iterator[TreeNode]:
    yield node
    for child in node.children:
        yield from _walk(child)


def tree_lines(tree: Tree) -> list[tuple[str, TreeNode]]:
    """(connector prefix, node) per node in display order, with ├─/└─ and │ bars."""
    lines: list[tuple[str, TreeNode]] = [("", tree.root)]

    def descend(node: TreeNode, indent: str) -> None:
        for index, child in enumerate(node.children):
            last = index == len(node.children) - 1
            lines.append((indent + ("└─ " if last else "├─ "), child))
            descend(child, indent + ("   " if last else "│  "))

    descend(tree.root, "")
    return lines

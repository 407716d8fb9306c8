import threading

from deck.tree import Member, build_forest, tree_lines


def m(sid, issue, parent="", tokens=10, cost=0.1):
    return Member(sid, issue, parent, tokens, cost)


def build_in_thread(members):
    """Run build_forest with a deadline, so a regression to an endless loop fails, not hangs."""
    result = []
    worker = threading.Thread(target=lambda: result.append(build_forest(members)), daemon=True)
    worker.start()
    worker.join(5)
    assert result, "build_forest did not finish"
    return result[0]


def test_three_levels_with_rollups():
    forest = build_forest([
        m("lead", "I1", tokens=100, cost=1.0),
        m("w1", "I2", "I1", tokens=30, cost=0.3),
        m("w2", "I3", "I1", tokens=20, cost=0.2),
        m("d1", "I4", "I2", tokens=5, cost=0.05),
    ])
    (tree,) = forest.trees
    assert tree.root.member.sid == "lead"
    assert tree.nodes == 4 and tree.tokens == 155
    assert abs(tree.cost_usd - 1.55) < 1e-9
    assert [(lv.depth, lv.count, lv.tokens) for lv in tree.levels] == [(0, 1, 100), (1, 2, 50), (2, 1, 5)]
    assert tree.root.children[0].member.sid == "w1"
    assert tree.root.children[0].subtree_tokens == 35
    prefixes = [(prefix, node.member.sid) for prefix, node in tree_lines(tree)]
    assert prefixes == [("", "lead"), ("├─ ", "w1"), ("│  └─ ", "d1"), ("└─ ", "w2")]
    assert forest.placed == {"lead", "w1", "w2", "d1"}


def test_cycle_does_not_hang_and_stays_out_of_the_forest():
    forest = build_in_thread([
        m("a", "IA", "IB"), m("b", "IB", "IA"), m("under", "IC", "IA"), m("self", "IS", "IS"),
    ])
    assert forest.trees == ()
    assert forest.placed == frozenset()


def test_solo_and_orphan_sessions_are_not_trees():
    forest = build_forest([m("solo", "I1"), m("orphan", "I2", "I-missing")])
    assert forest.trees == () and forest.placed == frozenset()


def test_sessions_sharing_an_issue_hang_children_on_the_biggest():
    forest = build_forest([
        m("small", "I1", tokens=1), m("big", "I1", tokens=50), m("child", "I2", "I1"),
    ])
    (tree,) = forest.trees
    assert tree.root.member.sid == "big"
    assert "small" not in forest.placed


def test_forests_sorted_by_tokens():
    forest = build_forest([
        m("r1", "A", tokens=1), m("c1", "B", "A", tokens=1),
        m("r2", "C", tokens=100), m("c2", "D", "C", tokens=1),
    ])
    assert [tree.root.member.sid for tree in forest.trees] == ["r2", "r1"]


def test_agents_hang_under_their_named_parent_and_sessions_without_issues_do_not_collide():
    # Two sessions with no pin (empty issue) must not be taken as owners of one issue "".
    forest = build_in_thread([
        m("s1", "", tokens=100),
        Member("s1/a", "", "", 40, 0.4, parent_node="s1"),
        Member("s1/b", "", "", 5, 0.05, parent_node="s1/a"),
        m("s2", "", tokens=7),
        Member("s2/x", "", "", 3, 0.03, parent_node="s2"),
        Member("lost", "", "", 1, 0.01, parent_node="nowhere"),  # parent gone: no tree of its own
    ])
    first, second = forest.trees
    assert first.root.member.sid == "s1" and first.tokens == 145 and first.nodes == 3
    assert [(p, n.member.sid) for p, n in tree_lines(first)] == [("", "s1"), ("└─ ", "s1/a"), ("   └─ ", "s1/b")]
    assert second.root.member.sid == "s2" and second.tokens == 10
    assert "lost" not in forest.placed


def test_agent_cycle_does_not_hang():
    forest = build_in_thread([
        m("s", "", tokens=1),
        Member("a", "", "", 1, 0.0, parent_node="b"),
        Member("b", "", "", 1, 0.0, parent_node="a"),
    ])
    assert forest.trees == ()

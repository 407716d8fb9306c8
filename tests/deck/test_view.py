import io
import json
import time

import pytest
from rich.console import Console
from rich.text import Text

from deck.controller import Ui
from deck.locallog import LocalLine
from deck.monitor import Monitor
from deck.presence import PresenceTracker
from deck.sections import bar, cut, utilization_style
from deck.statefile import StateReader
from deck.view import Frame, render, render_summary
from tests.deck.claude_home import FIXTURES, NOW, build_fleet_home


def screen(frame, width, height):
    console = Console(record=True, width=width, height=height, color_system=None, file=io.StringIO())
    console.print(render(frame, width, height))
    return console.export_text()


@pytest.fixture
def monitor(tmp_path):
    claude = build_fleet_home(tmp_path / "claude")
    clock = lambda: NOW  # noqa: E731
    return Monitor(StateReader(FIXTURES / "fleet.json"), PresenceTracker(claude, clock), clock)


def left_column(text):
    """The left-hand column of a two-column screen (accounts, sessions, tree)."""
    return "\n".join(line.split(" │ ")[0] for line in text.splitlines())


def line_with(text, needle):
    return next(line for line in text.splitlines() if needle in line)


def index_of(text, needle):
    return next(i for i, line in enumerate(text.splitlines()) if needle in line)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_accounts_with_bars_and_countdowns(monitor, size):
    text = screen(monitor.frame(), *size)
    lines = text.splitlines()
    assert len(lines) == size[1]
    assert all(len(line) <= size[0] for line in lines)
    alice = line_with(text, "alice@example.com ★ ok")
    assert "2.4M tok" in alice
    alice_bars = lines[index_of(text, "alice@example.com ★") + 1]
    assert "5h" in alice_bars and "31%" in alice_bars and "↻1h00m" in alice_bars
    assert "52%" in alice_bars and "↻3d12h" in alice_bars and "↓ ahead" in alice_bars
    assert "empty ~3d02h" in alice_bars
    assert "benched 4m12s (5h window rejected)" in text
    assert "↑ behind" in lines[index_of(text, "bob@example.com") + 1]
    assert "carol@example.com needs login" in text
    assert "→ on line" in lines[index_of(text, "carol@example.com") + 1]
    assert "● YELLOW  headroom 1 · live 1/4 · benched 1 · next reset 29m59s" in text
    assert "10 agents · 8 warm · 2 needs-you · 4.2M tok · $42.51" in text
    # Accounts by token burn.
    assert index_of(text, "alice@") < index_of(text, "bob@") < index_of(text, "carol@") < index_of(text, "ci-key")


def test_tree_three_levels_with_rollups(monitor):
    text = screen(monitor.frame(), 160, 48)
    assert "Tree · 4 nodes · 1.4M tok · $14.50" in text
    lead = line_with(text, "Ship the deck")
    assert lead.lstrip().startswith("◆") and "Σ1.4M" in lead and "@alice" in lead
    assert "├─ ◆" in line_with(text, "Tree view")
    assert "│  └─ ·" in line_with(text, "Cycle guard")
    assert "└─ ·" in line_with(text, "Presence rules")
    assert "Levels  L0 1·900k  L1 2·500k  L2 1·50.0k" in text
    assert index_of(text, "Tree ·") < index_of(text, "alice@example.com ★")


def test_cycle_and_orphans_fall_under_their_accounts(monitor):
    text = left_column(screen(monitor.frame(), 160, 48))
    alice, bob, carol = (index_of(text, name) for name in ("alice@example.com ★", "bob@example.com", "carol@example.com"))
    assert alice < index_of(text, "Loop A") < bob
    assert bob < index_of(text, "Loop B") < carol
    assert carol < index_of(text, "Orphan task")
    assert "solo0008" in text  # no pin: under its account, by short id


def test_presence_hides_quiet_sessions_and_keeps_busy_ones(monitor):
    text = screen(monitor.frame(), 160, 48)
    assert "Hidden work" not in text and "hide0009" not in text
    assert "⚙" in line_with(text, "tool0010")  # tool in flight, last turn 2 h old
    assert "new00011" in text  # started 60 s ago, no transcript yet
    assert "~" in line_with(text, "Tree view")  # a request in flight: responding


def test_by_issue_collapses_and_expands(monitor):
    collapsed = screen(monitor.frame(), 160, 48)
    assert "By issue · 7 active" in collapsed
    expanded = screen(monitor.frame(Ui(issues_expanded=True)), 160, 48)
    assert "Orphan task" in expanded.split("By issue")[1]
    assert "Loop B" in line_with(expanded, "ISS-11")
    narrow = screen(monitor.frame(), 100, 40)
    assert "(top 3; i expands)" in narrow


def test_activity_log_and_local_lines(monitor):
    local = (LocalLine(NOW - 1, "switched to bob@example.com"),)
    text = screen(monitor.frame(local=local), 160, 48)
    assert "502" in line_with(text, "upstream reset")
    assert "429" in line_with(text, "5h window rejecte")
    assert line_with(text, "switched to bob@example.com").split(" │ ")[1].split()[1] == "deck"
    assert index_of(text, "GET  /v1/models") < index_of(text, "switched to bob")


def test_small_terminal_keeps_header_accounts_and_some_activity(monitor):
    text = screen(monitor.frame(), 80, 24)
    for name in ("alice@example.com", "bob@example.com", "carol@example.com", "ci-key"):
        assert name in text
    assert "Activity" in text and "GET  /v1/models" in text
    assert text.splitlines()[-1].rstrip().endswith("? legend · q quit")


@pytest.mark.parametrize("width", [40, 60, 80, 120, 160])
def test_footer_always_ends_with_legend_and_quit(monitor, width):
    footer = screen(monitor.frame(), width, 24).splitlines()[-1].rstrip()
    assert footer.endswith("? legend · q quit") and "…" not in footer


def test_legend_explains_headroom_and_live_at_80x24(monitor):
    text = screen(monitor.frame(Ui(mode="legend")), 80, 24)
    lines = text.splitlines()
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    assert "headroom N" in text and "3 per live account − warm sessions" in text
    assert "negative: more warm sessions than that" in text
    assert "~ a request in flight, ⚙ a tool running" in text
    assert "bg a background session" in text
    assert lines[-1].startswith("any key closes the legend")


def test_urls_are_left_out_rather_than_cut(monitor):
    narrow = line_with(screen(monitor.frame(), 80, 24), "● YELLOW")
    assert "http" not in narrow  # the listen address does not fit whole: not shown at all
    wide = line_with(screen(monitor.frame(), 160, 48), "● YELLOW")
    assert wide.rstrip().endswith("http://127.0.0.1:3456")


def test_cut_never_ends_inside_a_url():
    line = Text("see http://127.0.0.1:3456/teamclaude/status for more")
    for width in range(5, 48):
        plain = cut(line, width).plain
        assert len(plain) <= width
        assert "http" not in plain or "http://127.0.0.1:3456/teamclaude/status" in plain
    assert cut(line, 60).plain == line.plain


def test_too_small_terminal():
    frame = Frame(StateReader(FIXTURES / "fleet.json").poll(), None, NOW)
    assert "terminal too small" in screen(frame, 39, 24)
    assert "terminal too small" in screen(frame, 80, 7)
    assert "terminal too small" not in screen(frame, 40, 8)


def test_not_running_and_stale_messages(tmp_path, monitor):
    missing = Frame(StateReader(tmp_path / "none.json").poll(), None, NOW)
    text = screen(missing, 80, 24)
    assert "proxy not running" in text and "waiting for the proxy's state file" in text

    monitor.clock = lambda: NOW + 30
    text = screen(monitor.frame(), 100, 30)
    since = time.strftime("%H:%M:%S", time.localtime(NOW - 0.25))
    assert f"state stale since {since} (30s)" in text
    assert "alice@example.com" in text  # the last known view stays


def test_selection_modal_renders_options(monitor):
    ui = Ui(mode="switch", options=("alice@example.com", "bob@example.com"), cursor=1)
    text = screen(monitor.frame(ui), 80, 24)
    assert "Switch account" in text
    assert "› bob@example.com" in text
    assert "Enter choose" in text.splitlines()[-1]


def test_api_key_prompt_never_shows_the_key(monitor):
    ui = Ui(mode="api-key", secret="sk-ant-api03-SECRET")
    text = screen(monitor.frame(ui), 80, 24)
    assert "SECRET" not in text and "sk-ant" not in text
    assert "•" in text
    assert "SECRET" not in repr(ui)


def test_config_error_is_shown(tmp_path):
    state = json.loads((FIXTURES / "fleet.json").read_text())
    state["proxy"]["config_error"] = "accounts.yaml line 3: unknown key 'tpye'"
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    frame = Frame(StateReader(path).poll(), None, NOW)
    assert "config: accounts.yaml line 3: unknown key 'tpye'" in screen(frame, 100, 30)


def test_summary_has_everything_without_padding(monitor):
    console = Console(record=True, width=100, color_system=None, file=io.StringIO())
    console.print(render_summary(monitor.frame(), 100))
    text = console.export_text()
    assert "Levels" in text and "ci-key" in text and "GET  /v1/models" in text
    assert not text.endswith("\n\n")  # no screen padding in plain output


def test_bar_colours_follow_thresholds():
    assert [utilization_style(u) for u in (0.69, 0.7, 0.89, 0.9)] == ["green", "yellow", "yellow", "red"]
    assert bar(0.95, 10).plain == "██████████"[:10]
    assert bar(0.31, 10).plain == "███░░░░░░░"


def test_session_row_shows_its_last_failed_request(monitor):
    text = screen(monitor.frame(), 100, 30)
    assert "last 502 upstream reset" in line_with(text, "Presence rules")


def test_needs_login_says_what_to_do_when_there_is_room(monitor):
    assert "needs login → teamclaude login" in screen(monitor.frame(), 100, 30)


def test_rows_that_do_not_fit_are_counted_on_their_account(monitor):
    text = screen(monitor.frame(), 80, 24)
    assert "2 agents · 2 live +1 more" in line_with(text, "carol@example.com needs login")


def test_an_unsaved_token_and_a_failing_refresh_are_shown_on_their_accounts(tmp_path):
    state = json.loads((FIXTURES / "fleet.json").read_text())
    first, second = state["accounts"][0], state["accounts"][1]
    first["token_unsaved"] = {"since": NOW - 30, "error": "cannot write accounts.yaml: No space left on device",
                              "attempts": 2, "next_try": NOW + 5}
    second["token_refresh_error"] = "cannot reach 127.0.0.1:9: Connection refused"
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    claude = build_fleet_home(tmp_path / "claude")
    monitor = Monitor(StateReader(path), PresenceTracker(claude, lambda: NOW), lambda: NOW)
    text = screen(monitor.frame(), 200, 40)
    assert "new token not saved (cannot write accounts.yaml: No space left on device; retrying)" in line_with(text, first["name"])
    assert "refresh failing (cannot reach 127.0.0.1:9: Connection refused)" in line_with(text, second["name"])
    assert "new token not saved" in screen(monitor.frame(), 80, 24)


def test_clients_section_only_when_there_are_client_keys(tmp_path, monitor):
    assert "Clients" not in screen(monitor.frame(), 160, 48)
    state = json.loads((FIXTURES / "fleet.json").read_text())
    state["clients"] = [
        {"name": "laptop", "created_at": NOW - 86400, "max_concurrent": None, "in_flight": 1, "requests": 12,
         "refused": 0, "tokens": 48_000, "cost_usd": 1.25},
        {"name": "ci-runner", "created_at": NOW - 600, "max_concurrent": 2, "in_flight": 2, "requests": 40,
         "refused": 3, "tokens": 2_100_000, "cost_usd": 17.5},
    ]
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    frame = Frame(StateReader(path).poll(), None, NOW)
    for width, height in ((160, 48), (100, 40)):
        text = screen(frame, width, height)
        assert "Clients · 2 keys" in text
        ci, laptop = line_with(text, "ci-runner"), line_with(text, "laptop")
        assert text.index("ci-runner") < text.index("laptop")  # the busiest first
        assert "2/2" in ci and "40 req" in ci and "3 429" in ci and "2.1M" in ci and "$17.50" in ci
        assert "12 req" in laptop and "48.0k" in laptop and "$1.25" in laptop

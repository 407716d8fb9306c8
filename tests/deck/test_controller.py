from deck.controller import (
    ADD_API_KEY,
    ADD_IMPORT,
    AUTOMATIC,
    AddApiKey,
    ImportAccount,
    Notice,
    Reload,
    Remove,
    SetPriority,
    Switch,
    ToggleDisabled,
    Ui,
    handle_key,
)

ACCOUNTS = ["alice", "bob", "carol"]


def press(ui, *keys, current=""):
    effects = []
    for key in keys:
        ui, effect = handle_key(ui, key, ACCOUNTS, current)
        if effect is not None:
            effects.append(effect)
    return ui, effects


def test_switch_starts_on_current_and_moves_with_wraparound():
    ui, _ = press(Ui(), "s", current="bob")
    assert ui.mode == "switch" and ui.options[ui.cursor] == "bob"
    assert ui.options[-1] == AUTOMATIC
    ui, effects = press(ui, "j", "down", "k", "enter")
    assert effects == [Switch("carol")] and ui.mode == "normal"
    _, effects = press(Ui(), "s", "up", "enter")
    assert effects == [Switch(None)]  # wrapped to the automatic choice


def test_escape_cancels_a_selection():
    ui, effects = press(Ui(), "s", "j", "esc")
    assert ui.mode == "normal" and effects == [Notice("cancelled")]


def test_remove_asks_for_confirmation():
    ui, effects = press(Ui(), "r", "j", "enter")
    assert ui.mode == "confirm-remove" and ui.target == "bob" and effects == []
    _, effects = press(ui, "y")
    assert effects == [Remove("bob")]
    _, effects = press(ui, "n")
    assert effects == [Notice("remove cancelled")]


def test_add_api_key_flow_keeps_the_key_out_of_reprs():
    ui, _ = press(Ui(), "a")
    assert ui.options == (ADD_IMPORT, ADD_API_KEY)
    ui, _ = press(ui, "j", "enter")
    assert ui.mode == "api-key"
    ui, _ = press(ui, "enter")  # empty key: stays
    assert ui.mode == "api-key"
    ui, _ = press(ui, *"sk-ant-api03-SECRETX", "backspace", "enter")
    assert ui.mode == "api-name" and "SECRET" not in repr(ui)
    ui, effects = press(ui, *"ci", "enter")
    assert effects == [AddApiKey("ci", "sk-ant-api03-SECRET")]
    assert "SECRET" not in repr(effects[0])
    assert ui.mode == "normal" and ui.secret == ""


def test_import_choice():
    _, effects = press(Ui(), "a", "enter")
    assert effects == [ImportAccount()]


def test_toggles_reload_and_quit():
    ui, effects = press(Ui(), "b", "i", "R")
    assert ui.bell and ui.issues_expanded and effects == [Notice("bell on"), Reload()]
    ui, _ = press(ui, "q")
    assert ui.quit
    ui, _ = press(Ui(mode="api-name"), "ctrl-c")
    assert ui.quit


def test_no_accounts_gives_a_notice():
    ui, effect = handle_key(Ui(), "s", [], "")
    assert ui.mode == "normal" and effect == Notice("no accounts to choose from")


def test_empty_api_key_name_lets_the_store_choose():
    ui, effects = press(Ui(mode="api-key"), *"sk-ant-api03-K", "enter", "enter")
    assert effects == [AddApiKey("", "sk-ant-api03-K")] and ui.mode == "normal"


def test_question_mark_opens_the_legend_and_any_key_closes_it():
    ui, effects = press(Ui(bell=True), "?")
    assert ui.mode == "legend" and effects == []
    closed, effects = press(ui, "x")
    assert closed.mode == "normal" and closed.bell and effects == [] and not closed.quit
    assert press(ui, "esc")[0].mode == "normal"
    assert press(ui, "q")[0].quit


def test_d_toggles_the_chosen_account():
    ui, effects = press(Ui(), "d", "j", "enter")
    assert effects == [ToggleDisabled("bob")] and ui.mode == "normal"


def test_p_asks_for_a_number_and_refuses_anything_else():
    ui, effects = press(Ui(), "p", "j", "j", "enter")
    assert ui.mode == "priority-value" and ui.target == "carol" and effects == []
    ui, effects = press(ui, "x", "enter")
    assert ui.mode == "priority-value" and isinstance(effects[0], Notice) and "integer" in effects[0].text
    ui, effects = press(ui, "ctrl-u", "-", "2", "enter")
    assert effects == [SetPriority("carol", -2)] and ui.mode == "normal"

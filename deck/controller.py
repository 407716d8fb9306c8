"""The Deck's keyboard state machine, pure: (ui, key) → (ui, effect to run or None).

Modes: normal; the legend (what the Deck's numbers and signs mean); picking an account to
switch to or to remove; confirming a removal; picking how to add an account; typing an API
key (hidden) and then its name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

ADD_IMPORT = "import from Claude Code"
ADD_API_KEY = "API key"
ADD_CHOICES = (ADD_IMPORT, ADD_API_KEY)
AUTOMATIC = "(automatic: let the proxy choose)"


@dataclass(frozen=True)
class Switch:
    account: str | None  # None: unpin, back to automatic choice


@dataclass(frozen=True)
class Reload:
    pass


@dataclass(frozen=True)
class Remove:
    account: str


@dataclass(frozen=True)
class ToggleDisabled:
    account: str


@dataclass(frozen=True)
class SetPriority:
    account: str
    priority: int


@dataclass(frozen=True)
class ImportAccount:
    pass


@dataclass(frozen=True)
class AddApiKey:
    name: str  # empty: the store picks a free name
    api_key: str = field(repr=False)


@dataclass(frozen=True)
class Notice:
    """A message for the local activity line, with nothing to run."""

    text: str


Effect = Switch | Reload | Remove | ToggleDisabled | SetPriority | ImportAccount | AddApiKey | Notice


@dataclass(frozen=True)
class Ui:
    # normal | legend | switch | remove | confirm-remove | toggle | priority | priority-value
    # | add | api-key | api-name
    mode: str = "normal"
    options: tuple[str, ...] = ()
    cursor: int = 0
    target: str = ""  # the account a confirmation is about
    secret: str = field(default="", repr=False)  # API key being typed; never rendered
    typed: str = ""  # visible text being typed (an account name)
    bell: bool = False
    issues_expanded: bool = False
    quit: bool = False

    @property
    def selecting(self) -> bool:
        return self.mode in ("switch", "remove", "toggle", "priority", "add")


def handle_key(ui: Ui, key: str, accounts: Sequence[str], current: str = "") -> tuple[Ui, Effect | None]:
    if key == "ctrl-c":
        return replace(ui, quit=True, secret=""), None
    if ui.mode == "normal":
        return _normal(ui, key, accounts, current)
    if ui.mode == "legend":  # any key closes it; q still quits
        return (replace(ui, quit=True), None) if key == "q" else (_back_to_normal(ui), None)
    if key == "esc":
        return _back_to_normal(ui), Notice("cancelled")
    if ui.selecting:
        return _select(ui, key)
    if ui.mode == "confirm-remove":
        if key in ("y", "Y"):
            return _back_to_normal(ui), Remove(ui.target)
        if key in ("n", "N", "q"):
            return _back_to_normal(ui), Notice("remove cancelled")
        return ui, None
    if ui.mode == "api-key":
        return _type_key(ui, key)
    if ui.mode == "api-name":
        return _type_name(ui, key)
    if ui.mode == "priority-value":
        return _type_priority(ui, key)
    return _back_to_normal(ui), None


# Keys that open an account picker, and the mode they open.
_PICKERS = {"s": "switch", "r": "remove", "d": "toggle", "p": "priority"}


def _back_to_normal(ui: Ui) -> Ui:
    return Ui(bell=ui.bell, issues_expanded=ui.issues_expanded)


def _normal(ui: Ui, key: str, accounts: Sequence[str], current: str) -> tuple[Ui, Effect | None]:
    if key == "q":
        return replace(ui, quit=True), None
    if key == "b":
        bell = not ui.bell
        return replace(ui, bell=bell), Notice(f"bell {'on' if bell else 'off'}")
    if key == "i":
        return replace(ui, issues_expanded=not ui.issues_expanded), None
    if key == "?":
        return replace(ui, mode="legend"), None
    if key == "R":
        return ui, Reload()
    if key in _PICKERS:
        if not accounts:
            return ui, Notice("no accounts to choose from")
        options = tuple(accounts) + ((AUTOMATIC,) if key == "s" else ())
        cursor = options.index(current) if current in options else 0
        return replace(ui, mode=_PICKERS[key], options=options, cursor=cursor), None
    if key == "a":
        return replace(ui, mode="add", options=ADD_CHOICES, cursor=0), None
    return ui, None


def _select(ui: Ui, key: str) -> tuple[Ui, Effect | None]:
    count = len(ui.options)
    if key in ("j", "down"):
        return replace(ui, cursor=(ui.cursor + 1) % count), None
    if key in ("k", "up"):
        return replace(ui, cursor=(ui.cursor - 1) % count), None
    if key != "enter":
        return ui, None
    choice = ui.options[ui.cursor]
    if ui.mode == "switch":
        return _back_to_normal(ui), Switch(None if choice == AUTOMATIC else choice)
    if ui.mode == "remove":
        return replace(ui, mode="confirm-remove", target=choice, options=()), None
    if ui.mode == "toggle":
        return _back_to_normal(ui), ToggleDisabled(choice)
    if ui.mode == "priority":
        return replace(ui, mode="priority-value", target=choice, options=(), typed=""), None
    if choice == ADD_IMPORT:
        return _back_to_normal(ui), ImportAccount()
    return replace(ui, mode="api-key", options=(), secret=""), None


def _type_key(ui: Ui, key: str) -> tuple[Ui, Effect | None]:
    if key == "enter":
        if not ui.secret.strip():
            return ui, None
        return replace(ui, mode="api-name", typed=""), None
    return replace(ui, secret=_edit(ui.secret, key)), None


def _type_name(ui: Ui, key: str) -> tuple[Ui, Effect | None]:
    if key == "enter":
        return _back_to_normal(ui), AddApiKey(ui.typed.strip(), ui.secret.strip())
    return replace(ui, typed=_edit(ui.typed, key)), None


def _type_priority(ui: Ui, key: str) -> tuple[Ui, Effect | None]:
    if key != "enter":
        return replace(ui, typed=_edit(ui.typed, key)), None
    try:
        priority = int(ui.typed.strip())
    except ValueError:
        return ui, Notice(f"the priority must be an integer (lower goes first), got {ui.typed.strip()[:20]!r}")
    return _back_to_normal(ui), SetPriority(ui.target, priority)


def _edit(text: str, key: str) -> str:
    if key == "backspace":
        return text[:-1]
    if key == "ctrl-u":
        return ""
    if len(key) == 1:
        return text + key
    return text

"""Gathers one frame: the state file, presence and pins of its sessions, the fleet model."""

from __future__ import annotations

from collections.abc import Callable

from deck.controller import Ui
from deck.fleet import build_fleet
from deck.locallog import LocalLine
from deck.presence import PresenceTracker
from deck.statefile import StateReader
from deck.view import Frame


class Monitor:
    def __init__(self, reader: StateReader, tracker: PresenceTracker, clock: Callable[[], float]) -> None:
        self.reader = reader
        self.tracker = tracker
        self.clock = clock

    def frame(self, ui: Ui = Ui(), local: tuple[LocalLine, ...] = (), notes: tuple[str, ...] = ()) -> Frame:
        snapshot = self.reader.poll()
        now = self.clock()
        state = snapshot.state
        if state is None:
            return Frame(snapshot, None, now, ui, local, notes)
        presence = {s.id: self.tracker.presence(s.id, s.bound_at, now) for s in state.sessions}
        pins = {sid: self.tracker.pin(sid) for sid, seen in presence.items() if seen.visible}
        return Frame(snapshot, build_fleet(state, presence, pins, now), now, ui, local, notes)

"""Property test: clients following the documented recipe converge without losing keystrokes."""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.merge import TextHistory

# Each token ends with a newline, so the diff aligns a whole-token edit on the line boundary
# (without a separator "<a3><b2>" -> "<a3><a7><b2>" diffs as inserting "a7><" inside "<b2>").
TOKEN = re.compile(r"<([a-z]\d+)>\n")


def token_text(name: str) -> str:
    return f"<{name}>\n"


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


@dataclass(frozen=True)
class Ack:
    version: int
    code: str | None  # present only when the room text differs from what the client sent


@dataclass(frozen=True)
class CodeUpdate:
    version: int
    code: str


@dataclass
class Client:
    """A version-aware client following the recipe documented for clients."""

    name: str
    base: int
    text: str
    in_flight: int = 0
    made: int = 0
    outbox: deque[tuple[str, int]] = field(default_factory=deque)  # FIFO to the server
    inbox: deque[Ack | CodeUpdate] = field(default_factory=deque)  # FIFO from the server

    def new_token(self) -> str:
        self.made += 1
        return f"{self.name}{self.made}"

    def edit(self, text: str) -> None:
        """Apply a local edit and send it at once, without waiting for earlier answers."""
        self.text = text
        self.outbox.append((text, self.base))
        self.in_flight += 1

    def receive(self) -> None:
        message = self.inbox.popleft()
        if isinstance(message, Ack):
            self.in_flight -= 1
            if self.in_flight == 0:  # with changes still in flight the ack is ignored
                self.base = message.version
                if message.code is not None:
                    self.text = message.code
        elif self.in_flight == 0 and message.version > self.base:
            self.base, self.text = message.version, message.code


@dataclass
class Room:
    history: TextHistory
    clients: list[Client]

    def receive_from(self, client: Client) -> None:
        sent, base = client.outbox.popleft()
        rebased = self.history.rebase(client.name, sent, base)
        version = self.history.version + 1
        self.history.commit(rebased, version)
        client.inbox.append(Ack(version, None if rebased.text == sent else rebased.text))
        for other in self.clients:
            if other is not client:
                other.inbox.append(CodeUpdate(version, rebased.text))

    def chat(self) -> None:
        self.history.advance(self.history.version + 1)

    def deliver_everything(self) -> None:
        while any(c.outbox or c.inbox for c in self.clients):
            for client in self.clients:
                while client.outbox:
                    self.receive_from(client)
            for client in self.clients:
                while client.inbox:
                    client.receive()


class Scenario:
    def __init__(self, n_clients: int, n_initial: int) -> None:
        text = "".join(token_text(f"s{i}") for i in range(n_initial))
        history = TextHistory(text, 0, clock=lambda: 0.0)
        clients = [Client(chr(ord("a") + i), 0, text) for i in range(n_clients)]
        self.room = Room(history, clients)
        self.alive = {f"s{i}" for i in range(n_initial)}  # created and never deleted

    def insert(self, client: Client, pick: int) -> None:
        names = tokens(client.text)
        at = pick % (len(names) + 1)
        offset = sum(len(token_text(n)) for n in names[:at])
        name = client.new_token()
        self.alive.add(name)
        client.edit(client.text[:offset] + token_text(name) + client.text[offset:])

    def delete(self, client: Client, pick: int) -> None:
        names = tokens(client.text)
        if not names:
            self.insert(client, pick)
            return
        name = names[pick % len(names)]
        self.alive.discard(name)
        client.edit(client.text.replace(token_text(name), "", 1))

    def step(self, action: str, who: int, pick: int) -> None:
        client = self.room.clients[who % len(self.room.clients)]
        if action == "insert":
            self.insert(client, pick)
        elif action == "delete":
            self.delete(client, pick)
        elif action == "to_server" and client.outbox:
            self.room.receive_from(client)
        elif action == "to_client" and client.inbox:
            client.receive()
        elif action == "chat":
            self.room.chat()


actions = st.lists(
    st.tuples(
        st.sampled_from(["insert", "insert", "delete", "to_server", "to_client", "chat"]),
        st.integers(0, 3),
        st.integers(0, 1000),
    ),
    max_size=60,
)


@settings(max_examples=1500, deadline=None)
@given(n_clients=st.integers(2, 4), n_initial=st.integers(1, 5), steps=actions)
def test_clients_converge_and_keep_every_live_token_exactly_once(
    n_clients: int, n_initial: int, steps: list[tuple[str, int, int]]
) -> None:
    scenario = Scenario(n_clients, n_initial)
    for action, who, pick in steps:
        scenario.step(action, who, pick)
    scenario.room.deliver_everything()

    final = scenario.room.history.text
    assert TOKEN.sub("", final) == "", f"a token was corrupted: {final!r}"
    counts = Counter(tokens(final))
    assert set(counts) == scenario.alive
    assert all(n == 1 for n in counts.values()), counts
    for client in scenario.room.clients:
        assert client.text == final


unicode_steps = st.lists(
    st.tuples(
        st.sampled_from(["edit", "edit", "to_server", "to_client", "chat"]),
        st.integers(0, 3),
        st.integers(0, 1000),
        st.integers(0, 3),
        # A few characters (so edits collide: emoji, combining mark, lone surrogate) or any other.
        st.text(st.sampled_from("ab \n\U0001f600\u0301\ud83d") | st.characters(), max_size=3),
    ),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(n_clients=st.integers(2, 3), start=st.text(max_size=8), steps=unicode_steps)
def test_clients_converge_on_arbitrary_unicode_edits(
    n_clients: int, start: str, steps: list[tuple[str, int, int, int, str]]
) -> None:
    clients = [Client(chr(ord("a") + i), 0, start) for i in range(n_clients)]
    room = Room(TextHistory(start, 0, clock=lambda: 0.0), clients)
    for action, who, pick, length, inserted in steps:
        client = clients[who % n_clients]
        if action == "edit":
            i = pick % (len(client.text) + 1)
            client.edit(client.text[:i] + inserted + client.text[i + length :])
        elif action == "to_server" and client.outbox:
            room.receive_from(client)
        elif action == "to_client" and client.inbox:
            client.receive()
        elif action == "chat":
            room.chat()
    room.deliver_everything()
    assert all(client.text == room.history.text for client in clients)

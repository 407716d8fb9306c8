from routing.types import Decision, RequestInfo
from teamclaude.attempt import Attempt


def attempt(client: str | None) -> Attempt:
    made = Attempt(RequestInfo("/v1/messages", model="claude-sonnet-4-5"), started=0.0, client=client)
    made.choose(Decision("work", "warm", "session stays", None, 1))
    return made


def test_the_client_is_in_the_flow_comment_and_metadata():
    named = attempt("ci")
    assert named.metadata()["client"] == "ci"
    assert named.comment({"status": 200}) == "[ci] work · warm: session stays → 200"
    anonymous = attempt(None)
    assert anonymous.metadata()["client"] is None
    assert anonymous.comment() == "work · warm: session stays"

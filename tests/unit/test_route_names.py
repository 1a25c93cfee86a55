"""Route names in usage events are bounded: whatever paths clients send, a forwarded request's
route is made of the known words of the Coordinator's routes and `{id}`, at most a few
segments deep, so analytics never see one route name per id."""

from __future__ import annotations

import random
import string

from aitbc_gate.usage_events import RouteTemplates

FORWARDED = "/v1/{path:path}"  # the forwarder's catch-all: it says nothing of the route
WORDS = ("health", "jobs", "results")


def _route(path: str, words: tuple[str, ...] = WORDS) -> str:
    return RouteTemplates(words).of(FORWARDED, path)


def test_known_words_stay_and_everything_else_is_an_id() -> None:
    assert _route("/v1/jobs") == "/v1/jobs"
    assert _route("/v1/jobs/job_nope") == "/v1/jobs/{id}"
    assert _route("/v1/jobs/nope") == "/v1/jobs/{id}"
    assert _route("/v1/jobs/job_0a1b2c3d4e5f/results") == "/v1/jobs/{id}/results"
    assert _route("/v1/jobs/42/logs") == "/v1/jobs/{id}/{id}"
    assert _route("/v1/miners/42/jobs") == "/v1/{id}/{id}/jobs"
    assert _route("/v1/miners/42/jobs", (*WORDS, "miners")) == "/v1/miners/{id}/jobs"
    assert _route("/v1/Jobs") == "/v1/{id}"  # only the words as they are configured


def test_a_deep_path_is_one_route() -> None:
    assert _route("/v1/jobs/1/results/2") == "/v1/jobs/{id}/results/{id}"
    assert _route("/v1/jobs/1/results/2/3") == "/v1/{other}"
    assert _route("/v1/" + "/".join(["jobs"] * 50)) == "/v1/{other}"


def test_a_matched_route_keeps_its_template() -> None:
    templates = RouteTemplates(WORDS)
    assert templates.of("/v1/api-keys/{key_id:str}", "/v1/api-keys/key_1") == (
        "/v1/api-keys/{key_id:str}"
    )


def _segment(rng: random.Random) -> str:
    """A segment a client might send: ids of every shape, words, junk, the known words."""
    alphabet = string.ascii_letters + string.digits + "_-.~:@!$&'()*+,;="
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice(WORDS)
    if kind == 1:
        return "job_" + "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(1, 12)))
    if kind == 2:
        return "".join(rng.choices(string.ascii_lowercase, k=rng.randrange(1, 12)))
    if kind == 3:
        return str(rng.randrange(10**9))
    if kind == 4:
        return "".join(rng.choices(alphabet, k=rng.randrange(0, 40)))
    return rng.choice(["", "v1", "{id}", "%7Bid%7D", "jobs ", "JOBS"])


def test_many_distinct_paths_make_a_bounded_set_of_route_names() -> None:
    rng = random.Random(17)
    templates = RouteTemplates(WORDS)
    paths = {
        "/v1/" + "/".join(_segment(rng) for _ in range(rng.randrange(1, 8))) for _ in range(50_000)
    }
    assert len(paths) > 40_000  # nearly all distinct
    names = {templates.of(FORWARDED, path) for path in paths}
    # Each of at most 4 segments is a word, {id}, or empty; deeper paths are one name.
    choices = len(WORDS) + 2
    bound = sum(choices**depth for depth in range(1, 5)) + 1
    assert len(names) <= bound
    assert len(names) < 1000
    for name in names:
        assert name == "/v1/{other}" or all(
            segment in (*WORDS, "{id}", "") for segment in name.split("/")[2:]
        ), name

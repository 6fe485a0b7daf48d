"""Two ``lockgate serve`` replicas behind HAProxy, on one PostgreSQL registry and one Redis:
what a user of a scaled-out gateway relies on (docs/scaling.md).

- a label moved through one replica is served by the other within the prompt cache's TTL;
- a key's rpm limit and its budget hold across both replicas, not per replica;
- SIGKILL of a replica under load: the other's calls go on, HAProxy takes it out within its
  checks and retries what failed on the other, so no client sees an error; the call records
  lost are at most those of the calls answered in the last flush interval;
- SIGTERM of a replica under load: it drains (``/readyz`` 503 while it still serves), then
  stops; no client sees an error, HAProxy never needs a retry, no call record is lost;
- a rolling restart (A, then B) under load loses no request and no record.

Real processes on real ports; the upstream is the gateway tests' fake OpenAI server.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from sqlalchemy import text

from lockgate.registry import Registry, RegistrySettings
from lockgate.registry import db as registry_db
from tests.gateway.upstream import Upstream
from tests.scale.cluster import (
    CALL_COST_USD,
    CHECK_FALL,
    CHECK_INTER_MS,
    DRAIN_S,
    FLUSH_INTERVAL_S,
    PROMPT_CACHE_TTL_S,
    HAProxy,
    Load,
    Outcome,
    Replica,
    call,
    free_port,
    replica_config,
    why_no_haproxy,
    write_config,
)

pytestmark = pytest.mark.skipif(why_no_haproxy() is not None, reason=str(why_no_haproxy()))

# HAProxy takes a replica out after CHECK_FALL failed checks CHECK_INTER_MS apart; the slack
# covers a check in flight and a busy machine.
TAKEN_OUT_S = CHECK_FALL * CHECK_INTER_MS / 1000 + 1.0
# A record is written within a flush interval of its call's answer, plus the write itself.
WRITTEN_WITHIN_S = FLUSH_INTERVAL_S + 1.0


@dataclass
class Cluster:
    a: Replica
    b: Replica
    lb: HAProxy
    registry: Registry
    database_url: str
    key: str  # inference, no limits: the steady load's
    admin: str

    def client(self, url: str | None = None, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=(url or self.lb.url) + "/v1", api_key=key or self.key,
                             max_retries=0, timeout=15)  # fmt: skip

    def recorded(self, request_ids: list[str]) -> set[str]:
        """Which of ``request_ids`` have a call record in the shared database."""
        engine = registry_db.make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text("SELECT request_id FROM call_records WHERE request_id = ANY(:ids)"),
                    {"ids": request_ids},
                )
                return {row[0] for row in rows}
        finally:
            engine.dispose()

    def restart(self, replica: Replica) -> None:
        replica.start()
        replica.wait_ready()
        self.lb.wait_status(replica.name, "UP")


@pytest.fixture(scope="module")
def cluster(
    scale_database: str, redis_url: str, upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:  # fmt: skip
    root = tmp_path_factory.mktemp("scale")
    registry = Registry(RegistrySettings(data_dir=root / "tester", database_url=scale_database),
                        actor="tester")  # fmt: skip
    key = registry.keys.create("load", scopes=["inference"]).secret
    admin = registry.keys.create("admin", scopes=["admin"]).secret
    replicas = []
    for name in ("a", "b"):
        folder = root / name
        folder.mkdir()
        port = free_port()
        config = replica_config(scale_database, folder / "data", port, upstream.url)  # type: ignore[attr-defined]
        write_config(folder, config)
        replicas.append(Replica(name, folder, port))
    for replica in replicas:
        replica.start()
    lb = HAProxy(root, {r.name: r.port for r in replicas})
    try:
        for replica in replicas:
            replica.wait_ready()
        lb.start()
        for replica in replicas:
            lb.wait_status(replica.name, "UP")
        yield Cluster(replicas[0], replicas[1], lb, registry, scale_database, key, admin)
    finally:
        lb.stop()
        for replica in replicas:
            replica.stop()
        registry.close()


def _served_by(outcomes: list[Outcome]) -> set[str | None]:
    return {o.replica for o in outcomes}


def _slow_streams(client: openai.OpenAI, count: int) -> tuple[list[str], list[threading.Thread]]:
    """``count`` streams of 0.6 s started now in threads; each appends its text when done."""
    texts: list[str] = []

    def stream() -> None:
        chunks = client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

    threads = [threading.Thread(target=stream) for _ in range(count)]
    for thread in threads:
        thread.start()
    return texts, threads


def _echoed_system_prompt(client: openai.OpenAI, name: str) -> str:
    answer = client.chat.completions.create(
        model="gpt-test", messages=[],
        extra_body={"prompt": {"name": name, "label": "production"}},
    )  # fmt: skip
    echo = answer.model_extra["echo"]  # type: ignore[index]
    return str(echo["messages"][0]["content"])


def test_a_label_moved_through_one_replica_is_served_by_the_other_within_the_ttl(
    cluster: Cluster,
) -> None:
    reg = cluster.registry
    reg.prompts.push("scale/faq", [{"role": "system", "content": "version one"}])
    reg.prompts.push("scale/faq", [{"role": "system", "content": "version two"}])
    reg.labels.set("prompt", "scale/faq", "production", 1)
    on_b = cluster.client(cluster.b.url)
    assert _echoed_system_prompt(on_b, "scale/faq") == "version one"  # cached on B now

    with httpx.Client(base_url=cluster.a.url + "/api/v1",
                      headers={"authorization": f"Bearer {cluster.admin}"}) as api:  # fmt: skip
        moved = api.put("/prompts/scale/faq/labels/production", json={"version": 2},
                        headers={"if-match": '"v1"'})  # fmt: skip
    assert moved.status_code == 200, moved.text
    moved_at = time.monotonic()
    served = []
    while (seen := _echoed_system_prompt(on_b, "scale/faq")) != "version two":
        served.append(seen)
        assert time.monotonic() - moved_at < PROMPT_CACHE_TTL_S + 5, served
        time.sleep(0.05)
    took = time.monotonic() - moved_at
    print(f"\nlabel moved through A, served by B after {took:.2f} s (TTL {PROMPT_CACHE_TTL_S} s)")
    assert took <= PROMPT_CACHE_TTL_S + 0.5
    assert set(served) <= {"version one"}


def test_an_rpm_limit_holds_across_both_replicas(cluster: Cluster) -> None:
    rpm, sent = 5, 16
    key = cluster.registry.keys.create("rpm-5", scopes=["inference"], rpm=rpm).secret
    client = cluster.client(key=key)
    barrier = threading.Barrier(sent)
    outcomes: list[Outcome] = []

    def one() -> None:
        barrier.wait()
        outcomes.append(call(client))

    threads = [threading.Thread(target=one) for _ in range(sent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(o.status or 0 for o in outcomes)
    assert statuses == [200] * rpm + [429] * (sent - rpm), [o.error for o in outcomes]
    # each replica saw more than rpm of them: limits per replica would have admitted 2 * rpm
    for name in ("a", "b"):
        assert sum(o.replica == name for o in outcomes) > rpm, [o.replica for o in outcomes]


def test_a_budget_holds_across_both_replicas(cluster: Cluster) -> None:
    budget = 3.5 * CALL_COST_USD  # the 4th call takes the spend to 4 calls: then refused
    key = cluster.registry.keys.create("budget", scopes=["inference"], budget_usd=budget).secret
    client = cluster.client(key=key)
    outcomes = []
    for _ in range(10):
        outcomes.append(call(client))
        time.sleep(0.3)  # a call's cost is counted just after its answer
    admitted = [o for o in outcomes if o.status == 200]
    refused = [o for o in outcomes if o.status != 200]
    assert len(admitted) == 4, [(o.status, o.replica, o.error) for o in outcomes]
    assert _served_by(admitted) == {"a", "b"}  # spend recorded through both stops both
    assert _served_by(refused) == {"a", "b"}
    assert all(o.status == 429 and "budget" in (o.error or "") for o in refused)


def _load_until(cluster: Cluster, seconds: float, load: Load) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        assert len(load.errors()) == 0, load.errors()[:3]


def test_sigkill_of_a_replica_under_load(cluster: Cluster) -> None:
    retries_before = cluster.lb.retries()
    with Load(cluster.lb.url, cluster.key) as load:
        _load_until(cluster, 2.0, load)
        texts, streams = _slow_streams(cluster.client(cluster.b.url), 3)  # in flight on B
        time.sleep(0.1)
        killed_at = time.monotonic()
        cluster.a.send(signal.SIGKILL)
        taken_out = cluster.lb.wait_status("a", "DOWN")
        _load_until(cluster, 2.0, load)
    for stream in streams:
        stream.join(30)
    cluster.a.wait_exit()
    outcomes = load.outcomes
    print(f"\nSIGKILL: {len(outcomes)} calls, HAProxy took A out after {taken_out:.2f} s, "
          f"{cluster.lb.retries() - retries_before} retried or redispatched")  # fmt: skip
    assert load.errors() == []  # what reached the dead replica was retried on B
    assert texts == ["Hello world"] * 3  # the other replica's calls in flight went on
    assert taken_out <= TAKEN_OUT_S
    later = [o for o in outcomes if o.started > killed_at + taken_out + 0.1]
    assert later and _served_by(later) == {"b"}

    time.sleep(WRITTEN_WITHIN_S)  # B writes the last of its records
    ok = [o for o in outcomes if o.status == 200]
    recorded = cluster.recorded([o.request_id for o in ok])
    lost = [o for o in ok if o.request_id not in recorded]
    assert all(o.replica == "a" for o in lost)
    # at most the records of the calls A answered in its last flush interval (docs/scaling.md)
    assert all(o.ended > killed_at - WRITTEN_WITHIN_S for o in lost), [
        killed_at - o.ended for o in lost
    ]
    window = [o for o in ok if o.replica == "a" and o.ended > killed_at - WRITTEN_WITHIN_S]
    print(f"SIGKILL lost {len(lost)} call records of {len(ok)} (A answered {len(window)} "
          f"in the {WRITTEN_WITHIN_S:.1f} s before the kill)")  # fmt: skip
    cluster.restart(cluster.a)


def test_sigterm_drains_a_replica_under_load(cluster: Cluster) -> None:
    retries_before = cluster.lb.retries()
    direct = cluster.client(cluster.a.url)
    with Load(cluster.lb.url, cluster.key) as load:
        _load_until(cluster, 1.5, load)
        texts, streams = _slow_streams(direct, 3)  # in flight on A itself
        time.sleep(0.1)
        cluster.a.send(signal.SIGTERM)
        signalled = time.monotonic()
        ready = httpx.get(cluster.a.url + "/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        taken_out = cluster.lb.wait_status("a", "DOWN")
        during = call(direct)  # a new call straight to A while it drains is still served
        assert time.monotonic() - signalled < DRAIN_S
        code = cluster.a.wait_exit()
        exited = time.monotonic() - signalled
        _load_until(cluster, 1.0, load)
    for stream in streams:
        stream.join(30)
    print(f"\nSIGTERM: {len(load.outcomes)} calls, A out of HAProxy after {taken_out:.2f} s, "
          f"exited ({code}) after {exited:.2f} s")  # fmt: skip
    assert during.status == 200, during.error
    assert texts == ["Hello world"] * 3
    assert taken_out <= TAKEN_OUT_S
    assert DRAIN_S <= exited < DRAIN_S + 10
    assert load.errors() == []
    assert cluster.lb.retries() == retries_before  # the drain left nothing to retry
    assert "a" in _served_by(load.outcomes)
    assert f"SIGTERM: draining for {DRAIN_S:g} s" in cluster.a.tail()

    time.sleep(WRITTEN_WITHIN_S)
    ok = [o.request_id for o in load.outcomes if o.status == 200] + [during.request_id]
    missing = set(ok) - cluster.recorded(ok)
    assert missing == set()  # every answered call has its record, A's last ones included
    cluster.restart(cluster.a)


def test_a_rolling_restart_under_load_loses_nothing(cluster: Cluster) -> None:
    retries_before = cluster.lb.retries()
    with Load(cluster.lb.url, cluster.key) as load:
        _load_until(cluster, 1.0, load)
        for replica in (cluster.a, cluster.b):
            replica.send(signal.SIGTERM)
            replica.wait_exit()
            restarted = len(load.outcomes)
            cluster.restart(replica)
            _load_until(cluster, 1.0, load)
            assert replica.name in _served_by(load.outcomes[restarted:])
    print(f"\nrolling restart: {len(load.outcomes)} calls, "
          f"{cluster.lb.retries() - retries_before} retried or redispatched")  # fmt: skip
    assert load.errors() == []
    assert cluster.lb.retries() == retries_before
    time.sleep(WRITTEN_WITHIN_S)
    ok = [o.request_id for o in load.outcomes]
    assert set(ok) - cluster.recorded(ok) == set()
